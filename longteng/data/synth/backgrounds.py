"""Procedural backgrounds: the inside of a cardboard box, foam inserts, bubble wrap, an
inspection table (brushed steel, cutting mat or laminate).

Textures are computed at a working size of at most 400 px and enlarged: their structure
is coarse, and the camera stage adds per-pixel sensor noise at full resolution. Thin
lines (a cutting mat's grid) are drawn at full size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from longteng.data.synth.noise import hex_lattice_offsets, smooth_noise, streak_noise
from longteng.data.synth.styles import SceneStyle

_WORK_LONG_SIDE = 400

Painter = Callable[[SceneStyle, tuple[int, int], np.random.Generator, dict], Image.Image]


def render_background(style: SceneStyle, size: tuple[int, int], rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """An RGB background of `size` (width, height) and the parameters that made it."""
    width, height = size
    scale = min(1.0, _WORK_LONG_SIDE / max(size))
    work = (max(8, round(width * scale)), max(8, round(height * scale)))
    params: dict = {"kind": style.background, "tone": list(style.background_tone)}
    image = _PAINTERS[style.background](style, work, rng, params)
    if work != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    if params.get("surface") == "cutting_mat":
        _mat_grid(image, rng, params)
    return image, params


# Relief (around 1.0) is stored as bytes with 1.0 at this level, then tinted by lookup.
_RELIEF_ONE = 160.0


def _tinted(style: SceneStyle, relief: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The style's tone modulated by a relief field around 1.0."""
    # The same shipment photographed twice is never exactly the same colour.
    tone = np.array(style.background_tone, np.float64) * rng.uniform(0.96, 1.04, 3)
    levels = np.arange(256) / _RELIEF_ONE
    table = np.concatenate([np.clip(levels * t, 0, 255) for t in tone]).round().astype(np.uint8)
    grey = Image.fromarray(np.clip(relief * _RELIEF_ONE, 0, 255).astype(np.uint8), "L")
    return Image.merge("RGB", (grey, grey, grey)).point(table.tolist())


def _cardboard(style: SceneStyle, size: tuple[int, int], rng: np.random.Generator, params: dict) -> Image.Image:
    width, height = size
    short = min(size)
    vertical = bool(rng.random() < 0.5)
    relief = (
        smooth_noise(rng, (height, width), short / 5) * 0.05
        + smooth_noise(rng, (height, width), short / 30) * 0.025
        + streak_noise(rng, (height, width), 14.0, vertical) * 0.03
        + 1.0
    )
    # Corrugation showing through the liner.
    flute_period = rng.uniform(0.025, 0.045) * short
    axis = np.arange(width if vertical else height, dtype=np.float32)
    flutes = 0.012 * np.sin(2 * math.pi * axis / flute_period)
    relief += flutes[None, :] if vertical else flutes[:, None]
    image = _tinted(style, relief, rng)
    params["walls"] = _box_walls(image, rng)
    params["tape"] = _tape_strip(image, rng) if rng.random() < 0.4 else None
    return image


def _box_walls(image: Image.Image, rng: np.random.Generator) -> int:
    """Darker inner walls of the box along some frame edges, seen in perspective."""
    width, height = image.size
    short = min(image.size)
    walls = int(rng.integers(0, 3))
    for edge in rng.permutation(4)[:walls]:
        depth = rng.uniform(0.05, 0.14) * short
        slant = rng.uniform(0.0, 0.06) * short
        polygon = {
            0: [(0, 0), (width, 0), (width - slant, depth), (slant, depth)],
            1: [(0, height), (width, height), (width - slant, height - depth), (slant, height - depth)],
            2: [(0, 0), (0, height), (depth, height - slant), (depth, slant)],
            3: [(width, 0), (width, height), (width - depth, height - slant), (width - depth, slant)],
        }[int(edge)]
        shade = Image.new("L", image.size)
        ImageDraw.Draw(shade).polygon(polygon, fill=int(255 * rng.uniform(0.15, 0.35)))
        image.paste((0, 0, 0), (0, 0), shade)
    return walls


def _tape_strip(image: Image.Image, rng: np.random.Generator) -> dict:
    """Brown packing tape across the flap: a translucent band."""
    width, height = image.size
    short = min(image.size)
    angle = rng.uniform(0, math.pi)
    half_width = rng.uniform(0.035, 0.055) * short
    center = rng.uniform(0.2, 0.8, 2) * (width, height)
    along = np.array((math.cos(angle), math.sin(angle))) * 2 * max(width, height)
    across = np.array((-math.sin(angle), math.cos(angle))) * half_width
    corners = [center - along - across, center + along - across, center + along + across, center - along + across]
    mask = Image.new("L", image.size)
    ImageDraw.Draw(mask).polygon([tuple(c) for c in corners], fill=115)
    image.paste((176, 132, 74), (0, 0), mask)
    return {"angle": round(math.degrees(angle), 1)}


def _foam(style: SceneStyle, size: tuple[int, int], rng: np.random.Generator, params: dict) -> Image.Image:
    width, height = size
    short = min(size)
    pores = smooth_noise(rng, (height, width), short * 0.003)
    holes = np.clip(-pores - 1.3, 0.0, 1.0)
    cells = smooth_noise(rng, (height, width), short * 0.04) * 0.03
    return _tinted(style, 1.0 + cells - 0.35 * holes, rng)


def _bubble_wrap(style: SceneStyle, size: tuple[int, int], rng: np.random.Generator, params: dict) -> Image.Image:
    width, height = size
    short = min(size)
    relief = 1.0 + smooth_noise(rng, (height, width), short / 6) * 0.04
    radius = rng.uniform(0.018, 0.03) * short
    distance, dx, dy = hex_lattice_offsets((height, width), radius * 2.3, rng.uniform(0, math.pi / 3), rng)
    d = distance / radius
    inside = (d < 1.0).astype(np.float32)
    rim = np.exp(-(((d - 0.88) / 0.1) ** 2)) * 0.3
    spot = np.exp(-(((dx / radius + 0.35) ** 2 + (dy / radius + 0.35) ** 2) / 0.04)) * 0.7 * inside
    # Translucent film over the base (more where the bubble is), bright rims and highlights.
    sheet = (0.08 + 0.06 * inside)[..., None]
    tone = np.array(style.background_tone, np.float32) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    rgb = (relief[..., None] * tone) * (1 - sheet) + 235.0 * sheet + (153.0 * (rim + spot))[..., None]
    params["bubble_radius"] = round(radius / short, 4)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def _inspection_table(style: SceneStyle, size: tuple[int, int], rng: np.random.Generator, params: dict) -> Image.Image:
    width, height = size
    short = min(size)
    tone = np.array(style.background_tone, np.float32)
    relief = 1.0 + smooth_noise(rng, (height, width), short / 4) * 0.03
    if float(tone.max() - tone.min()) > 30:
        params["surface"] = "cutting_mat"  # its grid is drawn at full size afterwards
    elif tone.mean() > 200:
        params["surface"] = "laminate"
        relief -= 0.25 * np.clip(smooth_noise(rng, (height, width), short * 0.002) - 2.0, 0, 1)
    else:
        params["surface"] = "steel"
        relief += streak_noise(rng, (height, width), 40.0, bool(rng.random() < 0.5)) * 0.04
    return _tinted(style, relief, rng)


def _mat_grid(image: Image.Image, rng: np.random.Generator, params: dict) -> None:
    """A self-healing cutting mat's printed grid, every fifth line heavier."""
    width, height = image.size
    short = min(image.size)
    pitch = rng.uniform(0.07, 0.11) * short
    x0, y0 = rng.uniform(0, pitch, 2)
    thin = max(1, round(short / 400))
    lines = Image.new("L", image.size)
    draw = ImageDraw.Draw(lines)
    for index, x in enumerate(np.arange(x0, width, pitch)):
        draw.line([(x, 0), (x, height)], fill=70 if index % 5 else 115, width=thin if index % 5 else 2 * thin)
    for index, y in enumerate(np.arange(y0, height, pitch)):
        draw.line([(0, y), (width, y)], fill=70 if index % 5 else 115, width=thin if index % 5 else 2 * thin)
    image.paste((214, 226, 214), (0, 0), lines)
    params["grid_pitch"] = round(pitch / short, 4)


_PAINTERS: dict[str, Painter] = {
    "cardboard": _cardboard,
    "foam": _foam,
    "bubble_wrap": _bubble_wrap,
    "inspection_table": _inspection_table,
}
