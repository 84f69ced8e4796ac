"""`longteng export RUN_OR_CHECKPOINT --out model.onnx`: the file the officer's runtime loads (imports torch only when run)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from longteng.cli import console
from longteng.inference.aligned_check import DEFAULT_REFERENCES as DEFAULT_ALIGNED_REFERENCES
from longteng.inference.artwork_check import DEFAULT_REFERENCES as DEFAULT_ARTWORK_REFERENCES, MIN_REFERENCES as MIN_ARTWORK_REFERENCES
from longteng.inference.text_check import DEFAULT_REFERENCES


def export_command(
    model: Path = typer.Argument(..., help="Calibrated model: a run directory or its best.pt."),
    out: Path = typer.Option(..., "--out", "-o", help="The .onnx file to write; its model card goes beside it (.md)."),
    int8: bool = typer.Option(False, "--int8", help="Ship a static int8 (QDQ) model, gated on agreement with fp32."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="Dataset root for int8 calibration (train split) and its gate (val split); default: the training data."
    ),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (18+: dynamo exporter; below: TorchScript exporter)."),
    force: bool = typer.Option(False, "--force", help="Ship the int8 model even below 99% top-1 agreement with fp32."),
    parity_data: Optional[Path] = typer.Option(
        None, "--parity-data", help="Dataset root for the parity gate and the unknown-object fit, when the training data has moved."
    ),
    int8_mode: str = typer.Option("u8-7bit-float-ends-percentile", "--int8-mode", help="Quantization recipe (see export/quantize.py)."),
    text_references: int = typer.Option(
        DEFAULT_REFERENCES, "--text-references",
        help="Genuine training photos per product whose print the text check learns (two-stage models; 0: read no print).",
    ),
    aligned_references: int = typer.Option(
        DEFAULT_ALIGNED_REFERENCES, "--aligned-references",
        help="Genuine training photos per product the aligned check compares each item with (two-stage models; 0: none).",
    ),
    artwork_references: int = typer.Option(
        DEFAULT_ARTWORK_REFERENCES, "--artwork-references",
        help="Genuine training photos per product the artwork check learns the logo's size, place and ink from "
             f"(read with the text check; fewer than {MIN_ARTWORK_REFERENCES}: no check for that product; 0: none).",
    ),
) -> None:
    """Export a checkpoint to one self-describing ONNX file, checked against the checkpoint on real photos."""
    from longteng.cli.progress import RichReporter
    from longteng.export.exporter import ExportOptions, export_model

    options = ExportOptions(
        opset=opset, int8=int8, calibration=calibration, force=force, parity_data=parity_data, int8_mode=int8_mode,
        text_references=text_references, aligned_references=aligned_references, artwork_references=artwork_references,
    )
    result = export_model(model, out, options, RichReporter())
    console.out().print(_summary(result), markup=False, highlight=False)


def _summary(result) -> str:
    parity = result.parity
    lines = [
        f"wrote {result.path} (model version {result.model_version}, {result.exporter}, "
        f"opset {result.metadata.provenance['opset']})",
        f"  parity with the checkpoint: {parity.n_photos} photos, max |logit difference| "
        f"{parity.max_abs_logit_difference:.2e}, top-1 agreement {parity.top1_agreement:.2%}",
    ]
    if result.int8 is not None:
        int8 = result.int8
        change = "n/a" if int8.accuracy_change is None else f"{int8.accuracy_change:+.4f}"
        lines.append(
            f"  int8 ({int8.mode}): top-1 agreement with fp32 {int8.top1_agreement:.2%} on {int8.n_photos} val photos, "
            f"accuracy change {change}" + ("  (below the gate: shipped with --force)" if int8.forced else "")
        )
    unknown = result.unknown
    if unknown is None:
        lines.append("  unknown objects: no detector (no training data found)")
    else:
        baselines = ", ".join(f"{name} {auc:.3f}" for name, auc in unknown["baselines_roc_auc"].items())
        lines.append(
            f"  unknown objects ({unknown['method']}, threshold {unknown['threshold']:.4g}): ROC-AUC {unknown['roc_auc']:.3f} "
            f"({unknown['known_split']} vs unrelated photos)" + (f"; baseline {baselines}" if baselines else "")
        )
    registry = result.metadata.text_registry
    if registry is None:
        lines.append("  text check: none (no training data, or --text-references 0)")
    else:
        words = "; ".join(f"{product}: {', '.join(entry['words']) or '-'}" for product, entry in registry.products.items())
        lines.append(f"  text check: registered words {words} (a mismatch means a counterfeit with probability {registry.mismatch_probability:g})")
    artwork = result.metadata.artwork_check
    if artwork is None:
        lines.append("  artwork check: none (no text check, --artwork-references 0 or too few genuine photos, or no logo read on them)")
    else:
        logos = ", ".join(f"{name}: {entry.logo}" for name, entry in sorted(artwork.products.items()))
        lines.append(f"  artwork check: logos {logos} (fires from {artwork.fires_at:g} spreads; a finding means a counterfeit "
                     f"with probability {artwork.mismatch_probability:g}; {len(artwork.to_json()) / 1000:.1f} KB of metadata)")
    aligned = result.metadata.aligned_check
    if aligned is None:
        lines.append("  aligned check: none (it did not raise the validation ROC-AUC, no training data, too few references, or --aligned-references 0)")
    else:
        counts = ", ".join(f"{name} {len(r.pixels)}" for name, r in sorted(aligned.products.items()))
        lines.append(f"  aligned check: genuine references {counts}; its evidence added to the classifier where it fires, operating point chosen again")
    lines.append(f"  model card: {result.card_path}")
    return "\n".join(lines)
