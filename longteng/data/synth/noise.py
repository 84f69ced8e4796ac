"""Seeded noise fields shared by the product renderer and the scene."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Unit-variance float32 noise of `shape` (h, w) with features about `cell` pixels across."""
    height, width = shape
    cell = max(1.0, cell)
    small_shape = (max(2, int(height / cell) + 2), max(2, int(width / cell) + 2))
    small = rng.standard_normal(small_shape, dtype=np.float32)
    if cell <= 1.0:
        return small[:height, :width]
    image = Image.fromarray(small, "F").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image)


def streak_noise(rng: np.random.Generator, shape: tuple[int, int], length: float, vertical: bool) -> np.ndarray:
    """Noise stretched `length` times along one axis: brushed metal, cardboard fibres."""
    height, width = shape
    if vertical:
        small = rng.standard_normal((max(2, int(height / length)), width), dtype=np.float32)
    else:
        small = rng.standard_normal((height, max(2, int(width / length))), dtype=np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((width, height), Image.Resampling.BILINEAR))


def hex_lattice_offsets(
    shape: tuple[int, int], spacing: float, angle: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance and (dx, dy) from each pixel to the nearest centre of a rotated hex lattice."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs += rng.uniform(0, spacing)
    ys += rng.uniform(0, spacing)
    cos, sin = math.cos(angle), math.sin(angle)
    u = xs * cos + ys * sin
    v = -xs * sin + ys * cos
    row_height = spacing * math.sqrt(3) / 2
    best = None
    base_row = np.floor(v / row_height)
    for row_offset in (0.0, 1.0):
        row = base_row + row_offset
        shift = (row % 2) * spacing / 2
        col = np.round((u - shift) / spacing)
        du = u - (col * spacing + shift)
        dv = v - row * row_height
        dist = np.hypot(du, dv)
        if best is None:
            best = (dist, du, dv)
        else:
            closer = dist < best[0]
            best = (np.where(closer, dist, best[0]), np.where(closer, du, best[1]), np.where(closer, dv, best[2]))
    dist, du, dv = best  # type: ignore[misc]
    # Back to image axes so the highlight sits up-left whatever the lattice angle.
    return dist, du * cos - dv * sin, du * sin + dv * cos
