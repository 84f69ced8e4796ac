"""The one image loader: orientation, modes, guards and typed errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from longteng.errors import ImageLoadError
from longteng.imageio import load_image, to_rgb


def _gradient_rgb(width: int = 48, height: int = 32) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None, None]
    pixels = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                             np.full((height, width, 1), 60.0)], axis=2)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


# EXIF orientation tag -> the transpose that shows the photo upright.
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(tmp_path, orientation):
    upright = _gradient_rgb()
    # The camera stores the pixels un-rotated; EXIF says which transpose shows them upright,
    # so the stored pixels are the inverse transpose of the upright picture.
    inverse = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}
    stored = upright.transpose(inverse.get(ORIENTATIONS[orientation], ORIENTATIONS[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    stored.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.size == upright.size
    assert np.array_equal(np.asarray(loaded), np.asarray(upright))


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    ("mode", "make", "expected_rgb"),
    [
        ("L", lambda: Image.new("L", (8, 8), 100), (100, 100, 100)),
        ("1", lambda: Image.new("1", (8, 8), 1), (255, 255, 255)),
        ("LA", lambda: Image.new("LA", (8, 8), (100, 255)), (100, 100, 100)),
        ("RGBA opaque", lambda: Image.new("RGBA", (8, 8), (10, 20, 30, 255)), (10, 20, 30)),
        # Fully transparent pixels are composited onto white, not left black.
        ("RGBA transparent", lambda: Image.new("RGBA", (8, 8), (10, 20, 30, 0)), (255, 255, 255)),
        ("P", lambda: Image.new("RGB", (8, 8), (200, 40, 40)).convert("P", palette=Image.Palette.ADAPTIVE), (200, 40, 40)),
        # Pillow's naive CMYK->RGB: R = 255 - C - K (clipped), etc.
        ("CMYK", lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)), (255, 0, 0)),
        # 16-bit grey 0..65535 scaled to 0..255: 51400 / 257 = 200.
        ("I;16", lambda: Image.fromarray(np.full((8, 8), 51400, dtype=np.uint16)), (200, 200, 200)),
        ("I", lambda: Image.fromarray(np.full((8, 8), 51400, dtype=np.int32)), (200, 200, 200)),
        ("F", lambda: Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)), (128, 128, 128)),
    ],
)
def test_every_mode_becomes_rgb(mode, make, expected_rgb):
    rgb = to_rgb(make())
    assert rgb.mode == "RGB"
    assert tuple(np.asarray(rgb)[4, 4]) == expected_rgb


@pytest.mark.parametrize(("suffix", "fmt"), [(".png", "PNG"), (".tif", "TIFF")])
def test_sixteen_bit_file_round_trip(tmp_path, suffix, fmt):
    values = np.tile(np.linspace(0, 65535, 16, dtype=np.uint16), (4, 1))
    path = _save(Image.fromarray(values), tmp_path / f"deep{suffix}", format=fmt)
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (4, 16, 3)
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    assert np.all(np.diff(pixels[0, :, 0].astype(int)) > 0)  # a smooth ramp, not wrapped-around bytes


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    path = _save(Image.new("CMYK", (32, 32), (0, 0, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    pixels = np.asarray(load_image(path)).astype(int)
    assert pixels.shape == (32, 32, 3)
    assert abs(pixels[16, 16, 0] - 255) < 8 and abs(pixels[16, 16, 1] - 255) < 8 and pixels[16, 16, 2] < 12


def _jpeg_bytes(size=(64, 48), quality=90) -> bytes:
    buffer = io.BytesIO()
    _gradient_rgb(*size).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty"),
        ("notes.jpg", b"this is a text file, not a photo\n" * 10, "not_an_image"),
        ("truncated.jpg", _jpeg_bytes((256, 192))[:1500], "truncated"),
    ],
)
def test_bad_files_raise_typed_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    assert caught.value.reason == reason
    assert caught.value.path == path
    assert name in str(caught.value)


def test_corrupt_png_payload(tmp_path):
    buffer = io.BytesIO()
    _gradient_rgb(64, 64).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    middle = len(data) // 2
    data[middle : middle + 40] = b"\x00" * 40  # damage compressed image data, keep the header
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    assert caught.value.reason in {"corrupt", "truncated"}


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError) as missing:
        load_image(tmp_path / "nope.jpg")
    assert missing.value.reason == "not_found"
    with pytest.raises(ImageLoadError) as directory:
        load_image(tmp_path)
    assert directory.value.reason == "unreadable"


def test_decompression_bomb_guard(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("L", (2000, 1000), 0).save(path)  # tiny file, 2 MP of pixels
    with pytest.raises(ImageLoadError) as caught:
        load_image(path, max_pixels=1_000_000)
    assert caught.value.reason == "too_large"
    assert "2000x1000" in str(caught.value)
    assert load_image(path, max_pixels=3_000_000).size == (2000, 1000)


def test_jpeg_draft_mode_keeps_twice_the_target(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg_bytes((2048, 1536)))
    full = load_image(path)
    reduced = load_image(path, target_size=224)
    assert full.size == (2048, 1536)
    assert min(reduced.size) >= 2 * 224
    assert reduced.size[0] < full.size[0]
    # Draft decoding is a scaled DCT of the same picture, not another image.
    small_full = np.asarray(full.resize((64, 48), Image.Resampling.BILINEAR), dtype=float)
    small_reduced = np.asarray(reduced.resize((64, 48), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(small_full - small_reduced).mean() < 3.0


def test_heic_photo_loads_when_the_heif_extra_is_installed(tmp_path):
    from longteng.imageio import heif_available

    if not heif_available():
        pytest.skip("the heif extra (pillow-heif) is not installed")
    original = _gradient_rgb(96, 64)
    path = tmp_path / "phone.heic"
    original.save(path)  # pillow-heif's opener also registers the HEIF encoder
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == original.size
    # HEIC is lossy: close to the gradient, not equal to it.
    difference = np.abs(np.asarray(loaded, dtype=np.int16) - np.asarray(original, dtype=np.int16))
    assert difference.mean() < 6
