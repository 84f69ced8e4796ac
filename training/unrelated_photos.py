"""Photos that are not inspection photos, written to files so they go through the real loader.

Two uses: the export parity gate needs real photographs (scikit-image's bundled ones: a cat,
coffee, an astronaut...), and the unknown-object score is measured against everything an
officer might photograph by mistake: those photos plus drawn stand-ins for paper documents,
an empty cardboard box, flat colours, gradients and sensor noise. Nothing is downloaded:
scikit-image ships its photos inside the package. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# scikit-image's bundled photographs (no fetcher, no network). Grayscale ones test the
# loader's mode conversion; some are saved as JPEG so its decoder is exercised too.
SKIMAGE_PHOTOS = (
    ("chelsea", "jpg"), ("coffee", "jpg"), ("astronaut", "png"), ("rocket", "jpg"), ("camera", "png"),
    ("hubble_deep_field", "jpg"), ("immunohistochemistry", "png"), ("coins", "png"), ("moon", "jpg"),
    ("page", "png"), ("text", "png"), ("brick", "jpg"), ("grass", "png"), ("gravel", "jpg"),
    ("colorwheel", "png"), ("retina", "jpg"),
)
SYNTHETIC_KINDS = ("noise", "flat", "gradient", "document", "cardboard")


@dataclass(frozen=True)
class UnrelatedPhoto:
    path: Path
    kind: str  # "photo" for scikit-image's photographs, else one of SYNTHETIC_KINDS


def write_skimage_photos(directory: Path) -> list[Path]:
    """scikit-image's photographs as image files in ``directory``."""
    from skimage import data

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, extension in SKIMAGE_PHOTOS:
        path = directory / f"{name}.{extension}"
        image = Image.fromarray(np.asarray(getattr(data, name)()))
        if extension == "jpg":
            image.save(path, quality=92)
        else:
            image.save(path)
        paths.append(path)
    return paths


def write_unrelated_photos(directory: Path, *, per_kind: int = 4, seed: int = 0) -> list[UnrelatedPhoto]:
    """scikit-image's photos plus ``per_kind`` drawn images of every synthetic kind."""
    photos = [UnrelatedPhoto(path, "photo") for path in write_skimage_photos(directory)]
    rng = np.random.default_rng(seed)
    for kind in SYNTHETIC_KINDS:
        for i in range(per_kind):
            path = directory / f"{kind}_{i:02d}.png"
            _DRAWERS[kind](rng).save(path)
            photos.append(UnrelatedPhoto(path, kind))
    return photos


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(320, 640)), int(rng.integers(240, 480))


def _noise(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    if rng.random() < 0.5:
        pixels = rng.integers(0, 256, (height, width, 3))
    else:
        pixels = np.clip(rng.normal(rng.uniform(60, 200), rng.uniform(10, 60), (height, width, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def _flat(rng: np.random.Generator) -> Image.Image:
    return Image.new("RGB", _size(rng), tuple(int(v) for v in rng.integers(0, 256, 3)))


def _gradient(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:height, 0:width]
    t = x * np.cos(angle) + y * np.sin(angle)
    t = (t - t.min()) / max(np.ptp(t), 1.0)
    return Image.fromarray((start + (end - start) * t[..., None]).astype(np.uint8))


def _document(rng: np.random.Generator) -> Image.Image:
    """A printed page: paper, a heading, lines of 'text' and a table, slightly rotated."""
    width, height = 420, 560
    paper = tuple(int(v) for v in rng.integers(225, 256, 3))
    page = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(page)
    words = ["INVOICE", "Shipment", "Qty", "Total", "Customs", "Declaration", "Item", "Weight", "Origin"]
    draw.text((40, 30), " ".join(rng.choice(words, 3)), fill=(20, 20, 20))
    y = 70
    while y < height - 60:
        x = 40
        while x < width - 60:
            word = str(rng.choice(words)) + str(int(rng.integers(0, 999)))
            draw.text((x, y), word, fill=(30, 30, 30))
            x += 8 * len(word) + 10
        y += int(rng.integers(16, 24))
    draw.rectangle((40, height - 120, width - 40, height - 50), outline=(40, 40, 40))
    angle = float(rng.uniform(-4, 4))
    return page.rotate(angle, expand=True, fillcolor=tuple(int(v) for v in rng.integers(80, 140, 3)))


def _cardboard(rng: np.random.Generator) -> Image.Image:
    """An empty opened box: brown fibre texture, a fold line, a strip of tape, nothing inside."""
    width, height = _size(rng)
    base = np.array([176, 134, 88]) * rng.uniform(0.8, 1.1)
    fibres = rng.normal(0, 1, (height, width // 6 + 1))
    fibres = np.repeat(fibres, 6, axis=1)[:, :width] * 8 + rng.normal(0, 5, (height, width))
    pixels = np.clip(base + fibres[..., None], 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.8))
    draw = ImageDraw.Draw(image)
    fold = int(rng.integers(height // 4, height // 2))
    draw.line((0, fold, width, fold + int(rng.integers(-20, 20))), fill=tuple(int(v) for v in base * 0.7), width=3)
    tape_x = int(rng.integers(width // 3, 2 * width // 3))
    draw.rectangle((tape_x, 0, tape_x + 40, height), fill=(196, 170, 120))
    return image


_DRAWERS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "noise": _noise, "flat": _flat, "gradient": _gradient, "document": _document, "cardboard": _cardboard,
}
