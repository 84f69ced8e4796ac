"""`longteng station export-dataset`: reviewed photos as a dataset in the project's own format,
ready for ``longteng train --init``: this is how new seizures reach the next model.

The expert's decision is the label; the product is the model's (the expert confirmed or
corrected the authenticity of that product). Splits are drawn per case from a hash of the
case id, so the photos of one seizure never straddle train and test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from longteng.data.layout import MANIFEST_NAME, Record, write_manifest
from longteng.errors import ConfigError
from longteng.station.db import Database

EXTRA_COLUMNS = ("reviewed_by", "reviewed_at", "review_note", "model_verdict", "model_version")
# Fractions of cases per split: enough validation cases to calibrate on.
_SPLIT_EDGES = ((0.7, "train"), (0.85, "val"), (1.0, "test"))


@dataclass(frozen=True)
class ExportSummary:
    photos: int
    cases: int
    out: Path


def split_of(case_id: str) -> str:
    fraction = int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return next(split for edge, split in _SPLIT_EDGES if fraction < edge)


def export_dataset(data_dir: Path | str, out: Path | str) -> ExportSummary:
    out = Path(out)
    if (out / MANIFEST_NAME).exists():
        raise ConfigError(f"{out}: already holds a dataset; choose another OUT")
    if not (Path(data_dir) / "station.sqlite3").is_file():
        raise ConfigError(f"--data {data_dir}: no station database here")
    db = Database(data_dir)
    rows = db.query(
        "SELECT photos.*, reviews.decision, reviews.note, reviews.created_at AS reviewed_at, users.name AS expert "
        "FROM reviews JOIN photos ON photos.id = reviews.photo_id JOIN users ON users.id = reviews.expert_id "
        "WHERE reviews.id IN (SELECT MAX(id) FROM reviews GROUP BY photo_id) AND photos.status = 'scored' ORDER BY photos.id"
    )
    records: list[Record] = []
    try:
        for row in rows:
            result = json.loads(row["result"])
            authenticity = "counterfeit" if row["decision"] == "COUNTERFEIT" else "genuine"
            product = result["product"]
            relative = f"{product}/{authenticity}/{row['sha256']}{Path(row['stored']).suffix}"
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(db.dir / "photos" / row["stored"], target)
            records.append(Record(relative, product, authenticity, row["case_id"], split_of(row["case_id"]), row["sha256"], {
                "reviewed_by": row["expert"], "reviewed_at": row["reviewed_at"], "review_note": row["note"],
                "model_verdict": result.get("verdict") or "", "model_version": result.get("model_version") or "",
            }))
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, records, extra_columns=EXTRA_COLUMNS)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the dataset ({exc.strerror or exc})") from None
    return ExportSummary(len(records), len({r.case_id for r in records}), out)


__all__ = ["ExportSummary", "export_dataset", "split_of"]
