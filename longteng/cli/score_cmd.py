"""`longteng score [--model M] ARCHIVE... --out RESULTS`: a verdict row for every photo of an
archive, crash-safe and resumable, on this machine or a Dask cluster.

Imports only typer here; the runtime loads when the command runs, and never torch.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer

from longteng.cli import console, exitcodes
from longteng.cli.predict_cmd import check_counts, usage_error, resolve_model_path
from longteng.cli.predict_view import display_text

EPILOG = (
    "Formats (by the extension of --out): .csv for spreadsheets (up to a few hundred thousand rows); "
    ".jsonl for typed rows to stream into jq, pandas or a log pipeline; .parquet (needs pyarrow) for "
    "millions of rows and analysis in pandas, Polars, DuckDB or Spark. "
    "Rows are journaled in RESULTS.parts/ as they come: after a crash or kill, rerun the same command "
    "and it scores only what is missing. "
    f"Exit codes: {exitcodes.OK} every photo scored; {exitcodes.PARTIAL} finished, some rows are errors "
    f"(error column says why); {exitcodes.ERROR} fatal before any work (model missing or invalid, --out "
    f"not writable, optional extra missing, another run on --out); {exitcodes.USAGE} invalid command line; "
    f"{exitcodes.OUTPUT} results could not be written mid-run (disk full, read-only; rerun to resume); "
    f"{exitcodes.INTERRUPTED} interrupted (rerun to resume). Columns: longteng/inference/score.py."
)


def score_command(
    inputs: Optional[list[str]] = typer.Argument(
        None, metavar="ARCHIVE...", show_default=False,
        help="Folders (walked recursively), photos or quoted glob patterns.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Results file: .csv, .jsonl or .parquet."),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="Exported model (.onnx). Default: $LONGTENG_MODEL, else runs/demo/model.onnx."
    ),
    from_list: Optional[str] = typer.Option(
        None, "--from-list", help="Also score the paths in this file, one per line or NUL-separated as find -print0 writes ('-': standard input)."
    ),
    include: list[str] = typer.Option([], "--include", help="Only photos whose path or name matches this glob (repeatable)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Skip photos whose path or name matches this glob (repeatable)."),
    engine: str = typer.Option("local", "--engine", help="local (process pool) or dask (needs the dask extra)."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://HOST:8786); default: a local cluster."
    ),
    workers: int = typer.Option(0, "--workers", help="Decode processes (local) or local Dask workers (0: CPU count)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Photos per inference batch."),
    threads: int = typer.Option(0, "--threads", help="Inference threads (0: local engine all cores, shared with decoding without spinning; dask: 1 per local worker)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", help="Refuse larger photos as too_large (default 100 million)."
    ),
    part_size: int = typer.Option(
        256, "--part-size", help="Rows per journal part (a kill loses at most one part's work) and per Dask task."
    ),
    sniff: bool = typer.Option(True, "--sniff/--no-sniff", help="In folders, recognise extensionless photos by content."),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."
    ),
) -> None:
    """Score a whole archive: one row per photo (verdict, product, probabilities, errors) into a file."""
    from longteng.inference.journal import FORMATS
    from longteng.inference.score_run import ENGINES
    from longteng.inference.session import PROVIDER_NAMES

    check_counts(threads=threads, batch_size=batch_size, max_pixels=max_pixels, workers=workers)
    if part_size < 1:
        usage_error("--part-size", f"must be at least 1, got {part_size}")
    if engine not in ENGINES:
        usage_error("--engine", f"{engine!r} unknown; allowed: {', '.join(ENGINES)}")
    if scheduler is not None and engine != "dask":
        usage_error("--scheduler", "needs --engine dask")
    if device not in ("auto", *PROVIDER_NAMES):
        usage_error("--device", f"{device!r} unknown; allowed: auto, {', '.join(PROVIDER_NAMES)}")
    if out.suffix.lower() not in FORMATS:
        usage_error("--out", f"{out.suffix or 'no extension'}: choose one of {', '.join(FORMATS)}")
    if not inputs and from_list is None:
        usage_error("ARCHIVE", "give folders or photos, or --from-list FILE")

    from dataclasses import replace

    from longteng.inference.score import ScoreOptions
    from longteng.inference.score_run import ScoreJob

    options = ScoreOptions(batch_size=batch_size, workers=workers, threads=threads, device=device, part_size=part_size)
    if max_pixels is not None:
        options = replace(options, max_pixels=max_pixels)
    list_lines = _read_list_file(from_list)
    # Everything fatal happens here, before the first photo is touched.
    job = ScoreJob(resolve_model_path(model), out, options, engine=engine, scheduler=scheduler)
    for damaged in job.journal.set_aside:
        console.warn(
            f"{display_text(str(damaged.path))}: damaged journal file ({damaged.reason}); "
            f"moved to {display_text(str(damaged.moved_to))}, its photos are scored again"
        )

    def entries() -> Iterator:
        from longteng.inference.discover import DiscoveryOptions, discover, filter_globs, read_list

        listed = read_list(list_lines) if list_lines is not None else ()
        found = discover([*(inputs or ()), *listed], DiscoveryOptions(sniff_extensionless=sniff))
        return filter_globs(found, include, exclude)

    show = console.err().is_terminal if progress is None else progress
    with _progress(show, entries) as advance:
        result = job.run(entries(), advance)

    from longteng.cli.score_view import print_score_summary

    print_score_summary(result, out)
    if result.summary.error_count:
        raise typer.Exit(exitcodes.PARTIAL)


def _read_list_file(from_list: str | None) -> list[str] | None:
    # Read whole (a list of names, not of results) so that it can be walked twice: once to
    # count for the progress bar, once to score.
    if from_list is None:
        return None
    from longteng.errors import ConfigError

    try:
        if from_list == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(from_list, "rb") as handle:
                data = handle.read()
    except OSError as exc:
        raise ConfigError(f"--from-list {from_list}: cannot read ({exc.strerror or exc})") from None
    text = data.decode("utf-8", "surrogateescape")
    # NUL-separated, as `find -print0` writes it (names may then hold newlines), else lines.
    return [name for name in text.split("\0") if name] if "\0" in text else text.splitlines()


@contextlib.contextmanager
def _progress(show: bool, entries) -> Iterator:
    if not show:
        yield None
        return
    from longteng.cli.progress import progress_bar

    with progress_bar() as bar:
        task = bar.add_task("discovering", total=None)
        # A first walk only for the total, so the bar can show an ETA.
        total = sum(1 for _ in entries())
        bar.update(task, description="scoring", total=total)
        yield lambda n=1: bar.advance(task, n)
