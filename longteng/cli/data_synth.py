"""`longteng data synth OUT` (implemented with longteng.data.synth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from longteng.cli import console
from longteng.cli.data import data_app
from longteng.data.tell_names import TELL_NAMES

_TELL_HELP = "Comma-separated or repeated. Tells: " + ", ".join(TELL_NAMES) + "."


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder: new, empty, or an earlier synth output (replaced).")],
    images: Annotated[int, typer.Option("--images", "-n", help="Number of photos to generate.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same arguments + seed = identical files.")] = 0,
    difficulty: Annotated[
        str, typer.Option("--difficulty", help="easy | medium | hard: how subtle the tells and how rough the photos.")
    ] = "medium",
    size: Annotated[
        str, typer.Option("--size", help="Photo size WIDTHxHEIGHT, up to phone resolution (4000x3000).")
    ] = "640x480",
    tells: Annotated[list[str] | None, typer.Option("--tells", help="Only use these tells. " + _TELL_HELP)] = None,
    exclude_tells: Annotated[
        list[str] | None, typer.Option("--exclude-tells", help="Never use these tells. " + _TELL_HELP)
    ] = None,
    counterfeit_fraction: Annotated[
        float, typer.Option("--counterfeit-fraction", help="Expected share of counterfeit photos.")
    ] = 0.5,
    images_per_case: Annotated[
        int, typer.Option("--images-per-case", help="Mean photos per seizure case (one shipment).")
    ] = 8,
    products: Annotated[
        list[str] | None,
        typer.Option(
            "--products",
            help="Product families to draw, comma-separated or repeated (default: smartphone, drone, "
            "usb_flash_drive). power_bank is a fourth family, for registering a product from genuine photos.",
        ),
    ] = None,
    items_per_photo: Annotated[
        str,
        typer.Option(
            "--items-per-photo",
            help="Items in one photo, a count or a range such as 1-6 (an opened box of one product family; "
            "some of a counterfeit photo's items may be genuine). The manifest then gets an items column.",
        ),
    ] = "1",
    mixed_products: Annotated[
        bool,
        typer.Option(
            "--mixed-products",
            help="With --items-per-photo: an opened box of several families, each item's drawn from --products "
            "(the photo's decisive item, its first counterfeit, is of the photo's own family).",
        ),
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", "-j", help="Worker processes; output does not depend on it.")
    ] = 1,
) -> None:
    """Generate synthetic seizure photos of fictional-brand smartphones, drones and USB drives.

    Writes OUT/<product>/<genuine|counterfeit>/*.jpg, OUT/manifest.csv and OUT/synth_config.json.
    """
    # The generator (numpy, Pillow, fonts) loads only when this command runs.
    from longteng.data.synth import SynthConfig, parse_items_per_photo, parse_size, parse_tell_names, synthesize

    config = SynthConfig(
        images=images,
        seed=seed,
        difficulty=difficulty,
        size=parse_size(size),
        tells=parse_tell_names(tells) if tells else None,
        exclude_tells=parse_tell_names(exclude_tells or ()),
        counterfeit_fraction=counterfeit_fraction,
        images_per_case=images_per_case,
        **({"products": parse_tell_names(products)} if products else {}),
        items_per_photo=parse_items_per_photo(items_per_photo),
        mixed_products=mixed_products,
    )
    bar = Progress(
        TextColumn("synth"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console.err(),
        transient=True,
    )
    task = bar.add_task("synth", total=config.images)

    def advance(count: int) -> None:
        # Started on the first photo, so that argument errors print without a stray bar.
        if not bar.live.is_started:
            bar.start()
        bar.advance(task, count)

    try:
        summary = synthesize(config, out, workers=workers, progress=advance)
    finally:
        bar.stop()
    splits = " / ".join(f"{split} {count}" for split, count in summary.images_per_split.items())
    console.out().print(
        f"wrote {summary.images} photos ({summary.genuine} genuine, {summary.counterfeit} counterfeit; "
        f"{summary.cases} cases; {splits}) to {summary.out} in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} photos/s)",
        markup=False,
        highlight=False,
    )
