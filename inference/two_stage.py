"""The runtime's two-stage path: glance at the whole photo, crop the product, focus on it.

`prepare_photo` (in a decoding thread or worker process) decodes a photo once and makes its
glance input; `focus_inputs` (in the process holding the model, batched) runs the glance,
turns its maps into boxes and cuts the upright crops the focus stage classifies. Predict,
score and evaluate on ONNX all pass through these two functions. onnxruntime, numpy, Pillow.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longteng.focus import (
    DecodedPhoto, FocusSpec, GlanceFrame, OrientedBox, box_from_maps, boxes_from_maps, decode_for_focus, focus_crop, focus_to_photo,
    glance_pixels,
)
from longteng.errors import ImageLoadError, UnusableFile
from longteng.imageio import DEFAULT_MAX_PIXELS
from longteng.inference.metadata import ModelMetadata


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo decoded once for both stages."""

    photo: DecodedPhoto
    glance: np.ndarray  # uint8 (G, G, 3)


@dataclass(frozen=True)
class FocusView:
    """Where the focus stage looked: the box in decoded-photo pixels (None: the whole photo)."""

    box: OrientedBox | None
    decoded_size: tuple[int, int]
    original_size: tuple[int, int]
    item: int = 0  # which of the photo's items (a model that finds several), largest first

    @property
    def box_in_original(self) -> OrientedBox | None:
        """The box in the pixels of the photo as stored (upright), for reports and overlays."""
        if self.box is None:
            return None
        return self.box.scaled(self.original_size[0] / self.decoded_size[0])

    def crop_to_original(self, points: Sequence[tuple[float, float]], spec: FocusSpec) -> list[tuple[float, float]] | None:
        """Focus-crop pixel coordinates -> the stored photo's pixels (None: no box to map through)."""
        box = self.box_in_original
        if box is None:
            return None
        u, v = np.array([p[0] for p in points], dtype=np.float64), np.array([p[1] for p in points], dtype=np.float64)
        # The crop's geometry scales with its box, so mapping through the box in the stored
        # photo's pixels lands there directly.
        x, y = focus_to_photo(box, spec, u, v)
        return [(float(a), float(b)) for a, b in zip(x, y)]


def prepare_photo(path: Path, metadata: ModelMetadata, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedPhoto:
    """Raises ImageLoadError like longteng.imageio.load_image."""
    photo = decode_for_focus(path, metadata.focus, max_pixels=max_pixels)  # type: ignore[arg-type]
    return PreparedPhoto(photo, glance_pixels(photo, metadata.preprocess))


def locate_items(model, photos: Sequence[PreparedPhoto]) -> list[list[OrientedBox]]:
    """Every item the glance finds in each photo, largest first ([] for all when it was not trained)."""
    metadata: ModelMetadata = model.metadata
    if not metadata.glance_trained:
        return [[] for _ in photos]
    objectness, up = model.run_glance(np.stack([p.glance for p in photos]))
    size = metadata.preprocess.input_size
    return [
        boxes_from_maps(objectness[i], up[i], GlanceFrame.of(prepared.photo.image.size, metadata.preprocess), size,
                        metadata.focus.max_items)  # type: ignore[union-attr]
        for i, prepared in enumerate(photos)
    ]


def focus_items(model, photos: Sequence[PreparedPhoto]) -> tuple[np.ndarray, list[FocusView], list[int]]:
    """A model that finds several items per photo: one upright crop per item found (the whole
    photo where none is), with its view and the index of its photo."""
    metadata: ModelMetadata = model.metadata
    crops, views, owners = [], [], []
    for index, (prepared, boxes) in enumerate(zip(photos, locate_items(model, photos))):
        for item, box in enumerate(boxes or [None]):
            crops.append(focus_crop(prepared.photo.image, box, metadata.focus, metadata.preprocess.pad_color))  # type: ignore[arg-type]
            views.append(FocusView(box, prepared.photo.image.size, prepared.photo.original_size, item))
            owners.append(index)
    return np.stack(crops), views, owners


def locate(model, photos: Sequence[PreparedPhoto]) -> list[OrientedBox | None]:
    """Where the glance finds each photo's product (None for all when it was not trained)."""
    metadata: ModelMetadata = model.metadata
    if not metadata.glance_trained:
        return [None] * len(photos)
    objectness, up = model.run_glance(np.stack([p.glance for p in photos]))
    size = metadata.preprocess.input_size
    return [
        box_from_maps(objectness[i], up[i], GlanceFrame.of(prepared.photo.image.size, metadata.preprocess), size)
        for i, prepared in enumerate(photos)
    ]


def focus_inputs(model, photos: Sequence[PreparedPhoto]) -> tuple[np.ndarray, list[FocusView]]:
    """`model`: an inference.session.OnnxModel of a two-stage model -> (uint8 crops, views)."""
    metadata: ModelMetadata = model.metadata
    boxes = locate(model, photos)
    crops = np.stack([
        focus_crop(p.photo.image, box, metadata.focus, metadata.preprocess.pad_color)  # type: ignore[arg-type]
        for p, box in zip(photos, boxes)
    ])
    views = [FocusView(box, p.photo.image.size, p.photo.original_size) for p, box in zip(photos, boxes)]
    return crops, views


@dataclass
class PathOutputs:
    """A two-stage model's outputs for photo files; rows only for the photos that decoded."""

    outputs: dict[str, np.ndarray]
    views: list[FocusView]
    kept: list[int]  # index into the paths given, per row
    failures: list[UnusableFile]
    reads: list[list] = field(default_factory=list)  # per row: OCR of the crop (read_print=True)
    crops: list[np.ndarray] = field(default_factory=list)  # per row: the focus crop (keep_crops=True)


def outputs_for_paths(
    model, paths: Sequence[Path], outputs: Sequence[str] = ("logits", "embedding"), *, batch_size: int = 16,
    max_pixels: int = DEFAULT_MAX_PIXELS, progress=None, read_print: bool = False, keep_crops: bool = False,
) -> PathOutputs:
    """Named outputs of a two-stage model for photo files, through the runtime's own path;
    a photo that cannot be decoded becomes a failure and the rest go on. ``read_print``: also
    OCR each crop (text_check.read_text), as the runtime does for a model that reads print;
    ``keep_crops``: also return the crops (what export learns the genuine references from)."""
    from concurrent.futures import ThreadPoolExecutor

    def prepare(path: Path) -> PreparedPhoto | UnusableFile:
        try:
            return prepare_photo(Path(path), model.metadata, max_pixels)
        except ImageLoadError as exc:
            return UnusableFile.from_error(exc, path)

    result = PathOutputs({}, [], [], [])
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(paths), batch_size):
            prepared = list(pool.map(prepare, paths[start : start + batch_size]))
            good = [k for k, item in enumerate(prepared) if isinstance(item, PreparedPhoto)]
            result.failures.extend(item for item in prepared if isinstance(item, UnusableFile))
            if good:
                if model.metadata.finds_items:
                    crops, views, found = _decisive_items(model, [prepared[k] for k in good], tuple(outputs))
                else:
                    crops, views = focus_inputs(model, [prepared[k] for k in good])
                    found = model.run(crops, outputs=tuple(outputs))
                result.views.extend(views)
                result.kept.extend(start + k for k in good)
                if keep_crops:
                    result.crops.extend(crops)
                for name, value in found.items():
                    chunks[name].append(value)
                if read_print:
                    from longteng.inference.text_check import DEFAULT_DETECTION_SIDE, read_text

                    # As the model's registry was read; a registry still to be learnt (export) reads at the default.
                    registry = model.metadata.text_registry
                    side = DEFAULT_DETECTION_SIDE if registry is None else registry.detection_side
                    result.reads.extend(read_text(crop, detection_side=side) for crop in crops)
            if progress:
                progress(len(prepared))
    result.outputs = {name: np.concatenate(parts) for name, parts in chunks.items() if parts}
    return result


def _decisive_items(model, photos: Sequence[PreparedPhoto], outputs: tuple[str, ...]) -> tuple[np.ndarray, list[FocusView], dict[str, np.ndarray]]:
    """A model that finds several items: per photo, the crop, view and outputs of its most
    suspicious item (the largest counterfeit score before the score calibration, which is
    monotone in it), as Predictor judges the photo."""
    from longteng.decision import counterfeit_score

    crops, views, owners = focus_items(model, photos)
    found = model.run(crops, outputs=tuple(dict.fromkeys(("probabilities", *outputs))))
    mass = counterfeit_score(found["probabilities"], model.metadata.class_names)
    owners_array = np.asarray(owners)
    chosen = [int(np.flatnonzero(owners_array == i)[np.argmax(mass[owners_array == i])]) for i in range(len(photos))]
    return crops[chosen], [views[k] for k in chosen], {name: found[name][chosen] for name in outputs}


@dataclass(frozen=True)
class FocusInput:
    """A photo ready for the focus stage: the upright crop of each item found (one for a model
    of one item) and where each came from."""

    crops: np.ndarray  # uint8 (K, S, S, 3)
    views: tuple[FocusView, ...]
    reads: tuple[list, ...] | None = None  # each crop's OCR (text_check.TextRead) when the model reads print


@functools.lru_cache(maxsize=2)
def _worker_model(model_path: str):
    """One single-threaded session per worker process and model, loaded on first use."""
    from longteng.inference.session import OnnxModel, RuntimeOptions

    return OnnxModel(model_path, RuntimeOptions(threads=1, device="cpu", spin=False))


def focus_input(path: Path, model_path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> FocusInput:
    """Decode, glance and crop one photo where it is decoded (a `score` worker), and read the
    print of each crop, so only the 384 px crops cross back to the process that runs the
    focus stage in batches: an opened box's items are cut and read on every core, not one.
    Raises ImageLoadError like longteng.imageio.load_image."""
    model = _worker_model(str(model_path))
    prepared = [prepare_photo(Path(path), model.metadata, max_pixels)]
    if model.metadata.finds_items:
        crops, views, _ = focus_items(model, prepared)
    else:
        crops, views = focus_inputs(model, prepared)
    reads = None
    if model.metadata.text_registry is not None:
        from longteng.inference.text_check import read_text

        # The worker's one core, like its session.
        side = model.metadata.text_registry.detection_side
        reads = tuple(read_text(crop, threads=1, detection_side=side) for crop in crops)
    return FocusInput(crops, tuple(views), reads)
