"""Lighting and camera: colour temperature, uneven light, glare, defocus, motion blur,
sensor noise and the JPEG quality of the shot.

Applied to the whole photo after the product is placed, from the photo's scene generator
only, so these nuisances are independent of the label.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from longteng.data.synth.styles import SceneStyle

# Per-channel gains of each light source (colour temperature), before per-photo jitter.
_GAINS = {
    "fluorescent": (0.95, 1.0, 1.04),
    "tungsten": (1.1, 0.96, 0.74),
    "daylight": (1.0, 1.0, 0.97),
    "flash": (1.0, 0.99, 0.96),
}
# (gradient range, vignette, glare probability) of each light source.
_UNEVENNESS = {
    "fluorescent": ((0.05, 0.2), 0.12, 0.35),
    "tungsten": ((0.15, 0.35), 0.25, 0.2),
    "daylight": ((0.1, 0.3), 0.1, 0.25),
    "flash": ((0.0, 0.1), 0.4, 0.5),
}
# Fractions of the frame's short side.
_DEFOCUS = {"easy": (0.0, 0.0012), "medium": (0.0, 0.0025), "hard": (0.0005, 0.004)}
_MOTION = {"easy": 0.003, "medium": 0.006, "hard": 0.01}
_MOTION_PROBABILITY = 0.3
# Sensor noise standard deviation in 8-bit levels, added to the case camera's own.
_NOISE = {"easy": (1.0, 3.0), "medium": (1.5, 5.0), "hard": (2.5, 8.0)}
JPEG_QUALITY_RANGE = (60, 95)
# Standard normal quantiles of 256 equal-probability bins: turns random bytes into noise.
_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])
# Lighting below only darkens (multiply); the exposure curve lifts the average back.
_EXPOSURE_HEADROOM = 1.12


def develop(
    photo: Image.Image, style: SceneStyle, difficulty: str, rng: np.random.Generator
) -> tuple[Image.Image, dict, int]:
    """The photo as the camera records it, its parameters and the JPEG quality to save with."""
    params: dict = {}
    photo = _light(photo, style, rng, params)
    photo = _optics(photo, difficulty, rng, params)
    photo = _sensor_noise(photo, style, difficulty, rng, params)
    low, high = JPEG_QUALITY_RANGE
    quality = int(np.clip(style.jpeg_quality + round(rng.normal(0.0, 3.0)), low, high))
    return photo, params, quality


def _light(photo: Image.Image, style: SceneStyle, rng: np.random.Generator, params: dict) -> Image.Image:
    width, height = photo.size
    short = min(photo.size)
    gains = np.array(_GAINS[style.lighting]) * rng.uniform(0.97, 1.03, 3)
    exposure = style.exposure * rng.uniform(0.92, 1.08)
    gamma = rng.uniform(0.9, 1.1)
    (gradient_low, gradient_high), vignette, glare_probability = _UNEVENNESS[style.lighting]
    gradient = rng.uniform(gradient_low, gradient_high)
    direction = rng.uniform(0, 2 * math.pi)
    hotspot = rng.uniform(0.3, 0.7, 2)
    glare = rng.random() < glare_probability
    glare_center = rng.uniform(0.0, 1.0, 2) * (width, height)
    glare_sigma = rng.uniform(0.04, 0.12) * short
    glare_strength = rng.uniform(0.25, 0.7)

    levels = np.arange(256, dtype=np.float64) / 255
    curves = [np.clip(255 * levels**gamma * g * exposure * _EXPOSURE_HEADROOM, 0, 255) for g in gains]
    photo = photo.point(np.concatenate(curves).round().astype(np.uint8).tolist())

    # Smooth light falloff, computed small and enlarged.
    small_w, small_h = 32, max(2, round(32 * height / width))
    ys, xs = np.mgrid[0:small_h, 0:small_w].astype(np.float64)
    u, v = xs / (small_w - 1), ys / (small_h - 1)
    along = (u - 0.5) * math.cos(direction) + (v - 0.5) * math.sin(direction)
    radius2 = ((u - hotspot[0]) ** 2 + (v - hotspot[1]) ** 2) / 0.5
    field = np.clip(1.0 - gradient * (0.5 + along) - vignette * radius2, 0.2, 1.0)
    falloff = Image.fromarray((field * 255).astype(np.uint8), "L").resize(photo.size, Image.Resampling.BILINEAR)
    photo = ImageChops.multiply(photo, Image.merge("RGB", (falloff, falloff, falloff)))

    params.update(
        {
            "lighting": style.lighting,
            "gains": [round(float(g), 3) for g in gains],
            "exposure": round(float(exposure), 3),
            "gamma": round(float(gamma), 3),
            "gradient": round(float(gradient), 3),
            "vignette": vignette,
            "glare": round(float(glare_strength), 3) if glare else 0.0,
        }
    )
    if glare:
        photo = _glare(photo, glare_center, glare_sigma, glare_strength)
    return photo


def _glare(photo: Image.Image, center: np.ndarray, sigma: float, strength: float) -> Image.Image:
    """A specular reflection of the lamp: a bright soft blob, screened onto the region."""
    reach = 3 * sigma
    x0, y0 = (max(0, int(c - reach)) for c in center)
    x1, y1 = min(photo.width, int(center[0] + reach)), min(photo.height, int(center[1] + reach))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return photo
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    blob = np.exp(-((xs - center[0]) ** 2 + (ys - center[1]) ** 2) / (2 * sigma**2)) * strength * 255
    glow = Image.fromarray(blob.astype(np.uint8), "L")
    region = photo.crop((x0, y0, x1, y1))
    photo.paste(ImageChops.screen(region, Image.merge("RGB", (glow, glow, glow))), (x0, y0))
    return photo


def _optics(photo: Image.Image, difficulty: str, rng: np.random.Generator, params: dict) -> Image.Image:
    short = min(photo.size)
    low, high = _DEFOCUS[difficulty]
    defocus = rng.uniform(low, high) * short
    moving = rng.random() < _MOTION_PROBABILITY
    motion = rng.uniform(0.3, 1.0) * _MOTION[difficulty] * short if moving else 0.0
    motion_angle = rng.uniform(0, math.pi)
    if defocus >= 0.5:
        # A single box pass: close to a defocus disc at these radii, and cheaper than Gaussian.
        photo = photo.filter(ImageFilter.BoxBlur(defocus * math.sqrt(3)))
    if motion >= 1.5:
        photo = _motion_blur(photo, motion, motion_angle)
    params.update(
        {
            "defocus": round(defocus / short, 5),
            "motion": round(motion / short, 5),
            "motion_angle": round(math.degrees(motion_angle), 1),
        }
    )
    return photo


def _motion_blur(photo: Image.Image, length: float, angle: float) -> Image.Image:
    """A linear blur of about `length` pixels: repeated halving averages of shifted copies."""
    steps = max(1, int(math.log2(length)))
    spacing = length / 2**steps
    pixels = np.asarray(photo, np.uint16)
    for step in range(steps):
        shift = spacing * 2**step
        dx, dy = int(round(shift * math.cos(angle))), int(round(shift * math.sin(angle)))
        pixels = (pixels + _shifted(pixels, dx, dy) + 1) >> 1
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _shifted(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """`pixels` moved by (dx, dy); the uncovered border keeps its own values."""
    out = pixels.copy()
    height, width = pixels.shape[:2]
    source_y = slice(max(0, -dy), height - max(0, dy))
    target_y = slice(max(0, dy), height - max(0, -dy))
    source_x = slice(max(0, -dx), width - max(0, dx))
    target_x = slice(max(0, dx), width - max(0, -dx))
    out[target_y, target_x] = pixels[source_y, source_x]
    return out


def _sensor_noise(
    photo: Image.Image, style: SceneStyle, difficulty: str, rng: np.random.Generator, params: dict
) -> Image.Image:
    """Per-pixel luminance noise plus coarser, weaker colour noise, as after demosaicing.

    Random bytes mapped through a Gaussian quantile table and added by Pillow in uint8:
    several times faster than float arithmetic on a 12 MP frame.
    """
    low, high = _NOISE[difficulty]
    sigma = style.noise + rng.uniform(low, high)
    width, height = photo.size
    luma = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L").point(_gaussian_table(sigma))
    photo = ImageChops.add(photo, Image.merge("RGB", (luma, luma, luma)), 1.0, -128)
    half = ((width + 1) // 2, (height + 1) // 2)
    chroma_table = _gaussian_table(0.5 * sigma)
    chroma = Image.merge(
        "RGB",
        [
            Image.fromarray(rng.integers(0, 256, (half[1], half[0]), dtype=np.uint8), "L").point(chroma_table)
            for _ in range(3)
        ],
    ).resize(photo.size, Image.Resampling.NEAREST)
    photo = ImageChops.add(photo, chroma, 1.0, -128)
    params["noise"] = round(float(sigma), 2)
    return photo


def _gaussian_table(sigma: float) -> list[int]:
    """Byte -> 128 + sigma * z, z the standard normal quantile of the byte's bin."""
    return np.clip(np.rint(128 + sigma * _NORMAL_QUANTILES), 0, 255).astype(np.uint8).tolist()
