"""Decode every photo once for the two-stage model: its glance input, its box, its focus crop.

Training photos with a box in the manifest (`quad`) are cropped around that box, jittered
by about the glance's own error so the focus stage learns from crops like the ones it will
get; every other photo (validation, test, datasets without boxes) is cropped where the
trained glance finds the product, through exactly the runtime's functions. Torch-free:
decoding runs in worker processes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from longteng.data.evidence import evidence_at, parse_evidence
from longteng.data.layout import Record
from longteng.errors import ImageLoadError, UnusableFile
from longteng.focus import (
    FocusSpec, GlanceFrame, OrientedBox, decode_for_focus, focus_crop, focus_to_photo, glance_pixels, parse_item_quads, parse_quad,
)
from longteng.preprocess import PreprocessSpec
from longteng.training.cache import map_in_processes
from longteng.training.occluders import occluded_view

# Box jitter for training crops (standard deviations): centre shift as a fraction of the
# box's longer side, relative size change, angle in radians. About what the glance misses by.
JITTER = (0.03, 0.05, math.radians(4.0))


@dataclass(frozen=True)
class GlanceItem:
    record: Record
    glance: np.ndarray  # uint8 (G, G, 3)
    frame: GlanceFrame
    decoded_size: tuple[int, int]
    quad: np.ndarray | None  # (4, 2) decoded-photo pixels, from the manifest
    crop: np.ndarray | None  # uint8 (S, S, 3) when the crop could be made in the same pass
    # Every item's quad (the manifest's items column), or just `quad`'s, decoded-photo pixels.
    item_quads: tuple[np.ndarray, ...] = ()
    # Further training crops of the same item (`training_views`), beside `crop`.
    views: tuple[np.ndarray, ...] = ()


Failure = UnusableFile  # path relative to the dataset root


def _glance_job(job: tuple[str, Record, PreprocessSpec, FocusSpec, int | None, int, str]) -> GlanceItem | Failure:
    root, record, glance_spec, focus_spec, jitter_seed, views, variation = job
    try:
        photo = decode_for_focus(Path(root) / record.path, focus_spec)
    except ImageLoadError as exc:
        return Failure(record.path, exc.reason, exc.detail)
    try:
        quad = parse_quad(record.extra.get("quad", ""), photo.image.size)
    except ValueError:
        quad = None
    try:
        item_quads = tuple(parse_item_quads(record.extra.get("items", ""), photo.image.size))
    except ValueError:
        item_quads = ()
    if not item_quads and quad is not None:
        item_quads = (quad,)
    crops: list[np.ndarray] = []
    if jitter_seed is not None and quad is not None:
        evidence = None
        if views > 1 and variation == "occluders":
            try:
                evidence = parse_evidence(record.extra.get("evidence", ""))
            except ValueError:
                evidence = None  # a damaged column: data check reports it; here the item is occluded anyway
        crops = training_views(photo.image, OrientedBox.from_quad(quad), focus_spec, glance_spec.pad_color, jitter_seed, views,
                               variation, None if evidence is None else (evidence, quad))
    return GlanceItem(record, glance_pixels(photo, glance_spec), GlanceFrame.of(photo.image.size, glance_spec), photo.image.size, quad,
                      crops[0] if crops else None, item_quads, tuple(crops[1:]))


def _crop_job(job: tuple[str, Record, PreprocessSpec, FocusSpec, OrientedBox | None]) -> np.ndarray | Failure:
    root, record, glance_spec, focus_spec, box = job
    try:
        photo = decode_for_focus(Path(root) / record.path, focus_spec)
    except ImageLoadError as exc:
        return Failure(record.path, exc.reason, exc.detail)
    return focus_crop(photo.image, box, focus_spec, glance_spec.pad_color)


def training_views(
    image: Image.Image, box: OrientedBox, focus_spec: FocusSpec, pad_color: tuple[int, int, int], seed: int, count: int,
    variation: str = "capture", evidence: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """`count` training crops of one item: the first at a jittered box (`jittered` with
    `seed`: the crop training has always used), each further one at another jittered box and,
    by `variation`, as another capture would show it (`capture_variation`) or with packing over
    part of the item (`occluders.occluded_view`, kept off `evidence`: (mask, quad))."""
    views = [focus_crop(image, jittered(box, np.random.default_rng(seed)), focus_spec, pad_color)]
    for view in range(1, count):
        rng = np.random.default_rng([seed, view])
        view_box = jittered(box, rng)
        crop = focus_crop(image, view_box, focus_spec, pad_color)
        if variation == "occluders":
            keep_clear = None if evidence is None else evidence_in_crop(evidence[0], evidence[1], view_box, focus_spec)
            views.append(occluded_view(crop, image, view_box, focus_spec, keep_clear, rng))
        else:
            views.append(capture_variation(crop, rng))
    return views


# Capture variation (standard deviations or ranges): log exposure gain, log contrast, colour
# cast (red and blue gain against green), sensor noise in 8-bit steps, JPEG quality.
CAPTURE = {"exposure": 0.12, "contrast": 0.12, "cast": 0.03, "noise": (0.0, 4.0), "jpeg_quality": (55, 95)}


def capture_variation(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (S, S, 3) -> the same item as another phone, light and compression would show it.

    Mild colour changes only, since an off-palette print is itself a tell; and no blur, since
    so is blurred print."""
    pixels = crop.astype(np.float32)
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    pixels = (pixels - mean) * math.exp(rng.normal(0.0, CAPTURE["contrast"])) + mean
    cast = rng.normal(0.0, CAPTURE["cast"], 2)
    pixels *= math.exp(rng.normal(0.0, CAPTURE["exposure"])) * np.array([1 + cast[0], 1.0, 1 + cast[1]], np.float32)
    pixels += rng.normal(0.0, rng.uniform(*CAPTURE["noise"]), pixels.shape).astype(np.float32)
    varied = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
    encoded = io.BytesIO()
    varied.save(encoded, format="JPEG", quality=int(rng.integers(*CAPTURE["jpeg_quality"], endpoint=True)))
    encoded.seek(0)
    with Image.open(encoded) as decoded:
        return np.asarray(decoded.convert("RGB"))


def jittered(box: OrientedBox, rng: np.random.Generator) -> OrientedBox:
    shift, size, turn = JITTER
    longer = max(box.length, box.width)
    dx, dy = rng.normal(0.0, shift * longer, 2)
    grow = float(np.exp(rng.normal(0.0, size)))
    return OrientedBox(box.cx + dx, box.cy + dy, box.length * grow, box.width * grow, box.angle + rng.normal(0.0, turn))


def glance_items(
    root: Path, records: Sequence[Record], glance_spec: PreprocessSpec, focus_spec: FocusSpec, *,
    crop_seed: int | None, workers: int, progress: Callable[[int], None] | None = None, views: int = 1,
    variation: str = "capture",
) -> tuple[list[GlanceItem], list[Failure]]:
    """Decode each photo once; with `crop_seed`, photos with a box also get their crop (and
    `views - 1` further ones, `training_views`)."""
    jobs = [
        (str(root), record, glance_spec, focus_spec, None if crop_seed is None else crop_seed * 1_000_003 + i, views, variation)
        for i, record in enumerate(records)
    ]
    items, failures = [], []
    for result in map_in_processes(_glance_job, jobs, workers, chunksize=8):
        (failures if isinstance(result, Failure) else items).append(result)
        if progress:
            progress(1)
    return items, failures


def crops_at(
    root: Path, items: Sequence[GlanceItem], boxes: Sequence[OrientedBox | None], glance_spec: PreprocessSpec,
    focus_spec: FocusSpec, *, workers: int, progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """uint8 (N, S, S, 3) focus crops at the given boxes (decoded-photo pixels)."""
    size = focus_spec.input_size
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    jobs = [(str(root), item.record, glance_spec, focus_spec, box) for item, box in zip(items, boxes)]
    for i, result in enumerate(map_in_processes(_crop_job, jobs, workers, chunksize=8)):
        # The photo decoded a moment ago; if it vanished since, an empty crop keeps rows aligned.
        out[i] = glance_spec.pad_color if isinstance(result, Failure) else result
        if progress:
            progress(1)
    return out


def evidence_target(mask: np.ndarray, quad: np.ndarray, box: OrientedBox, focus_spec: FocusSpec,
                    grid: tuple[int, int], samples: int = 4) -> np.ndarray:
    """(h, w) float for a (h, w) grid over the focus crop cut at `box`: the fraction of each cell
    that lies on the item's marked evidence (`mask` in the frame of `quad`, photo pixels),
    from samples x samples points per cell."""
    h, w = grid
    size = focus_spec.input_size
    v = (np.arange(h * samples) + 0.5) * size / (h * samples)
    u = (np.arange(w * samples) + 0.5) * size / (w * samples)
    uu, vv = np.meshgrid(u, v)
    x, y = focus_to_photo(box, focus_spec, uu, vv)
    marked = evidence_at(mask, quad, x, y).astype(np.float32)
    return marked.reshape(h, samples, w, samples).mean(axis=(1, 3))


def evidence_in_crop(mask: np.ndarray, quad: np.ndarray, box: OrientedBox, focus_spec: FocusSpec, cell: int = 8) -> np.ndarray:
    """(S, S) bool: the pixels of the focus crop cut at `box` that lie on the item's marked
    evidence (`evidence_target` on cells of about `cell` pixels), grown by one cell: where an
    occluder (training/occluders.py) must not go."""
    size = focus_spec.input_size
    cells = max(1, size // cell)
    marked = evidence_target(mask, quad, box, focus_spec, (cells, cells), samples=1) > 0
    grown = marked.copy()
    grown[1:] |= marked[:-1]
    grown[:-1] |= marked[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    cell_of_pixel = np.arange(size) * cells // size
    return grown[np.ix_(cell_of_pixel, cell_of_pixel)]
