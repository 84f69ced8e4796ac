"""`longteng train DATA --out RUN_DIR` (training imports torch only when the command runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from longteng.cli import console
from longteng.training.config import ARCHITECTURES, TrainConfig

# The dataclass is the one source of defaults: the CLI cannot drift from what a run records.
_D = {name: field.default for name, field in TrainConfig.__dataclass_fields__.items()}


def train_command(
    data: Path = typer.Argument(..., help="Dataset root (ROOT/<product>/<genuine|counterfeit>/..., optional manifest.csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: config, log, curves, checkpoints, report."),
    architecture: str = typer.Option(_D["architecture"], help=f"{' or '.join(ARCHITECTURES)}: glance then focus at native resolution, or the whole photo at --image-size."),
    epochs: int = typer.Option(_D["epochs"], help="Training epochs (two_stage: focus fine-tuning epochs after the probe)."),
    image_size: int = typer.Option(_D["image_size"], help="single_stage input size (square, letterboxed)."),
    glance_size: int = typer.Option(_D["glance_size"], help="two_stage: the whole photo's size for the glance."),
    focus_size: int = typer.Option(_D["focus_size"], help="two_stage: the product crop's size for the focus stage."),
    pooling: str = typer.Option(_D["pooling"], help="two_stage: how class maps become logits: lse, topk, max or avg."),
    trunk_blocks: int = typer.Option(_D["trunk_blocks"], help="two_stage: blocks of the frozen, cached trunk (3, 4 or 5); the rest is fine-tuned."),
    focus_views: int = typer.Option(_D["focus_views"], help="two_stage: training crops per photo, each further one at another jittered box and varied by --focus-view-variation; one per photo and epoch."),
    focus_view_variation: str = typer.Option(_D["focus_view_variation"], help="two_stage: what the further views vary: capture (light, colour, noise, JPEG) or occluders (packing over part of the item, kept off marked evidence)."),
    batch_size: int = typer.Option(_D["batch_size"], help="Photos per step (per process under torchrun)."),
    lr: float = typer.Option(_D["lr"], help="Peak AdamW learning rate (warm-up, then cosine decay)."),
    backbone: str = typer.Option(_D["backbone"], help="Backbone name from the registry."),
    weights: str = typer.Option(_D["weights"], help="'default' (offline pretrained), 'none', 'hub', or a weights file."),
    frozen_epochs: int = typer.Option(_D["frozen_epochs"], help="single_stage: warm-up epochs that train only the head."),
    seed: int = typer.Option(_D["seed"], help="Random seed (the same seed replays the same run)."),
    device: str = typer.Option(_D["device"], help="auto, cpu or cuda."),
    workers: int = typer.Option(2, help="Processes that decode photos."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from a previous model (run dir or .pt); new classes grow the head."),
    max_false_alarm_rate: float = typer.Option(_D["max_false_alarm_rate"], help="Operating-point target: genuine photos flagged COUNTERFEIT."),
    min_recall: float = typer.Option(_D["min_counterfeit_recall"], help="Operating-point target: counterfeits caught (COUNTERFEIT or REFER)."),
    label_smoothing: float = typer.Option(_D["label_smoothing"], help="Label smoothing of the cross-entropy loss."),
    channels_last: bool = typer.Option(_D["channels_last"], help="channels_last memory format (about 2x faster on CPU)."),
) -> None:
    """Fine-tune a pretrained CNN; calibrate it and choose its operating point on val; report on test."""
    from longteng.cli.progress import RichReporter
    from longteng.training.malloc import tune_malloc

    tune_malloc()
    config = TrainConfig(
        data=str(data), out=str(out), architecture=architecture, epochs=epochs, image_size=image_size,
        glance_size=glance_size, focus_size=focus_size, pooling=pooling, trunk_blocks=trunk_blocks,
        focus_views=focus_views, focus_view_variation=focus_view_variation, batch_size=batch_size, lr=lr,
        backbone=backbone, weights=weights, frozen_epochs=min(frozen_epochs, epochs), seed=seed, device=device,
        workers=workers, init=str(init) if init else None, max_false_alarm_rate=max_false_alarm_rate,
        min_counterfeit_recall=min_recall, label_smoothing=label_smoothing, channels_last=channels_last,
    )
    if config.architecture == "two_stage":
        if resume or init:
            raise typer.BadParameter("--resume and --init are available for --architecture single_stage only (two_stage retrains in minutes)")
        from longteng.training.two_stage_trainer import train_two_stage

        result = train_two_stage(config, reporter=RichReporter())
    else:
        from longteng.training.trainer import train

        result = train(config, resume=resume, reporter=RichReporter())
    if result.report:
        from longteng.cli.report_view import print_report

        print_report(result.report)
    console.info(f"best model: {result.best}  (report: {result.run_dir / 'report'})")
