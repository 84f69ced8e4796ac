"""`longteng predict [--model M] IMAGE_OR_DIR_OR_GLOB...`: a verdict per photo (or per item).

Imports only typer here; the runtime (onnxruntime, numpy, Pillow) loads when the command runs,
and never torch, so an officer's laptop answers in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from longteng.cli import console, exitcodes

EPILOG = (
    f"Exit codes: {exitcodes.OK} every input got a verdict; "
    f"{exitcodes.PARTIAL} some inputs failed (each has an error row naming the file and the reason); "
    f"{exitcodes.ERROR} fatal, nothing done: the model is missing or invalid, or --explain cannot be written; "
    f"{exitcodes.USAGE} invalid command line. "
    "--json rows follow schema_version 1 (documented in longteng/inference/records.py)."
)


def predict_command(
    inputs: list[str] = typer.Argument(
        ..., metavar="IMAGE_OR_DIR_OR_GLOB...", show_default=False,
        help="Photos, folders (walked recursively) or quoted glob patterns ('**' spans folders).",
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="Exported model (.onnx). Default: $LONGTENG_MODEL, else runs/demo/model.onnx."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line (schema_version 1)."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV with a header row: the --json fields, flattened."),
    explain: Optional[Path] = typer.Option(
        None, "--explain", help="Write a heatmap overlay per photo into this folder (the regions that drove the verdict)."
    ),
    explain_format: str = typer.Option("jpg", "--explain-format", help="Overlay file format: jpg or png."),
    item: Optional[str] = typer.Option(
        None, "--item", help="All photos show one item NAME (front, back, label): one verdict, as suspicious as its most suspicious photo."
    ),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", help="Group photos into items by a rule: 'parent' (each folder is one item)."
    ),
    threads: int = typer.Option(0, "--threads", help="Inference threads (0: all cores)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", help="Photos per inference batch."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", help="Refuse larger photos as too_large (default 100 million; phones reach 50 MP)."
    ),
    sniff: bool = typer.Option(False, "--sniff", help="In folders, also check files without an extension by content."),
) -> None:
    """Give each photo a verdict: GENUINE, COUNTERFEIT or REFER (to an expert), with product and confidence."""
    _check_usage(as_json, as_csv, item, group_by, device, explain_format)
    check_counts(threads=threads, batch_size=batch_size, max_pixels=max_pixels)

    from dataclasses import replace

    from longteng.inference.discover import DiscoveryOptions, discover
    from longteng.inference.predict import PredictOptions, Predictor

    options = PredictOptions(threads=threads, device=device, batch_size=batch_size)
    if max_pixels is not None:
        options = replace(options, max_pixels=max_pixels)
    # Everything fatal happens here, before the first photo is touched.
    model_path = resolve_model_path(model)
    predictor = Predictor(model_path, options)
    predictor.prepare()
    explain_options = _explain_options(explain, explain_format, options.max_pixels, predictor)

    writer = _writer(as_json, as_csv, items=bool(item or group_by), predictor=predictor, explain=explain is not None)
    results = predictor.predict(discover(inputs, DiscoveryOptions(sniff_extensionless=sniff)))
    if item is not None or group_by is not None:
        from longteng.inference.rows import item_rows

        records = item_rows(results, predictor.metadata, explain_options, item_name=item, group_rule=group_by)
    else:
        from longteng.inference.rows import photo_rows

        records = photo_rows(results, predictor.metadata, explain_options)

    written = []
    try:
        for record in records:
            writer.write(record)
            written.append(record)
    finally:
        writer.close()

    from longteng.cli.predict_view import print_summary

    print_summary(written, items=bool(item or group_by))
    if explain is not None and not as_json and not as_csv:
        from longteng.cli import console

        console.info(f"heatmaps in {explain}")
    if any(record["kind"] == "error" for record in written):
        raise typer.Exit(exitcodes.PARTIAL)


def resolve_model_path(model: Path | None) -> Path:
    """--model, else $LONGTENG_MODEL, else the demo model; CheckpointError if it is not there."""
    from longteng.errors import CheckpointError
    from longteng.inference.session import default_model_path

    model_path = model if model is not None else default_model_path()
    if not model_path.is_file():
        raise CheckpointError(
            f"{model_path}: no such model file (pass --model or set LONGTENG_MODEL; "
            "make one with `longteng export RUN --out model.onnx`)"
        )
    return model_path


def _check_usage(
    as_json: bool, as_csv: bool, item: str | None, group_by: str | None, device: str, explain_format: str
) -> None:
    if as_json and as_csv:
        usage_error("--json/--csv", "choose one")
    if item is not None and group_by is not None:
        usage_error("--item/--group-by", "they exclude each other")
    if item is not None and not item.strip():
        usage_error("--item", "the item needs a name")
    from longteng.inference.explain import FORMATS
    from longteng.inference.items import GROUP_RULES
    from longteng.inference.session import PROVIDER_NAMES

    devices = ("auto", *PROVIDER_NAMES)

    for option, value, allowed in (
        ("--group-by", group_by, GROUP_RULES), ("--device", device, devices), ("--explain-format", explain_format, tuple(FORMATS)),
    ):
        if value is not None and value not in allowed:
            usage_error(option, f"{value!r} unknown; allowed: {', '.join(allowed)}")


# Beyond these a count only exhausts the machine (onnxruntime crashes on 100000 threads).
MAX_THREADS = 256
MAX_WORKERS = 256
MAX_BATCH_SIZE = 1024


def check_counts(*, threads: int, batch_size: int, max_pixels: int | None, workers: int = 0) -> None:
    from longteng.imageio import MAX_PIXELS_LIMIT

    if not 0 <= threads <= MAX_THREADS:
        usage_error("--threads", f"must be 0 (all cores) to {MAX_THREADS}, got {threads}")
    if not 0 <= workers <= MAX_WORKERS:
        usage_error("--workers", f"must be 0 (all cores) to {MAX_WORKERS}, got {workers}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        usage_error("--batch-size", f"must be 1 to {MAX_BATCH_SIZE}, got {batch_size}")
    if max_pixels is not None and not 1 <= max_pixels <= MAX_PIXELS_LIMIT:
        usage_error("--max-pixels", f"must be 1 to {MAX_PIXELS_LIMIT} (a {MAX_PIXELS_LIMIT // 10**6} MP photo needs 3 GB), got {max_pixels}")


def usage_error(option: str, message: str) -> None:
    # Printed here rather than raised as a click error, so the exit code is USAGE whichever
    # click the installed typer bundles.
    console.err().print(f"usage error: {option}: {message}", markup=False, highlight=False)
    raise typer.Exit(exitcodes.USAGE)


def _explain_options(folder: Path | None, image_format: str, max_pixels: int, predictor):
    if folder is None:
        return None
    from longteng.errors import CheckpointError, ConfigError
    from longteng.inference.explain import ExplainOptions

    if "class_maps" not in predictor.model.output_names:
        raise CheckpointError(f"{predictor.model_path}: model has no class_maps output, so --explain cannot draw heatmaps")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--explain {folder}: cannot create the folder ({exc.strerror or exc})") from None
    return ExplainOptions(out_dir=folder, image_format=image_format, max_pixels=max_pixels)


def _writer(as_json: bool, as_csv: bool, *, items: bool, predictor, explain: bool):
    from longteng.cli.predict_view import CsvWriter, JsonLinesWriter, TableWriter

    if as_json:
        return JsonLinesWriter()
    if as_csv:
        return CsvWriter()
    return TableWriter(items=items, show_unknown=predictor.metadata.unknown is not None, show_explain=explain)

