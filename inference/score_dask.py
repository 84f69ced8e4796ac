"""``longteng score --engine dask``: the same scoring function, one partition per Dask task.

Each task scores a partition of consecutive photos with :func:`score_stream` (decoding inline:
a Dask worker is already its own process) and writes the partition's rows as one journal
part on the shared filesystem, so a killed job resumes like a local one. Each worker process
keeps one onnxruntime session per model (module-level cache), loaded by its first task.

Paths must mean the same file on every worker: a shared filesystem mounted at the same place.
Dask is the optional extra ``longteng[dask]``; nothing here imports it until a run asks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from longteng.errors import ConfigError
from longteng.inference.journal import write_part
from longteng.inference.predict import PredictOptions, Predictor
from longteng.inference.score import InlineExecutor, ScoreOptions, ScoreStats, score_stream

# Worker-process cache: loading a session costs far more than scoring one partition.
_PREDICTORS: dict[tuple, Predictor] = {}


def require_dask() -> None:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise ConfigError("--engine dask needs Dask: pip install 'longteng[dask]'") from None


def score_partition(entries: list, model_path: str, options: ScoreOptions, journal_dir: str) -> ScoreStats:
    """Score one partition and write it as one journal part (runs on a Dask worker)."""
    key = (model_path, options.threads, options.device, options.batch_size, options.max_pixels)
    predictor = _PREDICTORS.get(key)
    if predictor is None:
        predictor = _PREDICTORS[key] = Predictor(model_path, PredictOptions(
            threads=options.threads, device=options.device, batch_size=options.batch_size, max_pixels=options.max_pixels,
        ))
    stats = ScoreStats()
    rows = list(score_stream(entries, predictor, InlineExecutor(), options, stats))
    write_part(Path(journal_dir), rows)
    return stats


def partitions(entries: Iterable[tuple[int, object]], size: int) -> Iterator[list]:
    """Runs of consecutive indices, at most ``size`` long (a part must cover one index range)."""
    chunk: list = []
    for index, entry in entries:
        if chunk and (len(chunk) == size or index != chunk[-1][0] + 1):
            yield chunk
            chunk = []
        chunk.append((index, entry))
    if chunk:
        yield chunk


def run_dask(
    entries: Iterable[tuple[int, object]],
    model_path: Path,
    options: ScoreOptions,
    journal_dir: Path,
    scheduler: str | None,
    stats: ScoreStats,
    progress: Callable[[int], None],
) -> None:
    import dask
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        # One single-threaded worker process per core, each with a one-thread session: the
        # cores are shared by processes rather than oversubscribed by threads.
        options = _with_threads(options, options.threads or 1)
        with dask.config.set({
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 65536,
            "distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 1,
        }):
            cluster = LocalCluster(
                n_workers=options.worker_count, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=50,
            )
    try:
        client = Client(cluster if cluster is not None else scheduler)
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise ConfigError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    try:
        worker_slots = max(1, sum(client.nthreads().values()))
        pending = as_completed()
        source = partitions(entries, options.part_size)
        sizes = {}
        model, folder = os.fspath(Path(model_path).resolve()), os.fspath(Path(journal_dir).resolve())

        def submit_next() -> bool:
            chunk = next(source, None)
            if chunk is None:
                return False
            future = client.submit(score_partition, chunk, model, options, folder, pure=False)
            sizes[future.key] = len(chunk)
            pending.add(future)
            return True

        # Two partitions per worker in flight: enough to keep each busy, and discovery never
        # runs far ahead of scoring.
        for _ in range(2 * worker_slots):
            if not submit_next():
                break
        for future in pending:
            stats.add(future.result())
            progress(sizes.pop(future.key))
            future.release()
            submit_next()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _with_threads(options: ScoreOptions, threads: int) -> ScoreOptions:
    from dataclasses import replace

    return replace(options, threads=threads)
