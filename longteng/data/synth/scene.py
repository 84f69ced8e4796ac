"""Put a product sprite into a photo: pose, foam cut-out, cast shadow, packing material.

Every random draw here comes from the photo's scene generator and is made the same way
for genuine and counterfeit items, so nothing in the scene depends on the label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from longteng.data.synth.noise import hex_lattice_offsets, smooth_noise
from longteng.data.synth.styles import PACKING, SceneStyle

# Long side of the product as a fraction of the frame's short side.
_SCALE_RANGES = {"easy": (0.62, 0.88), "medium": (0.52, 0.82), "hard": (0.42, 0.75)}
# Keystone: corner displacement as a fraction of the product's long side.
_PERSPECTIVE = {"easy": 0.03, "medium": 0.05, "hard": 0.08}
_OCCLUSION_PROBABILITY = {"easy": 0.3, "medium": 0.5, "hard": 0.65}
# Never more than this share of the product hidden (alpha-weighted).
_MAX_COVERAGE = {"easy": 0.10, "medium": 0.18, "hard": 0.28}
_MARGIN = 0.03


@dataclass(frozen=True)
class Pose:
    long_side_px: int
    angle: float  # degrees counter-clockwise
    center: tuple[float, float]  # pixels
    corner_shift: tuple[tuple[float, float], ...]  # keystone shift of each sprite corner, pixels

    def params(self, size: tuple[int, int]) -> dict:
        short = min(size)
        keystone = max(math.hypot(*shift) for shift in self.corner_shift) / self.long_side_px
        return {
            "scale": round(self.long_side_px / short, 3),
            "angle": round(self.angle, 1),
            "center": [round(self.center[0] / size[0], 3), round(self.center[1] / size[1], 3)],
            "perspective": round(keystone, 3),
        }


def draw_pose(product_width: float, size: tuple[int, int], difficulty: str, rng: np.random.Generator) -> Pose:
    """Scale, rotation, position and keystone, shrunk when needed so the product stays in frame."""
    width, height = size
    short = min(size)
    low, high = _SCALE_RANGES[difficulty]
    scale = rng.uniform(low, high)
    angle = rng.uniform(0.0, 360.0)
    keystone = rng.uniform(0.0, _PERSPECTIVE[difficulty])
    shifts = rng.uniform(-1.0, 1.0, size=(4, 2)) * keystone
    position = rng.uniform(0.0, 1.0, size=2)

    cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    box_w = product_width * cos + sin + 2 * keystone
    box_h = product_width * sin + cos + 2 * keystone
    margin = _MARGIN * short
    long_side = min(scale * short, (width - 2 * margin) / box_w, (height - 2 * margin) / box_h)
    room_x = max(0.0, width - 2 * margin - box_w * long_side)
    room_y = max(0.0, height - 2 * margin - box_h * long_side)
    center = (
        margin + box_w * long_side / 2 + position[0] * room_x,
        margin + box_h * long_side / 2 + position[1] * room_y,
    )
    corner_shift = tuple((float(dx * long_side), float(dy * long_side)) for dx, dy in shifts)
    return Pose(max(8, int(long_side)), float(angle), center, corner_shift)


def destination_quad(sprite_size: tuple[int, int], pose: Pose) -> np.ndarray:
    """Where the sprite's corners (TL, TR, BR, BL) land in the photo, shape (4, 2)."""
    width, height = sprite_size
    corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], float) - (width / 2, height / 2)
    theta = math.radians(pose.angle)
    # Counter-clockwise on screen, where y points down.
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    return corners @ rotation.T + np.array(pose.center) + np.array(pose.corner_shift)


@dataclass(frozen=True)
class Placement:
    """Where the product ended up: its alpha (cropped to `offset`) and corner quad."""

    alpha: Image.Image
    offset: tuple[int, int]
    quad: np.ndarray
    params: dict


def place_product(
    photo: Image.Image, sprite: Image.Image, pose: Pose, style: SceneStyle, rng: np.random.Generator
) -> Placement:
    """Composite the sprite, with its foam cut-out and cast shadow, into `photo` in place."""
    quad = destination_quad(sprite.size, pose)
    x0, y0 = (int(v) for v in np.floor(quad.min(axis=0)))
    x1, y1 = (int(v) for v in np.ceil(quad.max(axis=0)))
    source = np.array([(0, 0), (sprite.width, 0), sprite.size, (0, sprite.height)], float)
    coefficients = _perspective_coefficients(quad - (x0, y0), source)
    # Premultiplied while resampling, so transparent pixels do not darken the outline.
    placed = (
        sprite.convert("RGBa")
        .transform((x1 - x0, y1 - y0), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)
        .convert("RGBA")
    )
    alpha = placed.getchannel("A")
    params: dict = {}
    if style.background == "foam":
        params["cutout"] = _foam_cutout(photo, quad, style, rng)
    params["shadow"] = _cast_shadow(photo, alpha, (x0, y0), style, rng)
    photo.paste(placed, (x0, y0), alpha)
    return Placement(alpha, (x0, y0), quad, params)


def _perspective_coefficients(destination: np.ndarray, source: np.ndarray) -> tuple[float, ...]:
    """Pillow's 8 coefficients mapping output (destination) pixels back to source pixels."""
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(destination, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    solution = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    return tuple(float(c) for c in solution)


def _foam_cutout(photo: Image.Image, quad: np.ndarray, style: SceneStyle, rng: np.random.Generator) -> float:
    """The pocket cut into the foam insert around the item: darker floor, soft walls."""
    short = min(photo.size)
    center = quad.mean(axis=0)
    grow = rng.uniform(0.02, 0.05) * short
    directions = quad - center
    lengths = np.linalg.norm(directions, axis=1, keepdims=True)
    pocket = center + directions * (1 + grow / np.maximum(lengths, 1))
    x0, y0 = np.floor(pocket.min(axis=0) - 4).astype(int)
    x1, y1 = np.ceil(pocket.max(axis=0) + 4).astype(int)
    mask = Image.new("L", (int(x1 - x0), int(y1 - y0)))
    ImageDraw.Draw(mask).polygon([tuple(p) for p in pocket - (x0, y0)], fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, 0.004 * short)))
    floor = tuple(int(c * 0.55) for c in style.background_tone)
    photo.paste(floor, (int(x0), int(y0), int(x1), int(y1)), mask)
    return round(grow / short, 3)


def _cast_shadow(
    photo: Image.Image, alpha: Image.Image, offset: tuple[int, int], style: SceneStyle, rng: np.random.Generator
) -> dict:
    short = min(photo.size)
    hard = style.lighting == "flash"
    distance = rng.uniform(0.003, 0.012) if hard else rng.uniform(0.008, 0.03)
    softness = rng.uniform(0.002, 0.006) if hard else rng.uniform(0.006, 0.025)
    darkness = rng.uniform(0.3, 0.6)
    direction = rng.uniform(0, 2 * math.pi)
    blur = softness * short
    pad = int(3 * blur) + 2
    mask = Image.new("L", (alpha.width + 2 * pad, alpha.height + 2 * pad))
    mask.paste(alpha, (pad, pad))
    # A soft shadow has no fine detail: blur it small and enlarge.
    factor = max(1, int(blur / 3))
    small = mask.reduce(factor) if factor > 1 else mask
    small = small.filter(ImageFilter.GaussianBlur(blur / factor)).point(lambda v: int(v * darkness))
    mask = small.resize(mask.size, Image.Resampling.BILINEAR) if factor > 1 else small
    dx = int(round(math.cos(direction) * distance * short))
    dy = int(round(math.sin(direction) * distance * short))
    shadow_color = tuple(c // 5 for c in style.background_tone)
    photo.paste(shadow_color, (offset[0] - pad + dx, offset[1] - pad + dy), mask)
    return {"distance": round(distance, 4), "softness": round(softness, 4), "darkness": round(darkness, 3)}


# --- packing material -------------------------------------------------------------------------


def occlude(
    photo: Image.Image, placement: Placement, style: SceneStyle, difficulty: str, rng: np.random.Generator
) -> dict | None:
    """Maybe lay packing material over an edge of the product, hiding at most a set share of it."""
    occluded = rng.random() < _OCCLUSION_PROBABILITY[difficulty]
    kind = style.packing if rng.random() < 0.75 else PACKING[int(rng.integers(len(PACKING)))]
    edge = int(rng.integers(4))
    along = rng.uniform(0.15, 0.85)
    kind_rng = np.random.default_rng(rng.integers(2**63))
    if not occluded:
        return None
    quad = placement.quad
    start, end = quad[edge], quad[(edge + 1) % 4]
    anchor = start + (end - start) * along
    outward = anchor - quad.mean(axis=0)
    outward /= max(1e-6, float(np.linalg.norm(outward)))
    layer, reach = _OCCLUDERS[kind](min(photo.size), kind_rng)
    product = np.asarray(placement.alpha, np.float32) / 255
    product_area = float(product.sum())
    for step in range(8):
        center = anchor + outward * reach * (0.1 + 0.3 * step)
        corner = (int(round(center[0] - layer.width / 2)), int(round(center[1] - layer.height / 2)))
        coverage = _coverage(layer, corner, product, placement.offset, product_area)
        if coverage <= _MAX_COVERAGE[difficulty]:
            photo.paste(layer, corner, layer)
            return {"kind": kind, "coverage": round(coverage, 3)}
    return None


def _coverage(
    layer: Image.Image, corner: tuple[int, int], product: np.ndarray, offset: tuple[int, int], product_area: float
) -> float:
    """Share of the product's (alpha-weighted) area under the layer's alpha."""
    left, top = corner[0] - offset[0], corner[1] - offset[1]
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(product.shape[1], left + layer.width), min(product.shape[0], top + layer.height)
    if x1 <= x0 or y1 <= y0 or product_area <= 0:
        return 0.0
    cover = np.asarray(layer.getchannel("A"), np.float32)[y0 - top : y1 - top, x0 - left : x1 - left] / 255
    return float((cover * product[y0:y1, x0:x1]).sum()) / product_area


def _foam_peanuts(short: float, rng: np.random.Generator) -> tuple[Image.Image, float]:
    """A cluster of S-shaped loose-fill peanuts."""
    size = int(0.3 * short)
    layer = Image.new("RGBA", (size, size))
    draw = ImageDraw.Draw(layer)
    color = np.array(((238, 236, 228), (196, 224, 186), (230, 200, 210))[int(rng.integers(3))], float)
    for _ in range(int(rng.integers(2, 6))):
        length = rng.uniform(0.06, 0.09) * short
        center = rng.uniform(0.3, 0.7, 2) * size
        angle = rng.uniform(0, math.pi)
        shade = tuple(int(v) for v in color * rng.uniform(0.88, 1.0)) + (255,)
        for lobe in (-0.25, 0.25):
            lobe_center = center + lobe * length * np.array((math.cos(angle), math.sin(angle)))
            r = 0.3 * length
            draw.ellipse([*(lobe_center - r), *(lobe_center + r)], fill=shade)
        draw.ellipse(
            [*(center - 0.08 * length), *(center + 0.08 * length)], fill=tuple(int(v * 0.8) for v in color) + (255,)
        )
    return layer, 0.15 * short


def _kraft_paper(short: float, rng: np.random.Generator) -> tuple[Image.Image, float]:
    """Crumpled brown paper: an irregular sheet with creases."""
    radius = rng.uniform(0.16, 0.28) * short
    size = int(2.2 * radius)
    angles = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(10, 17))))
    radii = radius * rng.uniform(0.6, 1.0, len(angles))
    points = [(size / 2 + r * math.cos(a), size / 2 + r * math.sin(a)) for a, r in zip(angles, radii)]
    mask = Image.new("L", (size, size))
    ImageDraw.Draw(mask).polygon(points, fill=255)
    relief = 1.0 + smooth_noise(rng, (size, size), size / 10) * 0.08
    texture = Image.fromarray(
        np.clip(np.array((170, 128, 82), np.float32) * relief[..., None], 0, 255).astype(np.uint8), "RGB"
    )
    creases = ImageDraw.Draw(texture)
    for _ in range(int(rng.integers(4, 9))):
        a, b = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        tint = (120, 88, 56) if rng.random() < 0.5 else (206, 170, 124)
        creases.line([tuple(a), tuple(b)], fill=tint, width=max(1, int(short / 300)))
    layer = texture.convert("RGBA")
    layer.putalpha(mask)
    return layer, radius


def _bubble_sheet(short: float, rng: np.random.Generator) -> tuple[Image.Image, float]:
    """A loose piece of bubble wrap: translucent, with bright bubble rims."""
    radius = rng.uniform(0.18, 0.3) * short
    size = int(2.1 * radius)
    corners = [
        (size / 2 + radius * math.cos(a), size / 2 + radius * math.sin(a))
        for a in np.sort(rng.uniform(0, 2 * math.pi, 5))
    ]
    mask = Image.new("L", (size, size))
    ImageDraw.Draw(mask).polygon(corners, fill=120)
    bubble = rng.uniform(0.018, 0.028) * short
    distance, dx, dy = hex_lattice_offsets((size, size), bubble * 2.3, rng.uniform(0, math.pi / 3), rng)
    d = distance / bubble
    rims = np.exp(-(((d - 0.88) / 0.12) ** 2)) + np.exp(
        -(((dx / bubble + 0.35) ** 2 + (dy / bubble + 0.35) ** 2) / 0.04)
    )
    alpha = np.asarray(mask, np.float32) / 255 * np.clip(0.7 + 1.2 * rims, 0, 2.0)
    rgb = np.full((size, size, 3), 232, np.float32) + 23 * np.clip(rims, 0, 1)[..., None]
    layer = Image.fromarray(np.dstack([np.clip(rgb, 0, 255), np.clip(alpha * 255, 0, 255)]).astype(np.uint8), "RGBA")
    return layer, radius


def _tape(short: float, rng: np.random.Generator) -> tuple[Image.Image, float]:
    """A strip of packing tape stuck across the item's edge."""
    length = rng.uniform(0.35, 0.6) * short
    band = rng.uniform(0.06, 0.09) * short
    size = int(length) + 2
    angle = rng.uniform(0, 180)
    clear = rng.random() < 0.4
    color = (236, 236, 230, 70) if clear else (184, 140, 82, 150)
    strip = Image.new("RGBA", (size, size))
    ImageDraw.Draw(strip).rectangle([(1, size / 2 - band / 2), (size - 1, size / 2 + band / 2)], fill=color)
    return strip.rotate(angle, resample=Image.Resampling.BICUBIC), band


_OCCLUDERS = {
    "foam_peanuts": _foam_peanuts,
    "kraft_paper": _kraft_paper,
    "bubble_sheet": _bubble_sheet,
    "tape": _tape,
}
