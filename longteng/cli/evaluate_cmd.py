"""`longteng evaluate MODEL DATA`: the full report, or champion vs challenger with --compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from longteng.cli import console


def evaluate_command(
    model: Path = typer.Argument(..., help="Calibrated model: a run directory, its best.pt, or an exported .onnx file."),
    data: Path = typer.Argument(..., help="Dataset root."),
    split: str = typer.Option("test", help="Split to evaluate: train, val, test, or all (a dataset held out as a whole)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write report.json, CSVs and plots here."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="A challenger model: print deltas with bootstrap CIs."),
    as_json: bool = typer.Option(False, "--json", help="Print the report (or comparison) as JSON on stdout."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: int = typer.Option(2, help="Processes that decode photos."),
) -> None:
    """Evaluate a model on one split: accuracy, per-class and per-tell recall, calibration, risk-coverage."""
    from longteng.cli.progress import RichReporter
    from longteng.cli.report_view import print_comparison, print_report
    from longteng.training.evaluate import evaluate_model
    from longteng.training.report import comparison, write_comparison, write_report
    from longteng.decision import OperatingPoint
    from longteng.errors import ConfigError

    reporter = RichReporter()
    champion = evaluate_model(model, data, split, device=device, workers=workers, reporter=reporter)
    if compare is None:
        if out is not None:
            write_report(champion.report, out)
        if as_json:
            console.out().print_json(json.dumps(champion.report))
        else:
            print_report(champion.report)
            _print_pointing(champion.report.get("heatmap_pointing"))
            _print_text_check(champion.report.get("text_check"))
            _print_unknown(champion.report.get("unknown"))
        return

    challenger = evaluate_model(compare, data, split, device=device, workers=workers, reporter=reporter)
    if champion.class_names != challenger.class_names or [r.path for r in champion.records] != [r.path for r in challenger.records]:
        raise ConfigError("--compare needs two models with the same classes, scored on the same photos")
    result = comparison(
        champion.probabilities, challenger.probabilities, champion.labels, champion.class_names,
        OperatingPoint.from_dict(champion.report["operating_point"]),
        OperatingPoint.from_dict(challenger.report["operating_point"]),
        case_ids=[r.case_id for r in champion.records],
    )
    result["champion"], result["challenger"] = str(model), str(compare)
    if out is not None:
        write_comparison(result, out)
    if as_json:
        console.out().print_json(json.dumps(result))
    else:
        print_comparison(result)


def _print_pointing(pointing: dict | None) -> None:
    if not pointing:
        return
    tells = ", ".join(f"{tell} {row['peak_on_tell']:.0%} ({row['chance']:.0%})" for tell, row in pointing["by_tell"].items())
    console.out().print(
        f"\nHeatmap peak on a marked tell: {pointing['peak_on_tell']:.1%} of {pointing['n']} counterfeits "
        f"(chance {pointing['chance']:.1%}); by tell (chance): {tells}",
        markup=False, highlight=False,
    )


def _print_text_check(text_check: dict | None) -> None:
    if not text_check:
        return
    tells = ", ".join(f"{tell} {row['flagged_rate']:.0%}" for tell, row in text_check["per_tell"].items())
    console.out().print(
        f"\nText check (print read against the registered spellings and formats): flagged "
        f"{text_check['genuine_flagged']} of {text_check['n_genuine']} genuine photos and "
        f"{text_check['counterfeit_flagged']} of {text_check['n_counterfeit']} counterfeits; by tell: {tells}",
        markup=False, highlight=False,
    )


def _print_unknown(unknown: dict | None) -> None:
    if not unknown:
        return
    baselines = ", ".join(f"{name} {auc:.4f}" for name, auc in unknown["baselines_roc_auc"].items())
    console.out().print(
        f"\nUnknown objects ({unknown['method']}, threshold {unknown['threshold']:.4g})\n"
        f"  ROC-AUC these photos vs {unknown['n_unrelated']} unrelated photos  {unknown['roc_auc']:.4f}"
        + (f"  (baseline {baselines})" if baselines else "")
        + f"\n  flagged unknown: {unknown['known_flagged_rate']:.1%} of these photos, "
        f"{unknown['unrelated_flagged_rate']:.1%} of the unrelated ones",
        markup=False, highlight=False,
    )
