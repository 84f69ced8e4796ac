"""The one preprocessing contract, shared by training evaluation, export and the runtime.

The spec travels with the weights (checkpoint and ONNX metadata) so nobody retypes it.
Resizing letterboxes: the whole photo is kept and padded, never centre-cropped, because a
crop can cut off exactly the label or logo that gives a counterfeit away.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from longteng.errors import ConfigError
from longteng.imageio import DEFAULT_MAX_PIXELS, load_image

INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}
_RESIZE_MODES = ("letterbox", "stretch")


@dataclass(frozen=True)
class PreprocessSpec:
    input_size: int = 224
    resize_mode: str = "letterbox"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.input_size < 16:
            raise ConfigError(f"input_size must be at least 16, got {self.input_size}")
        if self.resize_mode not in _RESIZE_MODES:
            raise ConfigError(f"resize_mode {self.resize_mode!r} unknown; allowed: {', '.join(_RESIZE_MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"interpolation {self.interpolation!r} unknown; allowed: {', '.join(INTERPOLATIONS)}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError("mean and std need three values each, std > 0")

    @property
    def pad_color(self) -> tuple[int, int, int]:
        # Padding with the mean makes padded pixels exactly zero after normalisation.
        return tuple(int(round(m * 255)) for m in self.mean)  # type: ignore[return-value]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessSpec":
        known = {"input_size", "resize_mode", "interpolation", "mean", "std"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown preprocessing keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        if "input_size" in values:
            values["input_size"] = int(values["input_size"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "PreprocessSpec":
        return cls.from_dict(json.loads(text))


def content_box(width: int, height: int, spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a width x height photo inside the model's S x S input:
    the geometry of resize_to_input, for whoever maps the input back onto the photo."""
    size = spec.input_size
    if spec.resize_mode == "stretch":
        return 0, 0, size, size
    scale = size / max(width, height)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    left, top = (size - new_w) // 2, (size - new_h) // 2
    return left, top, left + new_w, top + new_h


def resize_to_input(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """RGB image -> uint8 array (size, size, 3): the cacheable half of preprocessing."""
    size = spec.input_size
    resample = INTERPOLATIONS[spec.interpolation]
    if spec.resize_mode == "stretch":
        return np.asarray(image.resize((size, size), resample, reducing_gap=3.0), dtype=np.uint8)
    left, top, right, bottom = content_box(*image.size, spec)
    resized = image.resize((right - left, bottom - top), resample, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), spec.pad_color)
    canvas.paste(resized, (left, top))
    return np.asarray(canvas, dtype=np.uint8)


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) scaled by the spec's mean and std."""
    mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
    out = (pixels.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(np.moveaxis(out, -1, -3))


def preprocess(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    return normalize(resize_to_input(image, spec), spec)


def load_resized(path: Path | str, spec: PreprocessSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode and resize one photo: what training caches and the runtime batches."""
    return resize_to_input(load_image(path, target_size=spec.input_size, max_pixels=max_pixels), spec)


def load_and_preprocess(
    path: Path | str, spec: PreprocessSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    return normalize(load_resized(path, spec, max_pixels=max_pixels), spec)
