"""`longteng train` for the two-stage model: glance, then focus.

Readable top to bottom: decode each photo once (glance input + a training crop around its
box) -> frozen-trunk features, computed once -> train the glance head (where is the
product, which way is up) -> crop validation and test photos where the glance finds them
-> train the focus stage (a linear probe of the head, then the last blocks with it) on the
cached crop features -> calibrate, choose the operating point, report (localisation too).

The frozen trunk is what fits this on two CPU cores: the expensive first blocks run once per
photo, and the epochs only run what comes after them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from longteng import __version__
from longteng.data.layout import Record, class_name, class_names, manifest_hash, scan_dataset
from longteng.decision import calibrated_probabilities, counterfeit_score, is_counterfeit_class
from longteng.errors import ConfigError, DatasetError
from longteng.focus import MAX_ITEMS, FocusSpec, OrientedBox, boxes_from_maps, iou_summary, objectness_target, polygon_iou
from longteng.model.backbones import backbone_spec
from longteng.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from longteng.model.two_stage import TwoStageConfig, TwoStageModel, create_two_stage
from longteng.preprocess import PreprocessSpec, normalize
from longteng.training.calibration import fit_calibration
from longteng.training.config import TrainConfig
from longteng.training.focus_data import GlanceItem, crops_at, glance_items, jittered
from longteng.training.metrics import selection_key, validation_metrics
from longteng.training.operating_point import choose_operating_point
from longteng.training.progress import Reporter, SilentReporter

LOG_NAME = "log.jsonl"


@dataclass
class FocusSplit:
    items: list[GlanceItem]
    labels: np.ndarray
    boxes: list[OrientedBox | None]  # where the focus crop was cut (decoded-photo pixels)
    features: np.ndarray  # float16 (N, 112, h, w): trunk features of the focus crops
    # Training only: the same rows' features of further crops (TrainConfig.focus_views).
    views: list[np.ndarray] = dataclasses.field(default_factory=list)


@dataclass
class TwoStageResult:
    run_dir: Path
    best: Path
    report: dict[str, Any] | None


def specs_for(config: TrainConfig) -> tuple[PreprocessSpec, FocusSpec]:
    glance = dataclasses.replace(backbone_spec(config.backbone).preprocess, input_size=config.glance_size)
    return glance, FocusSpec(input_size=config.focus_size)


def train_two_stage(config: TrainConfig, reporter: Reporter | None = None) -> TwoStageResult:
    reporter = reporter or SilentReporter()
    run_dir = Path(config.out)
    if (run_dir / "best.pt").exists():
        raise ConfigError(f"--out {run_dir} already holds a run; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.json")
    torch.manual_seed(config.seed)
    threads = torch.get_num_threads()

    records = scan_dataset(config.data)
    classes = class_names(r for r in records if r.split == "train")
    if len(classes) < 2:
        raise DatasetError(f"{config.data}: training needs at least two classes, found {classes}")
    glance_spec, focus_spec = specs_for(config)
    model_config = TwoStageConfig(
        backbone=config.backbone, num_classes=len(classes), pooling=config.pooling, trunk_blocks=config.trunk_blocks
    )
    model = create_two_stage(model_config, weights=config.weights).to(memory_format=torch.channels_last)
    timings: dict[str, float] = {}

    # 1. decode once: glance inputs for every split, training crops around the known boxes
    started = time.perf_counter()
    items = _decode_splits(config, classes, records, glance_spec, focus_spec, reporter)
    timings["decode_s"] = time.perf_counter() - started

    # 2. the glance: trunk features of the whole photos, then its head
    started = time.perf_counter()
    glance_features = {
        split: _trunk_features(model, [i.glance for i in chunk], glance_spec, config, reporter, f"glance features {split}", "glance")
        for split, chunk in items.items()
    }
    has_boxes = sum(i.quad is not None for i in items["train"]) >= 0.5 * len(items["train"])
    if any(len(i.item_quads) > 1 for i in items["train"]):
        # Trained on the boxes of several items per photo: the glance reports each item.
        focus_spec = dataclasses.replace(focus_spec, max_items=MAX_ITEMS)
    if has_boxes:
        _train_glance(model, items["train"], glance_features["train"], glance_spec, config, reporter)
    else:
        reporter.warning("fewer than half the training photos have a box (manifest column quad): "
                         "the focus stage looks at the whole photo")
    timings["glance_s"] = time.perf_counter() - started

    # 3. focus crops: training photos at their (jittered) boxes, the rest where the glance looks
    started = time.perf_counter()
    splits: dict[str, FocusSplit] = {}
    localisation: dict[str, Any] = {}
    for split, chunk in items.items():
        found = _glance_boxes(model, glance_features[split], chunk, glance_spec, focus_spec.max_items) if has_boxes else [[] for _ in chunk]
        # The photo's label is its decisive item's (the manifest's quad): the focus stage
        # learns and is calibrated on the item found there.
        boxes = [_decisive(item, item_boxes) for item, item_boxes in zip(chunk, found)]
        if any(i.quad is not None for i in chunk) and has_boxes:
            localisation[split] = localisation_summary(chunk, boxes)
            if focus_spec.max_items > 1:
                localisation[split]["items"] = item_detection_summary([i.item_quads for i in chunk], found)
        if split == "train" and has_boxes:
            missing = [k for k, item in enumerate(chunk) if item.crop is None]
            crops = np.stack([item.crop if item.crop is not None else np.zeros((focus_spec.input_size,) * 2 + (3,), np.uint8) for item in chunk])
            if missing:
                crops[missing] = crops_at(Path(config.data), [chunk[k] for k in missing], [boxes[k] for k in missing], glance_spec, focus_spec, workers=max(1, config.workers))
        else:
            with reporter.task(f"focus crops {split}", len(chunk)) as advance:
                crops = crops_at(Path(config.data), chunk, boxes, glance_spec, focus_spec, workers=max(1, config.workers), progress=advance)
        labels = np.array([classes.index(i.record.label) for i in chunk], dtype=np.int64)
        if split == "train" and has_boxes and focus_spec.max_items > 1:
            # Every item of an opened box is a training example with its own label, not only
            # the photo's decisive one.
            others, other_boxes, other_labels = _other_items(chunk, classes, config.seed)
            with reporter.task("focus crops of the other items", len(others)) as advance:
                crops = np.concatenate([crops, crops_at(Path(config.data), others, other_boxes, glance_spec, focus_spec,
                                                        workers=max(1, config.workers), progress=advance)])
            labels = np.concatenate([labels, np.array(other_labels, dtype=np.int64)])
            chunk, boxes = [*chunk, *others], [*boxes, *other_boxes]
        features = _trunk_features(model, crops, glance_spec, config, reporter, f"focus features {split}")
        views = []
        if split == "train":
            for view in range(1, config.focus_views):
                # A row without a view of its own keeps its one crop: a photo without a box, and
                # the other items of a photo (rows after the photos' own; item.views are the
                # decisive item's).
                photos = len(items[split])
                extra = np.array([item.views[view - 1] if k < photos and len(item.views) >= view else crops[k] for k, item in enumerate(chunk)])
                views.append(_trunk_features(model, extra, glance_spec, config, reporter, f"focus features train, view {view + 1}"))
        splits[split] = FocusSplit(chunk, labels, boxes, features, views)
        for item in chunk:
            # The features are what training needs now.
            object.__setattr__(item, "crop", None)
            object.__setattr__(item, "views", ())
    timings["focus_features_s"] = time.perf_counter() - started
    for split, summary in localisation.items():
        reporter.message(f"localisation {split}: median IoU {summary['median_iou']:.3f}, "
                         f"IoU >= 0.7 on {summary['iou_at_least_0.7']:.1%} of {summary['n']} photos")
        if "items" in summary:
            found = summary["items"]
            reporter.message(f"items {split}: recall at IoU 0.5 {found['recall_at_iou_0.5']:.3f}, "
                             f"{found['false_items_per_photo']:.3f} false items per photo, count exact on {found['count_exact']:.1%}")

    # 4. the focus stage: linear probe, then the last blocks with the head
    started = time.perf_counter()
    best_state, best_epoch, history = _train_focus(model, splits, classes, config, reporter, run_dir)
    model.load_state_dict(best_state)
    timings["focus_train_s"] = time.perf_counter() - started
    torch.set_num_threads(threads)

    # 5. calibrate on val, choose the operating point, report on test
    from longteng.training.report import evaluation_report, write_report

    val_logits = _focus_logits(model, splits["val"].features, config)
    temperature, score_calibration = fit_calibration(val_logits, splits["val"].labels, classes)
    val_scores = counterfeit_score(calibrated_probabilities(val_logits, temperature, score_calibration, classes), classes)
    val_counterfeit = np.array([is_counterfeit_class(classes[i]) for i in splits["val"].labels])
    operating_point = choose_operating_point(
        val_scores, val_counterfeit, max_false_alarm_rate=config.max_false_alarm_rate,
        min_counterfeit_recall=config.min_counterfeit_recall,
    )
    report: dict[str, Any] | None = None
    test = splits["test"]
    metrics: dict[str, Any] = {"history": history, "timings": timings, "localisation": localisation,
                               "focus_train_examples": len(splits["train"].labels)}
    if len(test.labels):
        test_logits = _focus_logits(model, test.features, config)
        report = evaluation_report(
            calibrated_probabilities(test_logits, temperature, score_calibration, classes), test.labels, classes, operating_point,
            tells=[i.record.tells() for i in test.items], case_ids=[i.record.case_id for i in test.items],
            logits=test_logits,
        )
        report.update(split="test", temperature=temperature, score_calibration=score_calibration.to_dict(), localisation=localisation.get("test"), timings=timings)
        write_report(report, run_dir / "report")
        metrics["test"] = {
            "accuracy": report["accuracy"], "roc_auc": report["counterfeit"]["roc_auc"],
            "refer_rate": report["operating_point"]["refer_rate"],
        }
    checkpoint = Checkpoint(
        state_dict=model.state_dict(), model_config=model_config.to_dict(), preprocess=glance_spec,
        class_names=classes, train_config=config.to_dict(), metrics=metrics,
        manifest_hash=manifest_hash(records), temperature=temperature,
        score_calibration=score_calibration.to_dict(), operating_point=operating_point.to_dict(),
        epoch=best_epoch, code_version=__version__,
        extra={"focus": json.loads(focus_spec.to_json()), "glance_trained": has_boxes},
    )
    save_checkpoint(checkpoint, run_dir / "best.pt")
    return TwoStageResult(run_dir, run_dir / "best.pt", report)


# --------------------------------------------------------------------------- data


def _decode_splits(
    config: TrainConfig, classes: list[str], records: list[Record], glance_spec: PreprocessSpec,
    focus_spec: FocusSpec, reporter: Reporter,
) -> dict[str, list[GlanceItem]]:
    out: dict[str, list[GlanceItem]] = {}
    for split in ("train", "val", "test"):
        chosen = [r for r in records if r.split == split and r.label in classes]
        with reporter.task(f"decode {split}", len(chosen)) as advance:
            items, failures = glance_items(
                Path(config.data), chosen, glance_spec, focus_spec, crop_seed=config.seed if split == "train" else None,
                workers=max(1, config.workers), progress=advance, views=config.focus_views if split == "train" else 1,
                variation=config.focus_view_variation,
            )
        for failure in failures:
            reporter.warning(f"skipped {failure.path}: {failure.detail}")
        out[split] = items
    if not out["train"]:
        raise DatasetError(f"{config.data}: no readable training photos")
    if not out["val"]:
        raise DatasetError(f"{config.data}: the val split is empty; calibration and the operating point need it")
    return out


@torch.inference_mode()
def _trunk_features(
    model: TwoStageModel, pixels, spec: PreprocessSpec, config: TrainConfig, reporter: Reporter, label: str,
    stage: str = "focus",
) -> np.ndarray:
    """The frozen features a stage trains on: the trunk's (focus) or the glance head's input."""
    model.eval()
    extract, channels = (model.glance_features, model.config.glance_channels) if stage == "glance" else (model.trunk, model.config.trunk_channels)
    chunks = []
    with reporter.task(label, len(pixels)) as advance:
        for start in range(0, len(pixels), config.eval_batch_size):
            batch = np.asarray(pixels[start : start + config.eval_batch_size])
            inputs = torch.from_numpy(normalize(batch, spec)).contiguous(memory_format=torch.channels_last)
            chunks.append(extract(inputs).to(torch.float16).numpy())
            advance(len(batch))
    return np.concatenate(chunks) if chunks else np.zeros((0, channels, 1, 1), np.float16)


# --------------------------------------------------------------------------- glance


def _glance_targets(items: list[GlanceItem], grid: tuple[int, int], spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per photo: the share of each cell that an item covers, and, per cell, the up vector of
    the items covering it (weighted by their cover; the one item's up everywhere for a photo
    of one item)."""
    objectness = np.zeros((len(items), *grid), np.float32)
    up = np.zeros((len(items), 2, *grid), np.float32)
    known = np.zeros(len(items), bool)
    for k, item in enumerate(items):
        if item.quad is None:
            continue
        quads = item.item_quads or (item.quad,)
        covers = np.stack([objectness_target(item.frame.to_glance(quad), grid, spec.input_size) for quad in quads])
        vectors = np.stack([OrientedBox.from_quad(quad).up for quad in quads])
        objectness[k] = covers.max(axis=0)
        if len(quads) == 1:
            up[k] = vectors[0][:, None, None]
        else:
            up[k] = np.einsum("ihw,ic->chw", covers, vectors) / np.maximum(covers.sum(axis=0), 1e-6)
        known[k] = True
    return objectness, up, known


def _train_glance(
    model: TwoStageModel, items: list[GlanceItem], features: np.ndarray, spec: PreprocessSpec,
    config: TrainConfig, reporter: Reporter,
) -> None:
    grid = features.shape[2:]
    objectness, up, known = _glance_targets(items, grid, spec)
    features, objectness, up = features[known], torch.from_numpy(objectness[known]), torch.from_numpy(up[known])
    optimizer = torch.optim.AdamW(model.trainable_parameters("glance"), lr=3e-3, weight_decay=1e-4)
    steps = config.glance_epochs * math.ceil(len(features) / 64)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    rng = np.random.default_rng([config.seed, 7])
    model.glance_head.train()
    with reporter.task("train the glance", steps) as advance:
        for _ in range(config.glance_epochs):
            order = rng.permutation(len(features))
            for start in range(0, len(order), 64):
                index = np.sort(order[start : start + 64])
                logits, vectors = model.glance_from_features(torch.from_numpy(features[index]).float())
                target = objectness[index]
                loss = F.binary_cross_entropy_with_logits(logits, target)
                weight = target / target.sum(dim=(1, 2), keepdim=True).clamp_min(1e-6)
                loss = loss + ((vectors - up[index]).pow(2).sum(1) * weight).sum((1, 2)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                advance(1)
    model.eval()


@torch.inference_mode()
def glance_maps(model: TwoStageModel, features: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    objectness, up = [], []
    for start in range(0, len(features), batch_size):
        logits, vectors = model.glance_from_features(torch.from_numpy(features[start : start + batch_size]).float())
        objectness.append(torch.sigmoid(logits).numpy())
        up.append(vectors.numpy())
    return np.concatenate(objectness), np.concatenate(up)


def _glance_boxes(
    model: TwoStageModel, features: np.ndarray, items: list[GlanceItem], spec: PreprocessSpec, max_items: int
) -> list[list[OrientedBox]]:
    if not len(items):
        return []
    objectness, up = glance_maps(model, features)
    return [boxes_from_maps(objectness[k], up[k], item.frame, spec.input_size, max_items) for k, item in enumerate(items)]


def _other_items(items: list[GlanceItem], classes: list[str], seed: int) -> tuple[list[GlanceItem], list[OrientedBox], list[int]]:
    """The items of each photo besides its decisive one (the manifest's quad), each with its
    jittered box (as training crops are jittered) and its own class, where the manifest names
    a product and authenticity the model has classes for."""
    rng = np.random.default_rng([seed, 13])
    others, boxes, labels = [], [], []
    for item in items:
        if item.quad is None or len(item.item_quads) < 2:
            continue
        listed = json.loads(item.record.extra["items"])
        for entry, quad in zip(listed, item.item_quads):
            label = class_name(str(entry.get("product", item.record.product)), str(entry.get("authenticity", "")))
            if np.allclose(quad, item.quad) or label not in classes:
                continue
            others.append(item)
            boxes.append(jittered(OrientedBox.from_quad(quad), rng))
            labels.append(classes.index(label))
    return others, boxes, labels


def _decisive(item: GlanceItem, boxes: list[OrientedBox]) -> OrientedBox | None:
    """The found box of the photo's decisive item: the one that overlaps its quad most (the
    largest when the photo has no quad or one item only)."""
    if not boxes:
        return None
    if item.quad is None or len(boxes) == 1:
        return boxes[0]
    return max(boxes, key=lambda box: polygon_iou(item.quad, box.corners()))


def match_items(quads: Sequence[np.ndarray], boxes: Sequence[OrientedBox], iou: float = 0.5) -> dict[int, int]:
    """One photo's true items (quads) to the boxes found, greedily by overlap, one to one, at
    IoU >= ``iou``: {index of the quad: index of its box}."""
    pairs = sorted(((polygon_iou(quad, box.corners()), i, j) for i, quad in enumerate(quads) for j, box in enumerate(boxes)), reverse=True)
    matched: dict[int, int] = {}
    for overlap, i, j in pairs:
        if overlap >= iou and i not in matched and j not in matched.values():
            matched[i] = j
    return matched


def item_detection_summary(truths: list[tuple[np.ndarray, ...]], found: list[list[OrientedBox]], iou: float = 0.5) -> dict[str, Any]:
    """Every item found? Greedy one-to-one matching per photo at IoU >= ``iou``: recall of
    the true items, false items per photo, and the share of photos whose count is exact."""
    matched = true_items = false_items = exact = 0
    for quads, boxes in zip(truths, found):
        pairs = match_items(quads, boxes, iou)
        matched += len(pairs)
        true_items += len(quads)
        false_items += len(boxes) - len(pairs)
        exact += len(boxes) == len(quads)
    photos = max(len(truths), 1)
    return {
        "recall_at_iou_0.5": matched / max(true_items, 1), "false_items_per_photo": false_items / photos,
        "count_exact": exact / photos, "n_items": true_items, "n_photos": len(truths),
    }


def localisation_summary(items: list[GlanceItem], boxes: list[OrientedBox | None]) -> dict[str, Any]:
    """IoU of the glance's boxes with the dataset's own (e.g. the generator's quads)."""
    ious, turns = [], []
    for item, box in zip(items, boxes):
        if item.quad is None:
            continue
        ious.append(0.0 if box is None else polygon_iou(item.quad, box.corners()))
        if box is not None:
            truth = OrientedBox.from_quad(item.quad).angle
            turns.append(abs(math.degrees(math.remainder(box.angle - truth, 2 * math.pi))))
    return {
        **iou_summary(ious),
        "up_error_median_deg": float(np.median(turns)) if turns else float("nan"),
        "up_error_over_45deg": float(np.mean(np.array(turns) > 45)) if turns else float("nan"),
    }


# --------------------------------------------------------------------------- focus


def _train_focus(
    model: TwoStageModel, splits: dict[str, FocusSplit], classes: list[str], config: TrainConfig,
    reporter: Reporter, run_dir: Path,
) -> tuple[dict[str, torch.Tensor], int, list[dict[str, Any]]]:
    """(the weights of the best epoch by `selection_key`, that epoch, the history)."""
    train = splits["train"]
    counts = np.bincount(train.labels, minlength=len(classes)).astype(np.float64)
    weights = torch.tensor(len(train.labels) / (len(classes) * np.maximum(counts, 1)), dtype=torch.float32)
    phases = [("head", config.probe_epochs)] * (config.probe_epochs > 0) + [("tail", config.epochs)]
    history: list[dict[str, Any]] = []
    best_key, best_state, best_epoch = (-math.inf, -math.inf), {k: v.clone() for k, v in model.state_dict().items()}, 0
    rng = np.random.default_rng([config.seed, 11])
    epoch = 0
    for phase, epochs in phases:
        parameters = model.trainable_parameters(phase)
        for parameter in model.tail.parameters():
            parameter.requires_grad_(phase == "tail")
        lr = config.lr * (10 if phase == "head" else 1)
        optimizer = torch.optim.AdamW(
            [{"params": [p for p in parameters if p.ndim > 1], "weight_decay": config.weight_decay},
             {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0}], lr=lr,
        )
        steps = epochs * math.ceil(len(train.labels) / config.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=config.warmup_fraction)
        for _ in range(epochs):
            epoch += 1
            started = time.perf_counter()
            model.train()
            if phase == "head":
                model.tail.eval()
            order = rng.permutation(len(train.labels))
            totals = np.zeros(3)
            with reporter.task(f"focus epoch {epoch} ({phase})", len(order)) as advance:
                for start in range(0, len(order), config.batch_size):
                    index = np.sort(order[start : start + config.batch_size])
                    inputs = torch.from_numpy(_draw_views(train, index, rng)).float().contiguous(memory_format=torch.channels_last)
                    targets = torch.from_numpy(train.labels[index])
                    logits = model.focus_from_features(inputs)[0]
                    loss = F.cross_entropy(logits, targets, weight=weights, label_smoothing=config.label_smoothing)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    totals += (loss.item() * len(index), (logits.argmax(1) == targets).sum().item(), len(index))
                    advance(len(index))
            seconds = time.perf_counter() - started
            val_logits = _focus_logits(model, splits["val"].features, config)
            entry = {
                "epoch": epoch, "phase": phase, "train_loss": totals[0] / totals[2], "train_acc": totals[1] / totals[2],
                **validation_metrics(val_logits, splits["val"].labels, classes), "seconds": seconds,
                "train_images_per_s": totals[2] / seconds,
            }
            key = selection_key(entry)
            improved = key > best_key
            if improved:
                best_key, best_epoch = key, epoch
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            history.append(entry)
            with open(run_dir / LOG_NAME, "a") as log:
                log.write(json.dumps(entry) + "\n")
            reporter.message(
                f"focus epoch {epoch} ({phase}): loss {entry['train_loss']:.3f} | val nll {entry['val_nll']:.3f} "
                f"(at T {entry['val_temperature']:.2f}: {entry['val_nll_calibrated']:.3f}) acc {entry['val_acc']:.3f} auc {entry['val_counterfeit_auc']:.3f} | "
                f"{entry['train_images_per_s']:.1f} img/s{'  (best)' if improved else ''}"
            )
    for parameter in model.tail.parameters():
        parameter.requires_grad_(True)
    return best_state, best_epoch, history


def _draw_views(split: FocusSplit, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The features of one of each row's crops, drawn at random (its one crop without further views)."""
    if not split.views:
        return split.features[index]
    every = [split.features, *split.views]
    return np.stack([every[view][row] for row, view in zip(index, rng.integers(0, len(every), len(index)))])


@torch.inference_mode()
def _focus_logits(model: TwoStageModel, features: np.ndarray, config: TrainConfig) -> np.ndarray:
    model.eval()
    chunks = [
        model.focus_from_features(
            torch.from_numpy(features[start : start + config.eval_batch_size]).float().contiguous(memory_format=torch.channels_last)
        )[0].numpy()
        for start in range(0, len(features), config.eval_batch_size)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.num_classes), np.float32)


__all__ = [
    "TwoStageResult", "glance_maps", "item_detection_summary", "localisation_summary", "match_items", "specs_for", "train_two_stage",
]
