"""`longteng reference add|list`: register a product from genuine photos alone, no retraining.

No torch: registration runs the exported model's own runtime path on the photos and writes a
new model file whose metadata knows the product (inference/registered.py).
"""

from __future__ import annotations

from pathlib import Path

import typer

from longteng.cli import console, exitcodes

reference_app = typer.Typer(
    help="Products registered from genuine photos alone: recognised and checked without retraining.",
    no_args_is_help=True,
)

ADD_EPILOG = (
    f"Exit codes: {exitcodes.OK} registered; {exitcodes.PARTIAL} registered, but some photos could not be read "
    f"(each named); {exitcodes.ERROR} nothing written: the model cannot register products, the name is taken "
    f"by a trained product, or too few photos could be read; {exitcodes.USAGE} invalid command line."
)


@reference_app.command("add", epilog=ADD_EPILOG)
def add_command(
    model: Path = typer.Argument(..., help="Exported two-stage model (.onnx)."),
    photos: list[str] = typer.Argument(
        ..., metavar="PHOTO_OR_DIR_OR_GLOB...", help="Genuine photos of the product, one item per photo (50 or more measure well)."
    ),
    product: str = typer.Option(..., "--product", "-p", help="The product's name (lowercase letters, digits, '_' or '-')."),
    out: Path = typer.Option(..., "--out", "-o", help="The .onnx file to write: the same graph, knowing the product."),
) -> None:
    """Register a product the network never saw, from genuine photos alone."""
    from longteng.inference.discover import DiscoveryError, discover
    from longteng.inference.model_file import check_model_out, write_with_metadata
    from longteng.inference.registered import register_product, with_product
    from longteng.inference.session import OnnxModel, RuntimeOptions

    from longteng.cli.predict_cmd import resolve_model_path

    check_model_out(out)  # before a single photo is read
    runtime = OnnxModel(resolve_model_path(model), RuntimeOptions())
    found = list(discover(photos))
    unreadable = [(entry.path, entry.reason, entry.detail) for entry in found if isinstance(entry, DiscoveryError)]
    paths = [entry for entry in found if not isinstance(entry, DiscoveryError)]
    registered, reads, failures, references, artwork_references = register_product(runtime, product, paths)
    unreadable += [(failure.path, failure.reason, failure.detail) for failure in failures]
    metadata = with_product(runtime.metadata, registered, reads, references, artwork_references)
    write_with_metadata(runtime.path, out, metadata)
    errors = console.err()
    for path, reason, detail in unreadable:
        errors.print(f"{path}: {reason}: {detail}", markup=False, highlight=False)
    entry = metadata.text_registry.products[registered.name]  # type: ignore[union-attr]
    console.out().print(
        f"registered {registered.name} from {registered.photos} genuine photos"
        + (f" ({len(unreadable)} could not be read)" if unreadable else "")
        + f"\n  print read on them: words {', '.join(entry['words']) or '-'}; formats {', '.join(entry['formats']) or '-'}"
        + f"\n  novelty threshold (the farthest a reference lies from the others' spread): {registered.novelty_threshold:.4g}; "
        "beyond it COUNTERFEIT, within it REFER, never GENUINE"
        + ("" if references is None else f"\n  aligned check: {len(references.pixels)} references, compared place by place")
        + f"\n  wrote {out}",
        markup=False, highlight=False,
    )
    if unreadable:
        raise typer.Exit(exitcodes.PARTIAL)


@reference_app.command("list")
def list_command(model: Path = typer.Argument(..., help="Exported model (.onnx).")) -> None:
    """The products a model was trained on and those registered from genuine photos."""
    from longteng.inference.session import OnnxModel, RuntimeOptions

    from longteng.cli.predict_cmd import resolve_model_path

    metadata = OnnxModel(resolve_model_path(model), RuntimeOptions()).metadata
    lines = [f"trained: {', '.join(sorted(metadata.trained_products))}"]
    registry = metadata.text_registry.products if metadata.text_registry else {}
    for product in metadata.registered_products:
        words = ", ".join(registry.get(product.name, {}).get("words", [])) or "-"
        lines.append(
            f"registered: {product.name} ({product.photos} photos; words {words}; novelty threshold {product.novelty_threshold:.4g})"
        )
    if not metadata.registered_products:
        lines.append("registered: none")
    console.out().print("\n".join(lines), markup=False, highlight=False)
