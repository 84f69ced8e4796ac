"""Readable tables of evaluation reports and model comparisons."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table

from longteng.cli import console


def print_report(report: Mapping) -> None:
    from longteng.training.report import format_report_text

    console.out().print(format_report_text(report), markup=False, highlight=False)


def print_comparison(result: Mapping) -> None:
    table = Table(title=f"challenger - champion on {result['n_photos']} photos "
                        f"({result['level']:.0%} paired bootstrap CI over {result['resampling_unit']}s)")
    for column in ("metric", "champion", "challenger", "delta", "CI", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for name, row in result["metrics"].items():
        verdict = {True: "[green]better[/]", False: "[red]worse[/]", None: "no significant change"}[row["better"]]
        table.add_row(
            name, _number(row["champion"]), _number(row["challenger"]), _number(row["delta"], "+.4f"),
            f"[{_number(row['ci_low'], '+.4f')}, {_number(row['ci_high'], '+.4f')}]", verdict,
        )
    console.out().print(table)


def _number(value: float | None, spec: str = ".4f") -> str:
    # None: the metric is undefined on this split (e.g. ROC-AUC without counterfeits).
    return "n/a" if value is None else format(value, spec)
