"""One photo from its plan: design, tells, pose, background, product, packing, camera, JPEG.

Pure function of (config, plan): every random draw comes from generators seeded by
(seed, stream, image index), so a photo is the same whichever worker makes it.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, replace

from longteng.data.evidence import format_evidence
from longteng.data.layout import format_tells, parse_tells
from longteng.data.synth.backgrounds import render_background
from longteng.data.synth.camera import develop
from longteng.data.synth.config import SINGLE_ITEM, SynthConfig
from longteng.data.synth.designs import genuine_design
from longteng.data.synth.evidence import evidence_mask
from longteng.data.synth.plan import STREAM_ITEMS, STREAM_PRODUCT, STREAM_SCENE, STREAM_TELLS, ImagePlan, rng_for
from longteng.data.synth.render import render_product
from longteng.data.synth.scene import draw_pose, occlude, place_product
from longteng.data.synth.tells import MAX_WIDENING, STRENGTH_RANGES, TellInstance, apply_tells

# Item-to-item spread of a factory's tell strength around the case's level.
_STRENGTH_SPREAD = 0.04
# In a photo of several items, each is posed in a cell of a grid grown by this share of the
# cell on every side, so that neighbours may touch or overlap a little, as in a packed box.
_CELL_OVERLAP = 0.08


@dataclass(frozen=True)
class Photo:
    jpeg: bytes
    tells: dict[str, float]
    background: str
    lighting: str
    jpeg_quality: int
    params: str  # compact JSON
    # The product's corners (top-left, top-right, bottom-right, bottom-left of the item
    # itself, top = connector / camera / front) as fractions of the photo's width and height.
    quad: str
    # Where the tells are, in the quad's frame (longteng.data.evidence); '' for a genuine item.
    evidence: str
    # A photo of several items: each one's product, authenticity, tells, quad and evidence as a
    # JSON list (the manifest's `items` column); '' for a photo of one item. The photo's own
    # quad, tells and evidence are then its decisive item's: the first counterfeit, if any.
    items: str = ""


def make_photo(config: SynthConfig, plan: ImagePlan) -> Photo:
    if config.items_per_photo != SINGLE_ITEM:
        return _photo_of_several(config, plan)
    product_rng = rng_for(config.seed, STREAM_PRODUCT, plan.index)
    scene_rng = rng_for(config.seed, STREAM_SCENE, plan.index)
    style = plan.case.style

    genuine = genuine_design(plan.case.product, product_rng)
    tells = item_tells(config, plan)
    design = apply_tells(genuine, tells)

    # Framed for the widest copy a tell can make, whatever this item is.
    pose = draw_pose(genuine.width * MAX_WIDENING, config.size, config.difficulty, scene_rng)
    photo, background_params = render_background(style, config.size, scene_rng)
    sprite = render_product(design, pose.long_side_px, product_rng)
    placement = place_product(photo, sprite, pose, style, scene_rng)
    occlusion = occlude(photo, placement, style, config.difficulty, scene_rng)
    photo, camera_params, quality = develop(photo, style, config.difficulty, scene_rng)

    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=quality)
    params = {
        "product": {"colourway": design.colourway},
        "pose": pose.params(config.size),
        "background": background_params,
        "placement": placement.params,
        "occlusion": occlusion,
        "camera": camera_params,
    }
    return Photo(
        jpeg=buffer.getvalue(),
        tells={tell.name: tell.strength for tell in tells},
        background=style.background,
        lighting=style.lighting,
        jpeg_quality=quality,
        params=json.dumps(params, separators=(",", ":"), sort_keys=True),
        quad=format_quad(placement.quad, config.size),
        evidence=format_evidence(evidence_mask(genuine, design)) if tells else "",
    )


def _photo_of_several(config: SynthConfig, plan: ImagePlan) -> Photo:
    """An opened box: several items of the case's product (or, mixed, of several families with
    the decisive item of the case's), each posed in its own grid cell,
    each genuine or a copy with the case factory's tells at its own strength. No packing lies
    over the items here (an occluder sized for one product could hide a whole small one)."""
    layout_rng = rng_for(config.seed, STREAM_ITEMS, plan.index)
    scene_rng = rng_for(config.seed, STREAM_SCENE, plan.index)
    style = plan.case.style
    fewest, most = config.items_per_photo
    count = int(layout_rng.integers(fewest, most + 1))
    fakes: set[int] = set()
    if plan.counterfeit:
        # Often one copy among genuine items (the hardest case to see), otherwise several.
        how_many = 1 if layout_rng.random() < 0.5 else int(layout_rng.integers(1, count + 1))
        fakes = {int(i) for i in layout_rng.permutation(count)[:how_many]}
    cells = _grid_cells(count, config.size, layout_rng)
    decisive_item = min(fakes) if fakes else 0
    families = [
        config.products[int(layout_rng.integers(len(config.products)))] if config.mixed_products and item != decisive_item
        else plan.case.product
        for item in range(count)
    ]

    photo, background_params = render_background(style, config.size, scene_rng)
    items, poses, colourways = [], [], []
    for item, (x0, y0, x1, y1) in enumerate(cells):
        product_rng = rng_for(config.seed, STREAM_PRODUCT, plan.index, item)
        genuine = genuine_design(families[item], product_rng)
        tells = _tells(config, plan, rng_for(config.seed, STREAM_TELLS, plan.index, item)) if item in fakes else ()
        design = apply_tells(genuine, tells)
        pose = draw_pose(genuine.width * MAX_WIDENING, (int(x1 - x0), int(y1 - y0)), config.difficulty, scene_rng)
        pose = replace(pose, center=(pose.center[0] + x0, pose.center[1] + y0))
        sprite = render_product(design, pose.long_side_px, product_rng)
        placement = place_product(photo, sprite, pose, style, scene_rng)
        items.append({
            "product": families[item],
            "authenticity": "counterfeit" if tells else "genuine",
            "tells": format_tells({tell.name: tell.strength for tell in tells}),
            "quad": format_quad(placement.quad, config.size),
            "evidence": format_evidence(evidence_mask(genuine, design)) if tells else "",
        })
        poses.append(pose.params(config.size))
        colourways.append(design.colourway)
    photo, camera_params, quality = develop(photo, style, config.difficulty, scene_rng)

    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=quality)
    decisive = items[decisive_item]
    params = {
        "product": {"colourways": colourways},
        "poses": poses,
        "background": background_params,
        "camera": camera_params,
    }
    tells: dict[str, float] = {}
    for entry in items:
        for name, strength in parse_tells(entry["tells"]).items():
            tells[name] = max(strength, tells.get(name, 0.0))
    return Photo(
        jpeg=buffer.getvalue(),
        tells=tells,
        background=style.background,
        lighting=style.lighting,
        jpeg_quality=quality,
        params=json.dumps(params, separators=(",", ":"), sort_keys=True),
        quad=decisive["quad"],
        evidence=decisive["evidence"],
        items=json.dumps(items, separators=(",", ":")),
    )


def _grid_cells(count: int, size: tuple[int, int], rng) -> list[tuple[float, float, float, float]]:
    """`count` cells (x0, y0, x1, y1) of the frame, picked at random from the smallest grid of
    near-square cells that holds them, each grown by the overlap and kept inside the frame."""
    width, height = size
    columns = max(1, math.ceil(math.sqrt(count * width / height)))
    rows = math.ceil(count / columns)
    while columns > 1 and (columns - 1) * rows >= count:
        columns -= 1
    cell_w, cell_h = width / columns, height / rows
    chosen = sorted(int(i) for i in rng.permutation(columns * rows)[:count])
    cells = []
    for index in chosen:
        row, column = divmod(index, columns)
        grow_w, grow_h = cell_w * _CELL_OVERLAP, cell_h * _CELL_OVERLAP
        cells.append((
            max(0.0, column * cell_w - grow_w), max(0.0, row * cell_h - grow_h),
            min(float(width), (column + 1) * cell_w + grow_w), min(float(height), (row + 1) * cell_h + grow_h),
        ))
    return cells


def format_quad(quad, size: tuple[int, int]) -> str:
    """(4, 2) corner pixels -> 'x0 y0 x1 y1 x2 y2 x3 y3' in fractions of the frame."""
    width, height = size
    return " ".join(f"{x / width:.5f} {y / height:.5f}" for x, y in quad)


def item_tells(config: SynthConfig, plan: ImagePlan) -> tuple[TellInstance, ...]:
    """The factory's tells at this item's strength; none for a genuine item."""
    if not plan.counterfeit:
        return ()
    return _tells(config, plan, rng_for(config.seed, STREAM_TELLS, plan.index))


def _tells(config: SynthConfig, plan: ImagePlan, rng) -> tuple[TellInstance, ...]:
    low, high = STRENGTH_RANGES[config.difficulty]
    return tuple(
        TellInstance(
            tell.name,
            # Rounded as the manifest prints it, so the recorded strength is the drawn one.
            round(float(min(high, max(low, tell.level + rng.normal(0.0, _STRENGTH_SPREAD)))), 2),
            tell.level,
            tell.variant,
        )
        for tell in plan.case.tells
    )
