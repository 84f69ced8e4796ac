"""A whole ``longteng score`` run: fatal checks first, then resume, engine, journal, results.

Library code: raises typed errors, reports progress through callbacks, prints nothing.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longteng.decision import COUNTERFEIT
from longteng.errors import ConfigError
from longteng.inference.discover import DiscoveryError
from longteng.inference.journal import Journal, require_pyarrow, results_format
from longteng.inference.predict import PredictOptions, Predictor
from longteng.workers import owned_pool
from longteng.inference.score import ScoreOptions, ScoreStats, resume_key, score_fields, score_stream

ENGINES = ("local", "dask")
# A part is also written after this long, so a slow archive loses little to a kill.
_PART_SECONDS = 5.0

Entry = tuple[int, "Path | DiscoveryError"]


@dataclass
class ScoreSummary:
    """What the results file holds, counted while it is assembled."""

    rows: int = 0
    verdicts: Counter = field(default_factory=Counter)
    products: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    counterfeit_folders: Counter = field(default_factory=Counter)

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        if row.get("error_reason"):
            self.errors[row["error_reason"]] += 1
            return
        self.verdicts[row["verdict"]] += 1
        self.products[row["product"]] += 1
        if row["verdict"] == COUNTERFEIT:
            self.counterfeit_folders[os.path.dirname(row["path"])] += 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass
class ScoreResult:
    stats: ScoreStats
    summary: ScoreSummary
    skipped: int  # rows already in the journal from an earlier, interrupted run


class ScoreJob:
    """Everything fatal happens in the constructor, before the first photo is touched."""

    def __init__(self, model_path: Path, out: Path, options: ScoreOptions, engine: str = "local",
                 scheduler: str | None = None) -> None:
        if engine not in ENGINES:
            raise ConfigError(f"engine {engine!r} unknown; allowed: {', '.join(ENGINES)}")
        if scheduler is not None and engine != "dask":
            raise ConfigError("--scheduler needs --engine dask")
        self.out = Path(out)
        if results_format(self.out) == ".parquet":
            require_pyarrow()
        if engine == "dask":
            from longteng.inference.score_dask import require_dask

            require_dask()
        self.options = options
        self.engine = engine
        self.scheduler = scheduler
        self.model_path = Path(model_path)
        # Dask workers load their own sessions; this one only checks the model and serves the
        # local engine (or gives the metadata).
        # The decode processes and the session share the cores: the session may use all of
        # them, but its idle threads must not spin while the decoders need the CPU
        # (bench/bench_score.py measured both).
        threads = (options.threads or os.cpu_count() or 1) if engine == "local" else options.threads
        self.predictor = Predictor(self.model_path, PredictOptions(
            threads=threads, device=options.device, batch_size=options.batch_size, max_pixels=options.max_pixels,
            spin=engine != "local",
        ))
        self.metadata = self.predictor.metadata
        self.fields = score_fields(self.metadata.decision_classes, self.metadata.finds_items)
        if self.out.is_dir():
            raise ConfigError(f"{self.out}: is a folder; --out names the results file")
        self.journal = Journal(self.out, {"model_version": self.metadata.model_version, "fields": list(self.fields)})
        self.journal.open()

    def run(self, entries: Iterable[Path | DiscoveryError], progress: Callable[[int], None] | None = None) -> ScoreResult:
        """Score what the journal lacks, then assemble the results file; ``progress(n)`` per n rows done."""
        progress = progress or (lambda n: None)
        done = self.journal.done()
        skipped = 0

        def remaining() -> Iterator[Entry]:
            nonlocal skipped
            for index, entry in enumerate(entries):
                if _already_scored(entry, done):
                    skipped += 1
                    progress(1)
                    continue
                yield index, entry

        stats = ScoreStats()
        try:
            if self.engine == "local":
                self._run_local(remaining(), stats, progress)
            else:
                from longteng.inference.score_dask import run_dask

                run_dask(remaining(), self.model_path, self.options, self.journal.dir, self.scheduler, stats, progress)
            done.clear()
            summary = ScoreSummary()
            self.journal.assemble(self.fields, on_row=summary.add)
            self.journal.remove()
        finally:
            self.journal.close()
        return ScoreResult(stats, summary, skipped)

    def _run_local(self, entries: Iterator[Entry], stats: ScoreStats, progress: Callable[[int], None]) -> None:
        # forkserver: no inherited onnxruntime threads or locks in the children.
        with owned_pool(self.options.worker_count, "forkserver") as pool:
            buffer: list[dict[str, Any]] = []
            started = 0.0
            for row in score_stream(entries, self.predictor, pool, self.options, stats):
                # A part holds consecutive indices only, so sorting parts gives discovery order.
                if buffer and row["index"] != buffer[-1]["index"] + 1:
                    self.journal.write(buffer)
                    buffer = []
                if not buffer:
                    started = time.monotonic()
                buffer.append(row)
                progress(1)
                if len(buffer) >= self.options.part_size or time.monotonic() - started > _PART_SECONDS:
                    self.journal.write(buffer)
                    buffer = []
            self.journal.write(buffer)


def _already_scored(entry: Path | DiscoveryError, done: dict[str, tuple]) -> bool:
    path = os.fsdecode(entry.path if isinstance(entry, DiscoveryError) else entry)
    if path not in done:
        return False
    if isinstance(entry, DiscoveryError):
        return True
    return resume_key(entry) == done[path]
