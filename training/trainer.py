"""`longteng train`: fine-tune a pretrained CNN, calibrate it, pick its operating point, report.

Readable top to bottom: prepare data -> build model -> epochs (train, validate, checkpoint)
-> calibrate on validation -> evaluate the best model on test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from longteng import __version__
from longteng.data.layout import Record, class_names, manifest_hash, scan_dataset
from longteng.decision import OperatingPoint, calibrated_probabilities, counterfeit_score, is_counterfeit_class
from longteng.errors import ConfigError, DatasetError
from longteng.model.backbones import backbone_spec
from longteng.model.checkpoint import Checkpoint, build_model, load_checkpoint, resolve_checkpoint_path, save_checkpoint
from longteng.model.network import Classifier, ModelConfig, create_model, grow_head
from longteng.preprocess import PreprocessSpec, normalize
from longteng.training.augment import augment_batch, recompress_jpeg
from longteng.training.cache import DecodedImages, decode_images
from longteng.training.calibration import fit_calibration
from longteng.training.config import TrainConfig
from longteng.training.distributed import DistContext, all_reduce_sum, init_distributed, shutdown_distributed
from longteng.training.evaluate import torch_logits
from longteng.training.metrics import selection_key, validation_metrics
from longteng.training.operating_point import choose_operating_point
from longteng.training.progress import Reporter, SilentReporter

LOG_NAME = "log.jsonl"


@dataclass
class SplitData:
    decoded: DecodedImages
    labels: np.ndarray


@dataclass
class TrainResult:
    run_dir: Path
    best: Path
    last: Path
    epochs_run: int
    report: dict[str, Any] | None


def preprocess_spec_for(backbone: str, image_size: int) -> PreprocessSpec:
    """What the backbone's weights expect, at the size the run asks for."""
    return dataclasses.replace(backbone_spec(backbone).preprocess, input_size=image_size)


def train(config: TrainConfig, *, resume: bool = False, reporter: Reporter | None = None) -> TrainResult:
    """The single-stage trainer (two-stage models: longteng.training.two_stage_trainer)."""
    if config.architecture != "single_stage":
        raise ConfigError(f"this trainer trains single_stage models; architecture {config.architecture!r} has its own")
    reporter = reporter or SilentReporter()
    context = init_distributed(config.device)
    try:
        return _train(config, resume, reporter if context.is_main else SilentReporter(), context)
    finally:
        shutdown_distributed(context)


def _prepare_run_dir(config: TrainConfig, resume: bool, context: DistContext) -> tuple[TrainConfig, Path]:
    run_dir = Path(config.out)
    saved = run_dir / "config.json"
    if resume:
        if not (run_dir / "last.pt").is_file():
            raise ConfigError(f"--resume: {run_dir} holds no last.pt to resume from")
        # The run's own config wins; only a longer schedule may be asked for.
        stored = TrainConfig.load(saved)
        config = dataclasses.replace(stored, epochs=max(stored.epochs, config.epochs), device=config.device)
    elif (run_dir / "last.pt").exists():
        raise ConfigError(f"--out {run_dir} already holds a run; use --resume to continue it or choose another --out")
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(saved)
    return config, run_dir


def _load_splits(
    config: TrainConfig, classes: list[str], records: list[Record], spec: PreprocessSpec, run_dir: Path,
    reporter: Reporter, context: DistContext,
) -> dict[str, SplitData]:
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, SplitData] = {}
    for split in ("train", "val", "test"):
        chosen = [r for r in records if r.split == split and r.label in index]
        unknown = sum(1 for r in records if r.split == split and r.label not in index)
        if unknown:
            reporter.warning(f"{split}: {unknown} photos of classes absent from train are left out")
        # Rank 0 decodes; the others then read its cache.
        for turn in (0, 1):
            if (turn == 0) == context.is_main:
                with reporter.task(f"decode {split}", len(chosen)) as advance:
                    decoded = decode_images(
                        Path(config.data), chosen, spec, cache_dir=run_dir / "cache",
                        workers=max(1, config.workers), progress=advance,
                    )
            context.barrier()
        for failure in decoded.failures:
            reporter.warning(f"skipped {failure.path}: {failure.detail}")
        labels = np.array([index[r.label] for r in decoded.records], dtype=np.int64)
        splits[split] = SplitData(decoded, labels)
    if len(splits["train"].labels) == 0:
        raise DatasetError(f"{config.data}: no readable training photos")
    if len(splits["val"].labels) == 0:
        raise DatasetError(f"{config.data}: the val split is empty; calibration and the operating point need it")
    missing = [c for i, c in enumerate(classes) if not np.any(splits["train"].labels == i)]
    if missing:
        raise DatasetError(f"{config.data}: no training photos for class(es) {', '.join(missing)}")
    return splits


def _build_model(config: TrainConfig, classes: list[str]) -> tuple[Classifier, ModelConfig, PreprocessSpec]:
    if config.init is None:
        model_config = ModelConfig(backbone=config.backbone, num_classes=len(classes))
        return create_model(model_config, weights=config.weights), model_config, preprocess_spec_for(config.backbone, config.image_size)
    previous = load_checkpoint(resolve_checkpoint_path(config.init))
    old_config = ModelConfig.from_dict(previous.model_config)
    model = create_model(old_config, weights="none")
    model.load_state_dict(previous.state_dict)
    model = grow_head(model, previous.class_names, classes)
    model_config = dataclasses.replace(old_config, num_classes=len(classes))
    spec = dataclasses.replace(previous.preprocess, input_size=config.image_size)
    return model, model_config, spec


def _train(config: TrainConfig, resume: bool, reporter: Reporter, context: DistContext) -> TrainResult:
    config, run_dir = _prepare_run_dir(config, resume, context)
    torch.manual_seed(config.seed)
    records = scan_dataset(config.data)
    classes = class_names(r for r in records if r.split == "train")
    if config.init is not None:
        classes = sorted(set(classes) | set(load_checkpoint(resolve_checkpoint_path(config.init)).class_names))
    if len(classes) < 2:
        raise DatasetError(f"{config.data}: training needs at least two classes, found {classes}")

    model, model_config, spec = _build_model(config, classes)
    splits = _load_splits(config, classes, records, spec, run_dir, reporter, context)
    data_hash = manifest_hash(records)

    device = context.device
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=memory_format)
    steps_per_epoch = math.ceil(len(splits["train"].labels) / (config.batch_size * context.world_size))
    total_steps = steps_per_epoch * config.epochs
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total_steps, config.warmup_fraction))

    start_epoch, best_key = 0, (-math.inf, -math.inf)
    if resume:
        last = load_checkpoint(run_dir / "last.pt")
        model.load_state_dict(last.state_dict)
        optimizer.load_state_dict(last.optimizer_state)
        scheduler.load_state_dict(last.scheduler_state)
        start_epoch = last.epoch + 1
        best_key = tuple(last.extra.get("best_selection_key", best_key))
        reporter.message(f"resuming {run_dir} at epoch {start_epoch + 1}/{config.epochs}")

    class_weights = _class_weights(splits["train"].labels, len(classes)) if config.balance_classes else None
    use_amp = config.amp and device.type == "cuda"
    base_checkpoint = dict(
        model_config=model_config.to_dict(), preprocess=spec, class_names=classes,
        train_config=config.to_dict(), manifest_hash=data_hash, code_version=__version__,
    )

    for epoch in range(start_epoch, config.epochs):
        frozen = epoch < config.frozen_epochs
        model.freeze_backbone(frozen)
        trainable = _wrap(model, context)
        started = time.perf_counter()
        train_loss, train_acc, seen = _train_one_epoch(
            trainable, splits["train"], config, spec, optimizer, scheduler, class_weights, epoch,
            context, reporter, use_amp, memory_format,
        )
        seconds = time.perf_counter() - started
        val = _validate(model, splits["val"], classes, config, spec, device, reporter, memory_format)
        entry = {
            "epoch": epoch + 1, "frozen_backbone": frozen, "train_loss": train_loss, "train_acc": train_acc,
            **val, "lr": scheduler.get_last_lr()[0], "seconds": seconds, "train_images_per_s": seen / seconds,
        }
        key = selection_key(val)
        improved = key > best_key
        best_key = max(best_key, key)
        if context.is_main:
            with open(run_dir / LOG_NAME, "a") as log:
                log.write(json.dumps(entry) + "\n")
            if improved:
                save_checkpoint(Checkpoint(state_dict=model.state_dict(), epoch=epoch, metrics=entry, **base_checkpoint), run_dir / "best.pt")
            save_checkpoint(
                Checkpoint(
                    state_dict=model.state_dict(), epoch=epoch, metrics=entry, optimizer_state=optimizer.state_dict(),
                    scheduler_state=scheduler.state_dict(), extra={"best_selection_key": list(best_key)}, **base_checkpoint,
                ),
                run_dir / "last.pt",
            )
            reporter.message(
                f"epoch {epoch + 1}/{config.epochs}: loss {train_loss:.3f} acc {train_acc:.3f} | "
                f"val nll {val['val_nll']:.3f} (at T {val['val_temperature']:.2f}: {val['val_nll_calibrated']:.3f}) acc {val['val_acc']:.3f} auc {val['val_counterfeit_auc']:.3f} | "
                f"{seen / seconds:.1f} img/s{'  (best)' if improved else ''}"
            )
        context.barrier()

    report = None
    if context.is_main:
        _plot_curves(run_dir)
        report = _finalize(run_dir, splits, classes, spec, config, device, reporter, memory_format)
    context.barrier()
    return TrainResult(run_dir, run_dir / "best.pt", run_dir / "last.pt", config.epochs - start_epoch, report)


def _optimizer(model: Classifier, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms and biases (standard for fine-tuning).
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def _warmup_cosine(total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def _wrap(model: Classifier, context: DistContext) -> torch.nn.Module:
    if not context.enabled:
        return model
    # Re-wrapped per phase: DDP only syncs parameters that required grad when it was built.
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _epoch_order(n: int, seed: int, epoch: int, context: DistContext) -> np.ndarray:
    """Per-epoch permutation from (seed, epoch): resuming replays exactly the same batches."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = len(order) // context.world_size if context.enabled else len(order)
    return order[context.rank * per_rank : (context.rank + 1) * per_rank] if context.enabled else order


def _train_one_epoch(
    model: torch.nn.Module, data: SplitData, config: TrainConfig, spec: PreprocessSpec,
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
    class_weights: torch.Tensor | None, epoch: int, context: DistContext, reporter: Reporter,
    use_amp: bool, memory_format: torch.memory_format,
) -> tuple[float, float, int]:
    model.train()
    device = context.device
    order = _epoch_order(len(data.labels), config.seed, epoch, context)
    rng = np.random.default_rng([config.seed, epoch, context.rank, 1])
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    # Dropout draws from the global generator: reseed it per epoch so a resumed run replays it.
    torch.manual_seed(int(rng.integers(2**62)))
    weights = class_weights.to(device) if class_weights is not None else None
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    with reporter.task(f"epoch {epoch + 1}/{config.epochs}", len(order)) as advance:
        for start in range(0, len(order), config.batch_size):
            index = np.sort(order[start : start + config.batch_size])
            pixels = np.array(data.decoded.pixels[index])
            for i in np.nonzero(rng.random(len(index)) < config.augment.jpeg_probability)[0]:
                pixels[i] = recompress_jpeg(pixels[i], rng.integers(*config.augment.jpeg_quality, endpoint=True))
            augmented = augment_batch(torch.from_numpy(pixels), config.augment, spec, generator)
            inputs = torch.from_numpy(normalize(augmented.numpy(), spec)).to(device).contiguous(memory_format=memory_format)
            targets = torch.from_numpy(data.labels[index]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), targets, weight=weights, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            totals += torch.tensor([loss.item() * len(index), (logits.argmax(1) == targets).sum().item(), len(index)], dtype=torch.float64)
            advance(len(index))
    totals = all_reduce_sum(totals, context)
    return float(totals[0] / totals[2]), float(totals[1] / totals[2]), int(totals[2])


def _validate(
    model: Classifier, data: SplitData, classes: list[str], config: TrainConfig, spec: PreprocessSpec,
    device: torch.device, reporter: Reporter, memory_format: torch.memory_format,
) -> dict[str, float]:
    with reporter.task("validate", len(data.labels)) as advance:
        logits = torch_logits(
            model, data.decoded.pixels, spec, device, batch_size=config.eval_batch_size,
            channels_last=memory_format == torch.channels_last, progress=advance,
        )
    return validation_metrics(logits, data.labels, classes)


def _plot_curves(run_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [json.loads(line) for line in (run_dir / LOG_NAME).read_text().splitlines() if line.strip()]
    epochs = [e["epoch"] for e in entries]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [e["train_loss"] for e in entries], label="train loss (smoothed labels)")
    axes[0].plot(epochs, [e["val_nll"] for e in entries], label="val NLL")
    axes[1].plot(epochs, [e["train_acc"] for e in entries], label="train")
    axes[1].plot(epochs, [e["val_acc"] for e in entries], label="val")
    axes[2].plot(epochs, [e["val_counterfeit_auc"] for e in entries], label="val counterfeit ROC-AUC")
    for axis, title in zip(axes, ("loss", "accuracy", "ROC-AUC")):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(run_dir / "curves.png", dpi=110)
    plt.close(figure)


def _finalize(
    run_dir: Path, splits: dict[str, SplitData], classes: list[str], spec: PreprocessSpec, config: TrainConfig,
    device: torch.device, reporter: Reporter, memory_format: torch.memory_format,
) -> dict[str, Any]:
    """Calibrate the best model on val, choose its operating point, evaluate it on test."""
    from longteng.training.report import evaluation_report, write_report

    best = load_checkpoint(run_dir / "best.pt")
    model = build_model(best).to(device).to(memory_format=memory_format)
    channels_last = memory_format == torch.channels_last

    with reporter.task("calibrate on val", len(splits["val"].labels)) as advance:
        val_logits = torch_logits(model, splits["val"].decoded.pixels, spec, device, batch_size=config.eval_batch_size, channels_last=channels_last, progress=advance)
    temperature, score_calibration = fit_calibration(val_logits, splits["val"].labels, classes)
    val_probabilities = calibrated_probabilities(val_logits, temperature, score_calibration, classes)
    val_scores = counterfeit_score(val_probabilities, classes)
    is_counterfeit = np.array([is_counterfeit_class(classes[i]) for i in splits["val"].labels])
    operating_point = choose_operating_point(
        val_scores, is_counterfeit, max_false_alarm_rate=config.max_false_alarm_rate,
        min_counterfeit_recall=config.min_counterfeit_recall,
    )
    best.temperature = temperature
    best.score_calibration = score_calibration.to_dict()
    best.operating_point = operating_point.to_dict()

    report: dict[str, Any] = {}
    test = splits["test"]
    if len(test.labels):
        with reporter.task("evaluate on test", len(test.labels)) as advance:
            test_logits = torch_logits(model, test.decoded.pixels, spec, device, batch_size=config.eval_batch_size, channels_last=channels_last, progress=advance)
        report = evaluation_report(
            calibrated_probabilities(test_logits, temperature, score_calibration, classes), test.labels, classes, operating_point,
            tells=[r.tells() for r in test.decoded.records], case_ids=[r.case_id for r in test.decoded.records],
            logits=test_logits,
        )
        report["split"] = "test"
        report["temperature"] = temperature
        report["score_calibration"] = score_calibration.to_dict()
        write_report(report, run_dir / "report")
        best.metrics = {**best.metrics, "test": _headline(report)}
    else:
        reporter.warning("the test split is empty: no evaluation report was written")
    save_checkpoint(best, run_dir / "best.pt")
    return report


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    op, calibration = report["operating_point"], report["calibration"]
    return {
        "accuracy": report["accuracy"], "counterfeit_recall": op["counterfeit_recall"],
        "false_alarm_rate": op["false_alarm_rate"], "refer_rate": op["refer_rate"],
        "roc_auc": report["counterfeit"]["roc_auc"], "ece_top_class": calibration["ece_top_class"],
    }
