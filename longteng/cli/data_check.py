"""`longteng data check ROOT` (implemented with longteng.data.check)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from longteng.cli import exitcodes
from longteng.cli.console import out
from longteng.cli.data import data_app
from longteng.cli.progress import progress_bar

if TYPE_CHECKING:
    from longteng.data.check import CheckReport, DuplicateGroup

# Thousands of findings stay readable: the first few per section, then a count.
SHOWN_PER_SECTION = 20
SHOWN_PER_GROUP = 6


@data_app.command("check")
def check_command(
    root: Path = typer.Argument(
        ..., help="Dataset root: ROOT/<product>/<genuine|counterfeit>/<image>, optional manifest.csv."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document on stdout."),
    strict: bool = typer.Option(False, "--strict", help=f"Exit with code {exitcodes.PARTIAL} when errors are found."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes that decode and hash images."),
    near_distance: int = typer.Option(
        6, "--near-distance", min=0, max=64, help="Largest perceptual-hash distance (bits of 64) of near duplicates."
    ),
) -> None:
    """Check a dataset: unreadable files, manifest drift, duplicates leaking across splits, balance."""
    from longteng.data.check import check_dataset  # lazy: numpy and Pillow are not needed for --help

    bar = progress_bar()
    task = None

    def show_progress(done: int, total: int) -> None:
        nonlocal task
        # Started on the first file, so an unusable root is a one-line error with no bar.
        if task is None:
            bar.start()
            task = bar.add_task("hashing images", total=total)
        bar.update(task, completed=done)

    try:
        report = check_dataset(root, near_duplicate_distance=near_distance, workers=workers, progress=show_progress)
    finally:
        bar.stop()

    if as_json:
        out().print(json.dumps(report.to_dict(), indent=2), markup=False, highlight=False, emoji=False)
    else:
        _print_report(report)
    if strict and report.errors:
        raise typer.Exit(exitcodes.PARTIAL)


# --- human-readable report -------------------------------------------------------------


def _print_report(report: CheckReport) -> None:
    console = out()
    source = "manifest.csv" if report.has_manifest else "folders (no manifest.csv)"
    console.print(
        f"[bold]{escape(report.root)}[/]: {report.listed} images listed from {source}, {report.usable} usable",
        highlight=False,
    )
    console.print(_counts_table(report))

    errors = _error_sections(report)
    warnings = _warning_sections(report)
    for title, lines in errors:
        _print_section(f"[red]error[/] {title}", lines)
    for title, lines in warnings:
        _print_section(f"[yellow]warning[/] {title}", lines)

    error_count, warning_count = len(report.errors), len(report.warnings)
    if error_count == 0 and warning_count == 0:
        console.print("[green]no problems found[/]")
        return
    console.print(
        f"[{'red' if error_count else 'green'}]{error_count} error(s)[/], "
        f"[{'yellow' if warning_count else 'green'}]{warning_count} warning(s)[/]",
        highlight=False,
    )
    if error_count:
        console.print(f"(--strict turns errors into exit code {exitcodes.PARTIAL}; --json lists every item)")


def _counts_table(report: CheckReport) -> Table:
    from longteng.data.layout import SPLITS, split_class_name

    table = Table(title="usable images per class and split", title_justify="left")
    table.add_column("product")
    table.add_column("authenticity")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right", style="bold")
    column_totals = dict.fromkeys(SPLITS, 0)
    for name, per_split in report.counts.items():
        product, authenticity = split_class_name(name)
        total = sum(per_split.values())
        cells = [str(per_split[split]) if per_split[split] else "[red]0[/]" for split in SPLITS]
        table.add_row(escape(product), authenticity, *cells, str(total) if total else "[red]0[/]")
        for split in SPLITS:
            column_totals[split] += per_split[split]
    table.add_section()
    table.add_row("all", "", *(str(column_totals[s]) for s in SPLITS), str(report.usable))
    return table


def _error_sections(report: CheckReport) -> list[tuple[str, list[str]]]:
    leaks = [("exact", g) for g in report.exact_duplicates if g.cross_split]
    leaks += [("near", g) for g in report.near_duplicates if g.cross_split]
    sections = [
        (
            "unreadable images",
            [f"{escape(u.path)}  [bold]{u.reason}[/]: {escape(u.detail)}" for u in report.unreadable],
        ),
        ("listed in manifest.csv but missing on disk", [escape(p) for p in report.missing]),
        ("listed more than once in manifest.csv", [escape(p) for p in report.repeated_entries]),
        (
            "sha256 differs from manifest.csv (file changed after the manifest was written)",
            [escape(m.path) for m in report.sha256_mismatch],
        ),
        (
            "duplicates across splits (test leakage)",
            [f"{kind}, {'/'.join(g.splits)}: {_paths(g)}" for kind, g in leaks],
        ),
        (
            "identical files with different labels",
            [f"{', '.join(g.labels)}: {_paths(g)}" for g in report.exact_duplicates if g.cross_label],
        ),
    ]
    return [(title, lines) for title, lines in sections if lines]


def _warning_sections(report: CheckReport) -> list[tuple[str, list[str]]]:
    within = [("exact", g) for g in report.exact_duplicates if not g.cross_split]
    within += [("near", g) for g in report.near_duplicates if not g.cross_split and g.cases > 1]
    sections = [
        ("images on disk but not in manifest.csv (training ignores them)", [escape(p) for p in report.unlisted]),
        ("class balance", [escape(message) for message in report.imbalance]),
        ("duplicates within one split", [f"{kind}, {g.splits[0]}: {_paths(g)}" for kind, g in within]),
    ]
    if report.cases_without_id:
        sections.append(("photos without case_id", [escape(report.case_id_warning())]))
    return [(title, lines) for title, lines in sections if lines]


def _paths(group: DuplicateGroup) -> str:
    shown = ", ".join(escape(p) for p in group.paths[:SHOWN_PER_GROUP])
    hidden = len(group.paths) - SHOWN_PER_GROUP
    return f"{shown} (+{hidden} more)" if hidden > 0 else shown


def _print_section(title: str, lines: list[str]) -> None:
    console = out()
    console.print(f"\n{title} ({len(lines)})", highlight=False)
    for line in lines[:SHOWN_PER_SECTION]:
        console.print(f"  {line}", highlight=False)
    if len(lines) > SHOWN_PER_SECTION:
        console.print(f"  ... and {len(lines) - SHOWN_PER_SECTION} more", highlight=False)
