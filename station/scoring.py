"""The warm model of the station, behind a small dynamic batcher.

Each request decodes its own photo (in the server's thread pool: Pillow releases the GIL),
then hands the decoded photo to the batcher; one thread runs the model on whatever has
arrived within ``max_wait`` (up to ``batch_size`` photos), so photos from several phones share
one inference call. The rows are those of ``longteng predict --json`` (the same functions).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longteng.imageio import DEFAULT_MAX_PIXELS
from longteng.inference.explain import ExplainOptions, item_outlines, write_overlay
from longteng.inference.predict import PhotoFailure, PhotoPrediction, PredictOptions, Predictor, decode_photo
from longteng.inference.records import failure_record, photo_record


HEATMAP_SIDE = 1600  # px, the longest side of the overlays the pages show


@dataclass(frozen=True)
class ScoringOptions:
    batch_size: int = 8
    max_wait_s: float = 0.01  # how long the first photo of a batch waits for company
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int = 0


class Scorer:
    def __init__(self, model_path: Path, heatmap_dir: Path, options: ScoringOptions = ScoringOptions()) -> None:
        self.options = options
        # Not spinning: request threads decode photos on the same cores while the model idles
        # between batches (as score's local engine; bench/bench_station.py measures it).
        self.predictor = Predictor(model_path, PredictOptions(threads=options.threads, max_pixels=options.max_pixels, spin=False))
        self.predictor.prepare()
        self.metadata = self.predictor.metadata
        self.explain = ExplainOptions(Path(heatmap_dir), "jpg", max_pixels=options.max_pixels, max_side=HEATMAP_SIDE)
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="longteng-batcher", daemon=True)
        self._thread.start()

    @property
    def model_version(self) -> str:
        return self.metadata.model_version

    def score(self, path: Path) -> tuple[dict[str, Any], str | None]:
        """(the predict --json row of the photo, the heatmap's file name or None)."""
        decoded = decode_photo(path, self.metadata, self.options.max_pixels)
        if isinstance(decoded, PhotoFailure):
            return failure_record(decoded, self.model_version), None
        future: Future = Future()
        self._queue.put((path, decoded, future))
        prediction: PhotoPrediction = future.result()
        heatmap = self._heatmap(prediction)
        return photo_record(prediction, self.model_version, None, counts_items=self.metadata.finds_items), heatmap

    def _heatmap(self, prediction: PhotoPrediction) -> str | None:
        """The overlay's file name in the heatmap folder (photos are stored by content hash, so
        the name is unique)."""
        if prediction.class_maps is None:
            return None
        options = self.explain
        try:
            written = write_overlay(
                prediction.path, prediction.decision, prediction.class_maps, self.metadata.class_names,
                self.metadata.preprocess, options, view=prediction.view, focus=self.metadata.focus,
                text_box=prediction.text_box, aligned_box=prediction.aligned_box, artwork_box=prediction.artwork_box, items=item_outlines(prediction),
            )
        except Exception:  # noqa: BLE001 - a heatmap is evidence, not the verdict: never lose the verdict for it
            return None
        return written.name

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            try:
                while len(batch) < self.options.batch_size:
                    batch.append(self._queue.get(timeout=self.options.max_wait_s))
            except queue.Empty:
                pass
            try:
                predictions = self.predictor.predict_prepared([b[0] for b in batch], [b[1] for b in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to each waiting request
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, _, future), prediction in zip(batch, predictions):
                future.set_result(prediction)
