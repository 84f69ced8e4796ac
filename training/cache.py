"""Decode and resize every photo once per run; epochs then read a uint8 memmap.

Decoding full-size photos every epoch would dominate training on a 2-core machine.
The cached arrays are exactly what the runtime computes (`longteng.preprocess.load_resized`),
so evaluation from the cache sees the same pixels as `predict`. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longteng.data.layout import Record
from longteng.workers import worker_init
from longteng.errors import ImageLoadError, UnusableFile
from longteng.preprocess import PreprocessSpec, load_resized


DecodeFailure = UnusableFile  # path relative to the dataset root


@dataclass
class DecodedImages:
    records: list[Record]  # the photos that decoded, in input order
    pixels: np.ndarray  # (len(records), size, size, 3) uint8
    failures: list[DecodeFailure]


def _decode_one(job: tuple[str, str, str]) -> np.ndarray | DecodeFailure:
    root, relative, spec_json = job
    try:
        return load_resized(Path(root) / relative, PreprocessSpec.from_json(spec_json))
    except ImageLoadError as exc:
        return DecodeFailure(relative, exc.reason, exc.detail)


def _cache_key(records: Sequence[Record], spec: PreprocessSpec, root: Path) -> str:
    digest = hashlib.sha256(spec.to_json().encode())
    for record in records:
        path = root / record.path
        try:
            stat = path.stat()
            stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"{record.path}\x1f{record.sha256}\x1f{stamp}\x1e".encode())
    return digest.hexdigest()[:20]


def decode_images(
    root: Path,
    records: Sequence[Record],
    spec: PreprocessSpec,
    *,
    cache_dir: Path | None = None,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> DecodedImages:
    """Decode `records` (reusing `cache_dir` when it holds the same files and spec)."""
    root = Path(root)
    key = _cache_key(records, spec, root)
    if cache_dir is not None:
        cached = _load_cache(cache_dir, key, records)
        if cached is not None:
            if progress:
                progress(len(records))
            return cached

    size = spec.input_size
    jobs = [(str(root), r.path, spec.to_json()) for r in records]
    good: list[Record] = []
    failures: list[DecodeFailure] = []
    pixels = np.empty((len(records), size, size, 3), dtype=np.uint8)
    results = map_in_processes(_decode_one, jobs, workers)
    for record, result in zip(records, results):
        if isinstance(result, DecodeFailure):
            failures.append(result)
        else:
            pixels[len(good)] = result
            good.append(record)
        if progress:
            progress(1)
    pixels = pixels[: len(good)]
    decoded = DecodedImages(good, pixels, failures)
    if cache_dir is not None:
        _save_cache(cache_dir, key, decoded)
    return decoded


def map_in_processes(function: Callable, jobs: list, workers: int, *, chunksize: int = 16) -> Iterator:
    """``map(function, jobs)`` in order, over ``workers`` processes when there are enough jobs."""
    if workers <= 1 or len(jobs) < 2 * chunksize:
        yield from map(function, jobs)
        return
    # spawn: safe beside torch threads and identical on every platform.
    context = multiprocessing.get_context("spawn")
    # Workers that die with this process (longteng.workers), even after a kill -9 of training.
    pool = context.Pool(workers, initializer=worker_init, initargs=(os.getpid(),))
    try:
        yield from pool.imap(function, jobs, chunksize=chunksize)
    finally:
        pool.terminate()


def _save_cache(cache_dir: Path, key: str, decoded: DecodedImages) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    array_path = cache_dir / f"{key}.npy"
    temporary = cache_dir / f"{key}.npy.tmp"
    with open(temporary, "wb") as handle:
        np.save(handle, decoded.pixels)
    os.replace(temporary, array_path)
    index = {
        "paths": [r.path for r in decoded.records],
        "failures": [f.__dict__ for f in decoded.failures],
    }
    (cache_dir / f"{key}.json").write_text(json.dumps(index))


def _load_cache(cache_dir: Path, key: str, records: Sequence[Record]) -> DecodedImages | None:
    array_path, index_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not (array_path.is_file() and index_path.is_file()):
        return None
    try:
        index = json.loads(index_path.read_text())
        pixels = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    by_path = {r.path: r for r in records}
    good = [by_path[p] for p in index["paths"] if p in by_path]
    if len(good) != len(pixels):
        return None
    return DecodedImages(good, pixels, [DecodeFailure(**f) for f in index["failures"]])
