"""The end-of-run summary of `longteng score`, on stderr (stdout stays free for pipes)."""

from __future__ import annotations

from pathlib import Path

from longteng.cli import console
from longteng.cli.predict_view import display_text

TOP_FOLDERS = 5


def print_score_summary(result, out: Path) -> None:
    summary, stats = result.summary, result.stats
    write = console.info
    write(f"{summary.rows} rows written to {display_text(str(out))}")
    if result.skipped:
        write(f"  resumed: {result.skipped} rows were already scored by an earlier run")
    if stats.deduplicated:
        write(f"  {stats.deduplicated} identical photos reused an earlier copy's result (decoded and scored once)")
    if summary.verdicts:
        write("  verdicts: " + _counts(summary.verdicts, ("COUNTERFEIT", "REFER", "GENUINE")))
    if summary.products:
        write("  products: " + _counts(summary.products))
    if summary.errors:
        write(f"  errors: {summary.error_count} (" + _counts(summary.errors) + "); see the error_reason column")
    if summary.counterfeit_folders:
        write("  folders with most COUNTERFEIT verdicts:")
        for folder, count in summary.counterfeit_folders.most_common(TOP_FOLDERS):
            write(f"    {count:>6}  {display_text(folder or '.')}")


def _counts(counter, order=()) -> str:
    keys = [k for k in order if counter.get(k)] + sorted(k for k in counter if k not in order)
    return ", ".join(f"{counter[k]} {k}" for k in keys)
