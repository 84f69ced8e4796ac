"""What all photos of one seizure case share: where they were taken and with what camera.

Drawn once per case, independently of which items in it are counterfeit, so that no
case-level nuisance predicts the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUNDS = ("cardboard", "foam", "bubble_wrap", "inspection_table")
LIGHTINGS = ("fluorescent", "tungsten", "daylight", "flash")
PACKING = ("foam_peanuts", "kraft_paper", "bubble_sheet", "tape")

_BACKGROUND_TONES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "cardboard": ((182, 142, 98), (164, 126, 84), (196, 160, 118), (150, 118, 84)),
    "foam": ((46, 48, 52), (226, 226, 222), (216, 170, 180), (70, 82, 98)),
    "bubble_wrap": ((182, 142, 98), (200, 202, 204), (120, 126, 132)),
    "inspection_table": ((170, 172, 176), (40, 92, 72), (232, 232, 228), (96, 98, 104)),
}


@dataclass(frozen=True)
class SceneStyle:
    background: str
    background_tone: tuple[int, int, int]
    background_variant: int  # e.g. steel / cutting mat / laminate for inspection tables
    lighting: str
    packing: str  # the packing material that may occlude items of this shipment
    exposure: float  # the photographer's usual exposure
    jpeg_quality: int  # the camera's usual setting; each photo varies around it
    noise: float  # the sensor's usual noise, 8-bit levels


def draw_scene_style(rng: np.random.Generator) -> SceneStyle:
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    tones = _BACKGROUND_TONES[background]
    base = np.array(tones[int(rng.integers(len(tones)))], float)
    tone = tuple(int(v) for v in np.clip(base + rng.normal(0, 6, 3), 0, 255))
    return SceneStyle(
        background=background,
        background_tone=tone,  # type: ignore[arg-type]
        background_variant=int(rng.integers(3)),
        lighting=LIGHTINGS[int(rng.integers(len(LIGHTINGS)))],
        packing=PACKING[int(rng.integers(len(PACKING)))],
        exposure=float(rng.uniform(0.85, 1.1)),
        jpeg_quality=int(rng.integers(62, 94)),
        noise=float(rng.uniform(0.0, 2.0)),
    )
