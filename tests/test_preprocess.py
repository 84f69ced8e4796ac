"""The shared preprocessing contract."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from longteng.errors import ConfigError
from longteng.preprocess import PreprocessSpec, load_and_preprocess, normalize, preprocess, resize_to_input


@pytest.mark.parametrize(("width", "height"), [(400, 100), (100, 400), (300, 300), (7, 3)])
def test_letterbox_keeps_the_whole_photo(width, height):
    spec = PreprocessSpec(input_size=64)
    image = Image.new("RGB", (width, height), (255, 0, 0))
    pixels = resize_to_input(image, spec)
    assert pixels.shape == (64, 64, 3)
    red = np.all(pixels == (255, 0, 0), axis=2)
    rows, cols = np.nonzero(red)
    # The long side spans the full input; the short side is scaled by the same factor.
    assert (cols.max() - cols.min() + 1, rows.max() - rows.min() + 1) == (
        round(64 * width / max(width, height)) or 1,
        round(64 * height / max(width, height)) or 1,
    )
    # Padding is the mean colour, which normalises to exactly zero.
    padded = ~red & np.all(pixels == spec.pad_color, axis=2)
    assert red.sum() + padded.sum() == 64 * 64


def test_normalize_values_and_layout():
    spec = PreprocessSpec(input_size=16, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # red channel at 1.0 -> (1 - 0.5) / 0.5 = 1
    pixels[..., 1] = 0  # green 0 -> (0 - 0.25) / 0.25 = -1
    pixels[..., 2] = 51  # blue 0.2 -> 0.2
    out = normalize(pixels, spec)
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [1.0, -1.0, 0.2], atol=1e-6)


def test_batched_normalize_matches_single():
    spec = PreprocessSpec(input_size=16)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    stacked = normalize(batch, spec)
    assert stacked.shape == (3, 3, 16, 16)
    for i in range(3):
        np.testing.assert_array_equal(stacked[i], normalize(batch[i], spec))


def test_file_path_equals_in_memory_path(tmp_path):
    spec = PreprocessSpec(input_size=32)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    path = tmp_path / "photo.png"
    image.save(path)
    np.testing.assert_array_equal(load_and_preprocess(path, spec), preprocess(image, spec))


def test_spec_round_trips_through_json():
    spec = PreprocessSpec(input_size=160, interpolation="bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert PreprocessSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    "bad",
    [{"input_size": 4}, {"resize_mode": "centre_crop"}, {"interpolation": "cubic-ish"}, {"std": (1.0, 0.0, 1.0)}],
)
def test_invalid_spec_is_rejected_with_allowed_values(bad):
    with pytest.raises(ConfigError):
        PreprocessSpec(**bad)


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match="crop_pct"):
        PreprocessSpec.from_dict({"input_size": 224, "crop_pct": 0.875})
