"""synthesize(): plan the dataset, render photos in worker processes, write the manifest.

Workers write the JPEG files; the parent collects their facts in image order and writes
manifest.csv last, so an interrupted run never leaves a manifest that lies.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from longteng.workers import owned_pool
from longteng.data.layout import AUTHENTICITIES, MANIFEST_NAME, SPLITS, Record, format_tells, write_manifest
from longteng.data.synth.config import SINGLE_ITEM, SynthConfig
from longteng.data.synth.designs import ALL_PRODUCTS
from longteng.data.synth.photo import make_photo
from longteng.data.synth.plan import ImagePlan, plan_dataset
from longteng.errors import ConfigError, DatasetError

CONFIG_NAME = "synth_config.json"
EXTRA_COLUMNS = ("tells", "difficulty", "seed", "background", "lighting", "jpeg_quality", "params", "quad", "evidence")
# Written only for photos of several items (--items-per-photo), so that one-item output is as before.
ITEMS_COLUMN = "items"
# Photos handed to a worker at a time: large enough to amortise inter-process traffic,
# small enough to keep the progress bar moving.
_CHUNK_SIZE = 4


@dataclass(frozen=True)
class SynthSummary:
    out: Path
    images: int
    genuine: int
    counterfeit: int
    cases: int
    images_per_split: dict[str, int]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class _Written:
    index: int
    sha256: str
    tells: str
    background: str
    lighting: str
    jpeg_quality: int
    params: str
    quad: str
    evidence: str
    items: str


def synthesize(
    config: SynthConfig,
    out: Path,
    *,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic seizure-photo dataset to `out`; `progress(n)` is told of n new photos.

    The files depend only on `config`: the same config gives byte-identical output for
    any number of workers. `out` must be new, empty, or an earlier synth output (replaced).
    """
    if workers < 1:
        raise ConfigError(f"workers (--workers) must be at least 1, got {workers}")
    started = time.perf_counter()
    out = Path(out)
    _prepare_output(out)
    (out / CONFIG_NAME).write_text(config.to_json(), encoding="utf-8")
    plans = plan_dataset(config)
    for product in config.products:
        for authenticity in AUTHENTICITIES:
            (out / product / authenticity).mkdir(parents=True, exist_ok=True)

    written: dict[int, _Written] = {}
    for result in _run(config, out, plans, workers):
        written[result.index] = result
        if progress is not None:
            progress(1)

    records = [_record(plan, written[plan.index], config) for plan in plans]
    several = config.items_per_photo != SINGLE_ITEM
    write_manifest(out, records, (*EXTRA_COLUMNS, ITEMS_COLUMN) if several else EXTRA_COLUMNS)
    counts = Counter(plan.authenticity for plan in plans)
    return SynthSummary(
        out=out,
        images=len(plans),
        genuine=counts["genuine"],
        counterfeit=counts["counterfeit"],
        cases=len({plan.case.case_id for plan in plans}),
        images_per_split={split: sum(plan.case.split == split for plan in plans) for split in SPLITS},
        seconds=time.perf_counter() - started,
    )


def _run(config: SynthConfig, out: Path, plans: list[ImagePlan], workers: int) -> Iterator[_Written]:
    if workers == 1 or len(plans) <= _CHUNK_SIZE:
        for plan in plans:
            yield _write_photo(config, out, plan)
        return
    # spawn: the same behaviour on every platform, and no fork of a threaded parent.
    with owned_pool(workers, "spawn") as pool:
        count = len(plans)
        yield from pool.map(_write_photo, [config] * count, [out] * count, plans, chunksize=_CHUNK_SIZE)


def _write_photo(config: SynthConfig, out: Path, plan: ImagePlan) -> _Written:
    photo = make_photo(config, plan)
    target = out / plan.path
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_bytes(photo.jpeg)
        os.replace(temporary, target)
    except OSError as exc:
        raise DatasetError(f"{target}: cannot write photo ({exc.strerror or exc})") from None
    return _Written(
        index=plan.index,
        sha256=hashlib.sha256(photo.jpeg).hexdigest(),
        tells=format_tells(photo.tells),
        background=photo.background,
        lighting=photo.lighting,
        jpeg_quality=photo.jpeg_quality,
        params=photo.params,
        quad=photo.quad,
        evidence=photo.evidence,
        items=photo.items,
    )


def _record(plan: ImagePlan, written: _Written, config: SynthConfig) -> Record:
    return Record(
        path=plan.path,
        product=plan.case.product,
        authenticity=plan.authenticity,
        case_id=plan.case.case_id,
        split=plan.case.split,
        sha256=written.sha256,
        extra={
            "tells": written.tells,
            "difficulty": config.difficulty,
            "seed": str(config.seed),
            "background": written.background,
            "lighting": written.lighting,
            "jpeg_quality": str(written.jpeg_quality),
            "params": written.params,
            "quad": written.quad,
            "evidence": written.evidence,
            **({ITEMS_COLUMN: written.items} if config.items_per_photo != SINGLE_ITEM else {}),
        },
    )


def _prepare_output(out: Path) -> None:
    """Accept a new or empty folder, or replace an earlier synth output; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"OUT {out}: exists and is not a directory")
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not any(out.iterdir()):
        return
    if not (out / CONFIG_NAME).is_file():
        raise DatasetError(
            f"OUT {out}: directory is not empty and is not an earlier synth output (no {CONFIG_NAME}); "
            "choose a new or empty directory"
        )
    _remove_previous_output(out)


def _remove_previous_output(out: Path) -> None:
    """Delete only what an earlier run wrote: its photos, manifest and config."""
    for product in ALL_PRODUCTS:
        for authenticity in AUTHENTICITIES:
            folder = out / product / authenticity
            if not folder.is_dir():
                continue
            for path in folder.glob("synth-*.jpg*"):
                path.unlink()
    for name in (MANIFEST_NAME, MANIFEST_NAME.replace(".csv", ".csv.tmp"), CONFIG_NAME):
        (out / name).unlink(missing_ok=True)
