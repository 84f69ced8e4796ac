"""Batch scoring of a whole archive (``longteng score``): one row per photo, streamed.

The scoring function is :func:`score_stream`. Both engines run it: the local engine with a
process pool decoding for it, the Dask engine once per partition inside each worker with an
inline executor. So a row never depends on the engine, only on the photo and the model.

Pipeline (local engine). Worker processes do the CPU-heavy, GIL-bound half (hashing,
JPEG decoding in draft mode, resizing: ``longteng.preprocess.load_resized`` via
``predict.decode_photo``); the main process runs onnxruntime on batches. A bounded window of
photos in flight feeds both sides: while a batch runs through the model the workers keep
decoding the next photos, and nothing grows with the size of the archive: the table of
photos already scored (for identical copies) keeps the last ``DEDUP_MEMORY`` distinct ones.

Each photo is first fingerprinted (size, mtime, sha256) and only then decoded, so identical
photos (same sha256) are decoded and scored once and the result reported for every path.

Row schema (version 1); every key is present in every row, ``None`` where it does not apply:

=====================  =======  ==========================================================
path                   str      the photo (``os.fsdecode`` text)
sha256                 str      hex digest of the file's bytes; None if it could not be read
size                   int      bytes
mtime_ns               int      modification time (ns); with size and path the resume key
verdict                str      GENUINE, COUNTERFEIT or REFER; None on errors
refer_reason           str      "" (decided), "uncertain", "unknown" or "registered"
product                str      most probable product
confidence             float    calibrated probability of the verdict
counterfeit_score      float    calibrated probability of a counterfeit
product_confidence     float    probability of the product
unknown_score          float    out-of-distribution score; None without a detector
unknown                bool     unknown_score above the model's threshold
text_evidence          str      the text check's finding, "read KOPVEX, registered KORVEX";
                                "" when the print matches or the model reads none
novelty_evidence       str      a registered product's photo beyond all its genuine references,
                                "novelty 6.2, beyond every genuine power_bank reference (4.53)";
                                "" otherwise
aligned_evidence       str      the aligned check fired: "smartphone differs from its genuine
                                references (score 3.10, threshold 1.20)"; "" otherwise
artwork_evidence       str      the artwork check fired: "logo 23% longer than registered";
                                "" otherwise
item_count             int      models that find several items in a photo only: how many it
                                found
items                  str      the same models: the items as a JSON array (predict's
                                items_in_photo: box, verdict, product, confidence, counterfeit
                                score, evidence per item); the row's verdict is the most
                                suspicious item's. JSON text rather than a nested column, so
                                CSV, JSON Lines and Parquet carry it the same way
prob_<class>           float    calibrated probability of each class, model class order
model_version          str      the model file's version
error_reason           str      "" when scored, else the reason key (``not_an_image``, ...);
                                the same name and keys as ``predict``'s rows
error_detail           str      "" when scored, else human-readable detail
scored_at              str      UTC time the row was produced, ISO 8601
=====================  =======  ==========================================================
"""

from __future__ import annotations

import json
import os
import stat
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from longteng.data.layout import sha256_file
from longteng.errors import ConfigError
from longteng.imageio import DEFAULT_MAX_PIXELS, looks_like_image_header, read_header
from longteng.inference.discover import DiscoveryError
from longteng.inference.metadata import ModelMetadata
from longteng.inference.predict import PhotoFailure, PhotoPrediction, Predictor, decode_photo
from longteng.inference.records import decision_fields, finite_or_none, items_in_photo

SCHEMA_VERSION = 1
# Outcomes remembered for identical photos. Bounded so memory stays flat on any archive: a copy
# seen more than this many distinct photos after its original is simply scored again (same row).
DEDUP_MEMORY = 100_000
PROBABILITY_PREFIX = "prob_"
_HEAD = ("path", "sha256", "size", "mtime_ns", "verdict", "refer_reason", "product", "confidence",
         "counterfeit_score", "product_confidence", "unknown_score", "unknown", "text_evidence",
         "novelty_evidence", "aligned_evidence", "artwork_evidence")
_TAIL = ("model_version", "error_reason", "error_detail", "scored_at")
FLOAT_FIELDS = frozenset({"confidence", "counterfeit_score", "product_confidence", "unknown_score"})
INT_FIELDS = frozenset({"size", "mtime_ns", "item_count"})
BOOL_FIELDS = frozenset({"unknown"})


_ITEMS = ("item_count", "items")


def score_fields(class_names: Sequence[str], finds_items: bool = False) -> tuple[str, ...]:
    """The columns of a results file for a model with these classes, in order
    (``finds_items``: ModelMetadata.finds_items)."""
    return (*_HEAD, *(_ITEMS if finds_items else ()), *(PROBABILITY_PREFIX + name for name in class_names), *_TAIL)


def field_type(name: str) -> str:
    """'float', 'int', 'bool' or 'str': what a column holds (CSV readers and Parquet need it)."""
    if name in FLOAT_FIELDS or name.startswith(PROBABILITY_PREFIX):
        return "float"
    if name in INT_FIELDS:
        return "int"
    if name in BOOL_FIELDS:
        return "bool"
    return "str"


@dataclass(frozen=True)
class ScoreOptions:
    batch_size: int = 32
    workers: int = 0  # decode processes (local) or Dask workers (LocalCluster); 0: CPU count
    threads: int = 0  # onnxruntime intra-op threads; 0: its default
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    in_flight: int = 0  # photos between discovery and output; 0: 4 batches
    part_size: int = 256  # rows per journal part (what a kill can lose), and photos per Dask task

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if min(self.workers, self.threads, self.in_flight) < 0:
            raise ConfigError("worker, thread and in-flight counts cannot be negative")
        if self.max_pixels < 1:
            raise ConfigError(f"max pixels must be positive, got {self.max_pixels}")
        if self.part_size < 1:
            raise ConfigError(f"part size must be at least 1, got {self.part_size}")

    @property
    def window(self) -> int:
        # Never smaller than two batches: one in the model while the next one decodes.
        return max(self.in_flight or 4 * self.batch_size, 2 * self.batch_size)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class Fingerprint:
    size: int
    mtime_ns: int
    sha256: str


@dataclass
class ScoreStats:
    """What a scoring run did (not what the archive holds: see the summary for that)."""

    rows: int = 0
    decoded: int = 0  # distinct photos sent to the decoder
    deduplicated: int = 0  # rows answered from an identical photo scored in this run
    inferred: int = 0  # photos run through the model

    def add(self, other: "ScoreStats") -> None:
        for name in ("rows", "decoded", "deduplicated", "inferred"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def fingerprint(path: Path) -> Fingerprint | PhotoFailure:
    """Size, mtime and content hash of a file; a failure row's reason if it cannot be read."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return PhotoFailure(path, "not_found", "no such file")
    except OSError as exc:
        return PhotoFailure(path, "unreadable", f"cannot read file ({exc.strerror or exc})")
    if not stat.S_ISREG(info.st_mode):
        return PhotoFailure(path, "unreadable", "not a regular file")
    try:
        # Sniffed before hashing: a 4 GB video or archive is refused at once, not after reading it all.
        if info.st_size and not looks_like_image_header(read_header(path)):
            return PhotoFailure(path, "not_an_image", "not an image in a supported format")
        digest = sha256_file(path)
    except OSError as exc:
        return PhotoFailure(path, "unreadable", f"cannot read file ({exc.strerror or exc})")
    return Fingerprint(info.st_size, info.st_mtime_ns, digest)


class InlineExecutor(Executor):
    """Runs each job at submit time: the Dask engine's executor (a worker is already a process)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


@dataclass
class _Slot:
    index: int
    path: Path
    fingerprint: Fingerprint | None = None
    outcome: dict[str, Any] | None = None
    done_at: str = ""


@dataclass
class _State:
    window: deque = field(default_factory=deque)
    fingerprinting: dict = field(default_factory=dict)  # future -> slot
    decoding: dict = field(default_factory=dict)  # future -> sha256
    waiting: dict = field(default_factory=dict)  # sha256 -> slots whose photo is being decoded
    ready: list = field(default_factory=list)  # (sha256, path, uint8 pixels)
    scored: OrderedDict = field(default_factory=OrderedDict)  # sha256 -> outcome, most recent last


def score_stream(
    entries: Iterable[tuple[int, Path | DiscoveryError]],
    predictor: Predictor,
    executor: Executor,
    options: ScoreOptions = ScoreOptions(),
    stats: ScoreStats | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per ``(index, entry)``, in input order, each with its ``index`` added.

    ``executor`` runs the fingerprinting and decoding (picklable module-level functions, so a
    spawn or forkserver process pool works); inference stays in the calling process.
    """
    stats = stats if stats is not None else ScoreStats()
    metadata = predictor.metadata
    state = _State()
    source = iter(entries)
    exhausted = False
    while True:
        progressed = False
        while not exhausted and len(state.window) < options.window:
            item = next(source, None)
            if item is None:
                exhausted = True
                break
            index, entry = item
            if isinstance(entry, DiscoveryError):
                slot = _Slot(index, entry.path, outcome=_failure_outcome(entry.reason, entry.detail))
            else:
                slot = _Slot(index, Path(entry))
                state.fingerprinting[executor.submit(fingerprint, slot.path)] = slot
            state.window.append(slot)
            progressed = True
        progressed |= _take_fingerprints(state, executor, metadata, options, stats, predictor.model_path)
        progressed |= _take_decoded(state)
        # A partial batch runs only when nothing in flight could still fill it.
        while len(state.ready) >= options.batch_size or (state.ready and not state.fingerprinting and not state.decoding):
            batch, state.ready = state.ready[: options.batch_size], state.ready[options.batch_size:]
            _infer(state, batch, predictor, stats)
            progressed = True
        while state.window and state.window[0].outcome is not None:
            slot = state.window.popleft()
            stats.rows += 1
            yield _row(slot, metadata)
            progressed = True
        if exhausted and not state.window:
            return
        if not progressed:
            pending = [*state.fingerprinting, *state.decoding]
            if not pending:
                raise RuntimeError("scoring pipeline stalled with nothing in flight")  # a bug, never input
            wait(pending, return_when=FIRST_COMPLETED)


def _take_fingerprints(state: _State, executor: Executor, metadata: ModelMetadata, options: ScoreOptions,
                       stats: ScoreStats, model_path: Path | None = None) -> bool:
    finished = [future for future in state.fingerprinting if future.done()]
    for future in finished:
        slot = state.fingerprinting.pop(future)
        result = future.result()
        if isinstance(result, PhotoFailure):
            slot.outcome = _failure_outcome(result.reason, result.detail)
            continue
        slot.fingerprint = result
        digest = result.sha256
        if digest in state.scored:
            state.scored.move_to_end(digest)
            slot.outcome = state.scored[digest]
            stats.deduplicated += 1
        elif digest in state.waiting:
            state.waiting[digest].append(slot)
            stats.deduplicated += 1
        else:
            state.waiting[digest] = [slot]
            stats.decoded += 1
            # Two-stage models: the worker glances and crops, so only the crop comes back.
            crop_in_worker = model_path if metadata.two_stage else None
            state.decoding[executor.submit(decode_photo, slot.path, metadata, options.max_pixels, crop_in_worker)] = digest
    return bool(finished)


def _take_decoded(state: _State) -> bool:
    finished = [future for future in state.decoding if future.done()]
    for future in finished:
        digest = state.decoding.pop(future)
        result = future.result()
        if isinstance(result, PhotoFailure):
            _resolve(state, digest, _failure_outcome(result.reason, result.detail))
        else:
            state.ready.append((digest, state.waiting[digest][0].path, result))
    return bool(finished)


def _infer(state: _State, batch: list, predictor: Predictor, stats: ScoreStats) -> None:
    predictions = predictor.predict_prepared([path for _, path, _ in batch], [prepared for *_, prepared in batch])
    stats.inferred += len(batch)
    for (digest, _, _), prediction in zip(batch, predictions):
        _resolve(state, digest, _prediction_outcome(prediction, predictor.metadata))


def _resolve(state: _State, digest: str, outcome: dict[str, Any]) -> None:
    state.scored[digest] = outcome
    if len(state.scored) > DEDUP_MEMORY:
        state.scored.popitem(last=False)
    for slot in state.waiting.pop(digest):
        slot.outcome = outcome


def _prediction_outcome(prediction: PhotoPrediction, metadata: ModelMetadata) -> dict[str, Any]:
    decision = prediction.decision
    outcome: dict[str, Any] = {
        **decision_fields(decision),
        "unknown_score": finite_or_none(prediction.unknown_score),
        "unknown": prediction.unknown,
        "text_evidence": "" if prediction.text_mismatch is None else prediction.text_mismatch.describe(),
        "novelty_evidence": "" if prediction.novelty is None else prediction.novelty.describe(),
        "aligned_evidence": "" if prediction.aligned is None else prediction.aligned.describe(),
        "artwork_evidence": "" if prediction.artwork is None else prediction.artwork.describe(),
        "error_reason": "",
        "error_detail": "",
    }
    if metadata.finds_items:
        outcome["item_count"] = len(prediction.items)
        outcome["items"] = json.dumps(items_in_photo(prediction), ensure_ascii=True, allow_nan=False)
    for name, probability in zip(metadata.decision_classes, prediction.probabilities):
        outcome[PROBABILITY_PREFIX + name] = finite_or_none(float(probability))
    return outcome


def _failure_outcome(reason: str, detail: str) -> dict[str, Any]:
    return {"error_reason": reason, "error_detail": detail}


def _row(slot: _Slot, metadata: ModelMetadata) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(score_fields(metadata.decision_classes, metadata.finds_items))
    row.update(slot.outcome or {})
    fp = slot.fingerprint
    if fp is None:
        fp = _stat_only(slot.path)
    row.update(
        path=os.fsdecode(slot.path),
        sha256=None if fp is None else fp.sha256 or None,
        size=None if fp is None else fp.size,
        mtime_ns=None if fp is None else fp.mtime_ns,
        model_version=metadata.model_version,
        scored_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        index=slot.index,
    )
    return row


def _stat_only(path: Path) -> Fingerprint | None:
    # An unreadable file still has a size and mtime, so the resume check can tell it unchanged.
    try:
        info = os.stat(path)
    except OSError:
        return None
    return Fingerprint(info.st_size, info.st_mtime_ns, "")


def resume_key(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file now, compared with a journal row's to skip unchanged photos."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns
