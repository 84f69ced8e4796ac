"""Decode every photo once for the two-stage model: its glance input, its box, its focus crop.

Training photos with a box in the manifest (`quad`) are cropped around that box, jittered
by about the glance's own error so the focus stage learns from crops like the ones it will
get; every other photo (validation, test, datasets without boxes) is cropped where the
trained glance finds the product, through exactly the runtime's functions. Torch-free:
decoding runs in worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longteng.data.evidence import evidence_at
from longteng.data.layout import Record
from longteng.errors import ImageLoadError, UnusableFile
from longteng.focus import (
    FocusSpec, GlanceFrame, OrientedBox, decode_for_focus, focus_crop, focus_to_photo, glance_pixels, parse_item_quads, parse_quad,
)
from longteng.preprocess import PreprocessSpec
from longteng.training.cache import map_in_processes

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


Failure = UnusableFile  # path relative to the dataset root


def _glance_job(job: tuple[str, Record, PreprocessSpec, FocusSpec, int | None]) -> GlanceItem | Failure:
    root, record, glance_spec, focus_spec, jitter_seed = job
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
    crop = None
    if jitter_seed is not None and quad is not None:
        box = jittered(OrientedBox.from_quad(quad), np.random.default_rng(jitter_seed))
        crop = focus_crop(photo.image, box, focus_spec, glance_spec.pad_color)
    return GlanceItem(record, glance_pixels(photo, glance_spec), GlanceFrame.of(photo.image.size, glance_spec), photo.image.size, quad, crop,
                      item_quads)


def _crop_job(job: tuple[str, Record, PreprocessSpec, FocusSpec, OrientedBox | None]) -> np.ndarray | Failure:
    root, record, glance_spec, focus_spec, box = job
    try:
        photo = decode_for_focus(Path(root) / record.path, focus_spec)
    except ImageLoadError as exc:
        return Failure(record.path, exc.reason, exc.detail)
    return focus_crop(photo.image, box, focus_spec, glance_spec.pad_color)


def jittered(box: OrientedBox, rng: np.random.Generator) -> OrientedBox:
    shift, size, turn = JITTER
    longer = max(box.length, box.width)
    dx, dy = rng.normal(0.0, shift * longer, 2)
    grow = float(np.exp(rng.normal(0.0, size)))
    return OrientedBox(box.cx + dx, box.cy + dy, box.length * grow, box.width * grow, box.angle + rng.normal(0.0, turn))


def glance_items(
    root: Path, records: Sequence[Record], glance_spec: PreprocessSpec, focus_spec: FocusSpec, *,
    crop_seed: int | None, workers: int, progress: Callable[[int], None] | None = None,
) -> tuple[list[GlanceItem], list[Failure]]:
    """Decode each photo once; with `crop_seed`, photos with a box also get their crop."""
    jobs = [
        (str(root), record, glance_spec, focus_spec, None if crop_seed is None else crop_seed * 1_000_003 + i)
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
