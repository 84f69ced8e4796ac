"""One photo from its plan: design, tells, pose, background, product, packing, camera, JPEG.

Pure function of (config, plan): every random draw comes from generators seeded by
(seed, stream, image index), so a photo is the same whichever worker makes it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from longteng.data.evidence import format_evidence
from longteng.data.synth.backgrounds import render_background
from longteng.data.synth.camera import develop
from longteng.data.synth.config import SynthConfig
from longteng.data.synth.designs import genuine_design
from longteng.data.synth.evidence import evidence_mask
from longteng.data.synth.plan import STREAM_PRODUCT, STREAM_SCENE, STREAM_TELLS, ImagePlan, rng_for
from longteng.data.synth.render import render_product
from longteng.data.synth.scene import draw_pose, occlude, place_product
from longteng.data.synth.tells import MAX_WIDENING, STRENGTH_RANGES, TellInstance, apply_tells

# Item-to-item spread of a factory's tell strength around the case's level.
_STRENGTH_SPREAD = 0.04


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


def make_photo(config: SynthConfig, plan: ImagePlan) -> Photo:
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


def format_quad(quad, size: tuple[int, int]) -> str:
    """(4, 2) corner pixels -> 'x0 y0 x1 y1 x2 y2 x3 y3' in fractions of the frame."""
    width, height = size
    return " ".join(f"{x / width:.5f} {y / height:.5f}" for x, y in quad)


def item_tells(config: SynthConfig, plan: ImagePlan) -> tuple[TellInstance, ...]:
    """The factory's tells at this item's strength; none for a genuine item."""
    if not plan.counterfeit:
        return ()
    rng = rng_for(config.seed, STREAM_TELLS, plan.index)
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
