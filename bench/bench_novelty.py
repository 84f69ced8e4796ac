"""A PatchCore-style novelty score from genuine photos alone, measured per tell on another seed.

The question issue 10 asks first: can a memory bank of what genuine items look like, patch by
patch, catch counterfeits whose tells no classifier was trained on? This bench answers it on
the focus crops that `bench/focus_variants.py` caches (the runtime's glance and crop on the
validation and test photos), with the frozen ImageNet trunk the two-stage model already runs:

* features: the trunk's map at stride 16 (``t5``: 112 channels, 24x24 cells on a 384 px crop),
  at stride 8 (``t3``: 40 channels, 48x48), or both (``t3t5``, the coarse map upsampled), each
  averaged over its 3x3 neighbourhood as PatchCore does;
* bank: per product, the patches of its genuine training crops that fall inside the product's
  box (the crop's margin and padding hold background, which no bank of genuine photos covers),
  reduced by greedy k-centre coreset selection on a random projection (Roth et al. 2022);
* score: the distance of the photo's most unusual in-box patch to its nearest bank patch,
  standardised per product on genuine validation crops; threshold at the 2% false-alarm
  quantile of the test seed's genuine photos (an upper bound on what a calibrated threshold
  would give).

The product is taken from the label (a perfect product classifier: the runtime's is 0.997),
so the numbers bound what the score itself can do. Search is plain numpy, as the runtime's
would be.

    python bench/focus_variants.py --data /tmp/dev/train --test /tmp/dev/test --work /tmp/fv --variants base
    python bench/bench_novelty.py --work /tmp/fv --variants t5,t3,t3t5 --bank 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from focus_variants import trunk_features  # noqa: E402

from longteng.model.two_stage import TwoStageConfig, create_two_stage  # noqa: E402

CROP = 384
MARGIN = 0.12  # FocusSpec.margin: the box fills 1 / (1 + 2 margin) of the crop's extent
FALSE_ALARMS = 0.02


def box_filter3(features: np.ndarray) -> np.ndarray:
    padded = np.pad(features, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = features.shape[2:]
    return sum(padded[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0


def frozen_trunk(blocks: int):
    """The two-stage model's frozen ImageNet trunk, cut after `blocks` blocks (3: stride 8)."""
    model = create_two_stage(TwoStageConfig(trunk_blocks=max(blocks, 4)))
    if blocks == 3:  # not a depth the model offers; as in focus_variants.py
        model.trunk = model.trunk[:-1]
    return model


def patch_features(work: Path, split: str, variant: str) -> np.ndarray:
    """(N, cells, C) float32."""
    def load(trunk: int) -> np.ndarray:
        return box_filter3(trunk_features(frozen_trunk(trunk), work, split, CROP, trunk).astype(np.float32))

    if variant == "t5":
        maps = load(5)
    elif variant == "t3":
        maps = load(3)
    elif variant == "t3t5":
        fine, coarse = load(3), load(5)
        maps = np.concatenate([fine, coarse.repeat(2, axis=2).repeat(2, axis=3)], axis=1)
    else:
        raise SystemExit(f"unknown variant {variant!r}; allowed: t5, t3, t3t5")
    n, c, h, w = maps.shape
    return maps.transpose(0, 2, 3, 1).reshape(n, h * w, c)


def in_box_cells(work: Path, split: str, grid: int) -> np.ndarray:
    """(N, cells) bool: cells whose centre lies inside the product's box within the crop."""
    crops = np.load(work / f"{split}_crops{CROP}.npy", mmap_mode="r")
    shrink = MARGIN / (1 + 2 * MARGIN)
    centres = (np.arange(grid) + 0.5) * CROP / grid
    masks = np.zeros((len(crops), grid * grid), bool)
    for i in range(len(crops)):
        crop = np.asarray(crops[i]).astype(np.int16)
        content = np.abs(crop - crop[0, 0]).sum(2) > 0  # the crop's padding is one flat colour
        cols, rows = np.flatnonzero(content.any(0)), np.flatnonzero(content.any(1))
        if len(cols) == 0:
            continue
        x0, x1, y0, y1 = cols[0], cols[-1], rows[0], rows[-1]
        dx, dy = (x1 - x0) * shrink, (y1 - y0) * shrink
        inside = ((centres[None, :] >= x0 + dx) & (centres[None, :] <= x1 - dx)
                  & (centres[:, None] >= y0 + dy) & (centres[:, None] <= y1 - dy))
        masks[i] = inside.reshape(-1)
    return masks


def coreset(patches: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-centre selection (PatchCore), on a 64-d random projection of a 60k sample."""
    sample = patches[rng.choice(len(patches), min(len(patches), 60_000), replace=False)]
    projected = sample @ rng.standard_normal((sample.shape[1], 64)).astype(np.float32)
    chosen = [int(rng.integers(len(projected)))]
    nearest = np.linalg.norm(projected - projected[chosen[0]], axis=1)
    for _ in range(min(size, len(sample)) - 1):
        chosen.append(int(nearest.argmax()))
        nearest = np.minimum(nearest, np.linalg.norm(projected - projected[chosen[-1]], axis=1))
    return sample[chosen]


def most_unusual_patch(patches: np.ndarray, masks: np.ndarray, bank: np.ndarray) -> np.ndarray:
    bank_sq = (bank ** 2).sum(1)
    scores = np.zeros(len(patches))
    for i, (photo, mask) in enumerate(zip(patches, masks)):
        cells = photo[mask] if mask.any() else photo
        squared = (cells ** 2).sum(1)[:, None] - 2 * cells @ bank.T + bank_sq[None]
        scores[i] = np.sqrt(np.maximum(squared.min(1), 0)).max()
    return scores


def measure(work: Path, variant: str, bank_size: int, seed: int) -> dict:
    started = time.perf_counter()
    labels = {s: json.loads((work / f"{s}_labels.json").read_text()) for s in ("train", "val", "test")}
    classes = labels["train"]["classes"]
    products = sorted({c.split("/")[0] for c in classes})
    grid = 48 if variant != "t5" else 24
    split_patches = {s: patch_features(work, s, variant) for s in labels}
    split_masks = {s: in_box_cells(work, s, grid) for s in labels}
    rng = np.random.default_rng(seed)
    standardised = {}
    for split in ("val", "test"):
        standardised[split] = np.zeros(len(labels[split]["labels"]))
    for product in products:
        genuine = classes.index(f"{product}/genuine")
        train_idx = [i for i, y in enumerate(labels["train"]["labels"]) if y == genuine]
        pool = np.concatenate([split_patches["train"][i][split_masks["train"][i]] for i in train_idx])
        bank = coreset(pool, bank_size, rng)
        raw = {}
        for split in ("val", "test"):
            idx = [i for i, y in enumerate(labels[split]["labels"]) if classes[y].startswith(product + "/")]
            raw[split] = (idx, most_unusual_patch(split_patches[split][idx], split_masks[split][idx], bank))
        val_idx, val_scores = raw["val"]
        reference = val_scores[[labels["val"]["labels"][i] == genuine for i in val_idx]]
        for split, (idx, scores) in raw.items():
            standardised[split][idx] = (scores - reference.mean()) / max(reference.std(), 1e-9)
    y = np.array([classes[i].endswith("/counterfeit") for i in labels["test"]["labels"]])
    z = standardised["test"]
    threshold = np.quantile(z[~y], 1 - FALSE_ALARMS)
    tells = labels["test"]["tells"]
    names = sorted({t for ts in tells for t in ts})
    from sklearn.metrics import roc_auc_score

    return {
        "variant": variant, "bank_per_product": bank_size, "bank_bytes_float16": int(len(products) * bank_size * split_patches["test"].shape[2] * 2),
        "test_roc_auc": float(roc_auc_score(y, z)), "test_recall_at_far_0.02": float((z[y] > threshold).mean()),
        "per_tell_at_far_0.02": {t: float((z[[t in ts for ts in tells]] > threshold).mean()) for t in names},
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="bench/focus_variants.py's cache of crops and features")
    parser.add_argument("--variants", default="t5,t3,t3t5")
    parser.add_argument("--bank", type=int, default=2000, help="coreset patches per product")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/novelty.json"))
    args = parser.parse_args()
    rows = []
    for variant in args.variants.split(","):
        row = measure(args.work, variant, args.bank, args.seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
