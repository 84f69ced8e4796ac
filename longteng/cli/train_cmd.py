"""`longteng train DATA --out RUN_DIR` (training imports torch only when the command runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from longteng.cli import console


def train_command(
    data: Path = typer.Argument(..., help="Dataset root (ROOT/<product>/<genuine|counterfeit>/..., optional manifest.csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: config, log, curves, checkpoints, report."),
    epochs: int = typer.Option(8, help="Training epochs."),
    image_size: int = typer.Option(224, help="Model input size (square, letterboxed)."),
    batch_size: int = typer.Option(32, help="Photos per step (per process under torchrun)."),
    lr: float = typer.Option(1e-3, help="Peak AdamW learning rate (warm-up, then cosine decay)."),
    backbone: str = typer.Option("efficientnet_lite0", help="Backbone name from the registry."),
    weights: str = typer.Option("default", help="'default' (offline pretrained), 'none', 'hub', or a weights file."),
    frozen_epochs: int = typer.Option(1, help="Warm-up epochs that train only the head."),
    seed: int = typer.Option(0, help="Random seed (the same seed replays the same run)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: int = typer.Option(2, help="Processes that decode photos into the run's cache."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from a previous model (run dir or .pt); new classes grow the head."),
    max_false_alarm_rate: float = typer.Option(0.02, help="Operating-point target: genuine photos flagged COUNTERFEIT."),
    min_recall: float = typer.Option(0.98, help="Operating-point target: counterfeits caught (COUNTERFEIT or REFER)."),
    label_smoothing: float = typer.Option(0.1, help="Label smoothing of the cross-entropy loss."),
    channels_last: bool = typer.Option(True, help="channels_last memory format (about 2x faster on CPU)."),
) -> None:
    """Fine-tune a pretrained CNN; calibrate it and choose its operating point on val; report on test."""
    from longteng.cli.progress import RichReporter
    from longteng.training.config import TrainConfig
    from longteng.training.trainer import train

    config = TrainConfig(
        data=str(data), out=str(out), epochs=epochs, image_size=image_size, batch_size=batch_size, lr=lr,
        backbone=backbone, weights=weights, frozen_epochs=min(frozen_epochs, epochs), seed=seed, device=device,
        workers=workers, init=str(init) if init else None, max_false_alarm_rate=max_false_alarm_rate,
        min_counterfeit_recall=min_recall, label_smoothing=label_smoothing, channels_last=channels_last,
    )
    result = train(config, resume=resume, reporter=RichReporter())
    if result.report:
        from longteng.cli.report_view import print_report

        print_report(result.report)
    console.info(f"best model: {result.best}  (report: {result.run_dir / 'report'})")
