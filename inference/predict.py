"""Verdicts for photos: load the exported model once, decode photos in a small thread pool,
run them through onnxruntime in batches and decide each one. onnxruntime, numpy, Pillow only.

Every input gives exactly one result, in input order: a :class:`PhotoPrediction`, or a
:class:`PhotoFailure` naming the file and a reason key (the loader's ``not_found``,
``unreadable``, ``empty``, ``not_an_image``, ``truncated``, ``corrupt``, ``too_large``,
``unsupported_format``, or discovery's ``no_match``, ``no_images``, ``symlink_loop``). A bad
photo never stops the others.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from longteng.decision import Decision, calibrate_scores, decide
from longteng.errors import ConfigError, ImageLoadError, UnusableFile
from longteng.imageio import DEFAULT_MAX_PIXELS
from longteng.inference.discover import DiscoveryError
from longteng.inference.metadata import ModelMetadata
from longteng.inference.aligned_check import AlignedFinding
from longteng.inference.artwork_check import ArtworkFinding
from longteng.inference.registered import NoveltyEvidence
from longteng.inference.session import OnnxModel, RuntimeOptions
from longteng.inference.checks import apply_checks
from longteng.inference.text_check import TextMismatch, TextRead, prepare_ocr, read_text
from longteng.inference.two_stage import (
    FocusInput, FocusView, PreparedPhoto, focus_input, focus_inputs, focus_items, prepare_photo,
)
from longteng.preprocess import load_resized

# Decoding a phone JPEG is I/O plus C code that releases the GIL, so threads overlap well;
# more than four rarely helps and costs memory for 50 MP photos in flight.
_MAX_DECODE_WORKERS = 4


@dataclass(frozen=True)
class PredictOptions:
    threads: int = 0  # onnxruntime intra-op threads; 0: its default
    device: str = "auto"
    batch_size: int = 16
    decode_workers: int = 0  # 0: min(4, CPU count)
    max_pixels: int = DEFAULT_MAX_PIXELS
    top_k: int = 3
    spin: bool = True  # see RuntimeOptions.spin

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.threads < 0 or self.decode_workers < 0:
            raise ConfigError("thread and worker counts cannot be negative")
        if self.max_pixels < 1:
            raise ConfigError(f"max pixels must be positive, got {self.max_pixels}")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}")


@dataclass(frozen=True)
class PhotoPrediction:
    """The verdict for one photo plus what explains it.

    ``probabilities`` are the calibrated class probabilities (order of the model's
    ``decision_classes``: its class names, then its registered products'), after the text
    check's evidence when the model reads print; ``class_maps`` (C, h, w) are the class logits at each position of the last
    feature map, for heatmaps; ``unknown_score`` is None when the model has no detector.
    """

    path: Path
    decision: Decision
    top_classes: tuple[tuple[str, float], ...]
    probabilities: np.ndarray
    unknown_score: float | None
    unknown: bool
    class_maps: np.ndarray | None
    view: "FocusView | None" = None  # two-stage models: where the focus stage looked
    text_mismatch: TextMismatch | None = None  # print that does not read as the product's genuine print
    novelty: NoveltyEvidence | None = None  # a registered product's photo beyond all its references
    aligned: AlignedFinding | None = None  # the item differs from its genuine references, place by place
    artwork: ArtworkFinding | None = None  # the logo's size, proportions, place or ink off the references'
    # A model that finds several items per photo: each item's own prediction (its view names
    # its box), largest first; the photo's verdict is its most suspicious item's. () otherwise.
    items: tuple["PhotoPrediction", ...] = ()

    @property
    def text_box(self) -> tuple[tuple[float, float], ...] | None:
        """Where the text check read a mismatch, in the stored photo's pixels (for overlays)."""
        return None if self.text_mismatch is None else self.text_mismatch.photo_box

    @property
    def aligned_box(self) -> tuple[tuple[float, float], ...] | None:
        """Where the item differs most from its genuine references, in the stored photo's pixels."""
        return None if self.aligned is None or self.aligned.photo_box is None else tuple(self.aligned.photo_box)

    @property
    def artwork_box(self) -> tuple[tuple[float, float], ...] | None:
        """Where the artwork check measured the logo off its references, in the stored photo's pixels."""
        return None if self.artwork is None else self.artwork.photo_box


PhotoFailure = UnusableFile


PhotoResult = PhotoPrediction | PhotoFailure


class Predictor:
    """An exported model, loaded once, that turns photo paths into results."""

    def __init__(self, model_path: Path | str, options: PredictOptions = PredictOptions()) -> None:
        self.options = options
        self.model = OnnxModel(model_path, RuntimeOptions(threads=options.threads, device=options.device, spin=options.spin))

    @property
    def metadata(self) -> ModelMetadata:
        return self.model.metadata

    def prepare(self) -> None:
        """Start loading, in the background, what the first verdict needs beyond the networks:
        the OCR engine of a model that reads print (about 0.8 s, half an officer's cold start),
        so it overlaps with decoding the first photo instead of following it."""
        registry = self.metadata.text_registry
        if registry is not None:
            prepare_ocr(self.options.threads, registry.detection_side)

    @property
    def model_path(self) -> Path:
        return self.model.path

    def predict(self, paths: Iterable[Path | DiscoveryError]) -> Iterator[PhotoResult]:
        """One result per entry, in order; discovery errors pass through as failures.

        Lazy: a folder of ten thousand photos streams through with at most two batches decoded.
        """
        workers = self.options.decode_workers or min(_MAX_DECODE_WORKERS, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="longteng-decode") as pool:
            in_flight: deque[list[tuple[Path, Future | PhotoFailure]]] = deque()
            for chunk in _chunks(paths, self.options.batch_size):
                in_flight.append([(path, self._submit(pool, entry)) for path, entry in chunk])
                # Keep the next batch decoding while this one runs through the model.
                if len(in_flight) > 1:
                    yield from self._finish(in_flight.popleft())
            while in_flight:
                yield from self._finish(in_flight.popleft())

    def predict_one(self, path: Path | str) -> PhotoResult:
        return next(iter(self.predict([Path(path)])))

    def predict_prepared(self, paths: Sequence[Path], prepared: Sequence[np.ndarray | PreparedPhoto]) -> list[PhotoPrediction]:
        """What decode_photo returned for each path -> predictions: the one batched pipeline
        of predict, score and evaluate."""
        if not self.metadata.two_stage:
            return self.predict_pixels(paths, np.stack(prepared))  # type: ignore[arg-type]
        if all(isinstance(item, FocusInput) for item in prepared):
            # Cropped and read where they were decoded (score's workers): the focus stage only.
            inputs: Sequence[FocusInput] = prepared  # type: ignore[assignment]
            crops = np.concatenate([item.crops for item in inputs])
            views = [view for item in inputs for view in item.views]
            reads = None if any(item.reads is None for item in inputs) else [r for item in inputs for r in item.reads]  # type: ignore[union-attr]
            owners = [index for index, item in enumerate(inputs) for _ in item.views]
            if self.metadata.finds_items:
                return self._judge_items(paths, crops, views, owners, reads)
            return self.predict_pixels(paths, crops, views, reads=reads)
        if self.metadata.finds_items:
            crops, views, owners = focus_items(self.model, prepared)  # type: ignore[arg-type]
            return self._judge_items(paths, crops, views, owners)
        crops, views = focus_inputs(self.model, prepared)  # type: ignore[arg-type]
        return self.predict_pixels(paths, crops, views)

    def _judge_items(
        self, paths: Sequence[Path], crops: np.ndarray, views: Sequence[FocusView], owners: Sequence[int],
        reads: Sequence[list[TextRead] | None] | None = None,
    ) -> list[PhotoPrediction]:
        """Each item of each photo through the focus stage (``owners``: each crop's photo); a
        photo is as suspicious as its most suspicious item, by the rule that combines several
        photos of one item (inference/items.py: an opened box with one fake among genuine items
        is a box with a fake), and lists all of them."""
        from longteng.inference.items import combine  # items.py builds on this module

        judged = self.predict_pixels([paths[owner] for owner in owners], crops, views, reads=reads)
        results = []
        for index, path in enumerate(paths):
            items = [prediction for prediction, owner in zip(judged, owners) if owner == index]
            photo = combine(str(path), items, self.metadata.operating_point)
            found = tuple(item for item in items if item.view is not None and item.view.box is not None)
            results.append(replace(photo.decisive, decision=photo.decision, unknown=photo.unknown, items=found))
        return results

    def predict_pixels(
        self, paths: Sequence[Path], pixels: np.ndarray, views: Sequence[FocusView] | None = None,
        reads: Sequence[list[TextRead] | None] | None = None,
    ) -> list[PhotoPrediction]:
        """uint8 (N, S, S, 3) model inputs (single-stage photos or focus crops) -> predictions.

        ``reads``: OCR of each crop where it was already done (a `score` worker); the rest are
        read here when the model carries a text registry."""
        metadata = self.metadata
        outputs = self.model.run(pixels)
        # The graph applies the temperature; the score calibration follows here, in numpy.
        probabilities = calibrate_scores(outputs["probabilities"], metadata.score_calibration, metadata.class_names)
        classes = metadata.decision_classes
        photo_reads = None
        if metadata.text_registry is not None:
            known = list(reads) if reads is not None else [None] * len(paths)
            photo_reads = [r if r is not None else read_text(pixels[i], self.options.threads, metadata.text_registry.detection_side) for i, r in enumerate(known)]
        registered = np.zeros(len(paths), dtype=bool)
        novelty: list = [None] * len(paths)
        if metadata.registered_products:
            from longteng.inference.registered import assign, extend_probabilities, novelty_evidence

            assignment = assign(outputs["embedding"], metadata, photo_reads)
            probabilities = extend_probabilities(probabilities, assignment, metadata)
            registered = assignment.product >= 0
            novelty = novelty_evidence(assignment, metadata)
        checked = apply_checks(metadata, pixels, photo_reads, probabilities, classes)
        probabilities, aligned, mismatches, artwork = checked.probabilities, checked.aligned, checked.mismatches, checked.artwork
        if views is not None and metadata.focus is not None:
            aligned = [
                a if a is None or a.box is None else replace(a, photo_box=views[i].crop_to_original(a.corners(), metadata.focus))
                for i, a in enumerate(aligned)
            ]
            mismatches = [
                m if m is None else replace(m, photo_box=views[i].crop_to_original(m.box, metadata.focus))
                for i, m in enumerate(mismatches)
            ]
            artwork = [
                a if a is None or a.box is None else replace(a, photo_box=views[i].crop_to_original(a.box, metadata.focus))
                for i, a in enumerate(artwork)
            ]
        unknown_score = None
        unknown = np.zeros(len(paths), dtype=bool)
        if metadata.registered_products:
            unknown_score, unknown = assignment.unknown_score, assignment.unknown
        elif metadata.unknown is not None:
            from longteng.inference.unknown import unknown_scores

            unknown_score = unknown_scores(outputs, metadata.unknown)
            unknown = unknown_score > metadata.unknown.threshold
        decisions = decide(probabilities, classes, metadata.operating_point, unknown=unknown, registered=registered)
        class_maps = outputs.get("class_maps")
        return [
            PhotoPrediction(
                path=path,
                decision=decisions[i],
                top_classes=top_classes(probabilities[i], classes, self.options.top_k),
                probabilities=probabilities[i],
                unknown_score=None if unknown_score is None else float(unknown_score[i]),
                unknown=bool(unknown[i]),
                class_maps=None if class_maps is None else np.asarray(class_maps[i]),
                view=None if views is None else views[i],
                text_mismatch=mismatches[i],
                novelty=novelty[i],
                aligned=aligned[i],
                artwork=artwork[i],
            )
            for i, path in enumerate(paths)
        ]

    def _submit(self, pool: ThreadPoolExecutor, entry: Path | DiscoveryError) -> Future | PhotoFailure:
        if isinstance(entry, DiscoveryError):
            return PhotoFailure(entry.path, entry.reason, entry.detail)
        return pool.submit(decode_photo, entry, self.metadata, self.options.max_pixels)

    def _finish(self, chunk: list[tuple[Path, Future | PhotoFailure]]) -> list[PhotoResult]:
        outcomes = [job if isinstance(job, PhotoFailure) else job.result() for _, job in chunk]
        decoded = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, PhotoFailure)]
        if decoded:
            prepared = [outcomes[i] for i in decoded]
            for i, prediction in zip(decoded, self.predict_prepared([chunk[i][0] for i in decoded], prepared)):
                outcomes[i] = prediction
        return outcomes


def top_classes(probabilities: np.ndarray, class_names: Sequence[str], k: int) -> tuple[tuple[str, float], ...]:
    """The k most probable classes, most probable first (ties: class order)."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return tuple((class_names[i], float(probabilities[i])) for i in order)


def decode_photo(
    path: Path, metadata: ModelMetadata, max_pixels: int, model_path: Path | None = None
) -> np.ndarray | PreparedPhoto | FocusInput | PhotoFailure:
    """What the model needs of one photo: its letterboxed pixels, or for a two-stage model the
    photo decoded once with its glance input; with ``model_path`` (a worker process of
    `score`), a two-stage photo is glanced at and cropped right here."""
    try:
        if metadata.two_stage and model_path is not None:
            return focus_input(path, str(model_path), max_pixels)
        if metadata.two_stage:
            return prepare_photo(path, metadata, max_pixels)
        return load_resized(path, metadata.preprocess, max_pixels=max_pixels)
    except ImageLoadError as exc:
        return PhotoFailure(path, exc.reason, exc.detail)
    except MemoryError:
        return PhotoFailure(path, "too_large", "not enough memory to decode this photo")
    except Exception as exc:  # noqa: BLE001 - one odd file (a Pillow plugin bug) must not end a batch of thousands
        return PhotoFailure(path, "corrupt", f"cannot decode ({type(exc).__name__}: {exc})")


def _chunks(
    entries: Iterable[Path | DiscoveryError], size: int
) -> Iterator[list[tuple[Path, Path | DiscoveryError]]]:
    chunk: list[tuple[Path, Path | DiscoveryError]] = []
    for entry in entries:
        chunk.append((entry.path if isinstance(entry, DiscoveryError) else Path(entry), entry))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
