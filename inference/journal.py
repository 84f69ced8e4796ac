"""Crash-safe results for ``longteng score``: a journal of parts, then one results file.

While scoring, rows go to ``RESULTS.parts/`` (next to ``RESULTS``) in small JSON Lines part
files, each written to a temporary name, fsynced and renamed: a part is either complete or
absent, whenever the process is killed (``kill -9``, power loss). A rerun of the same command
reads the parts, skips every photo whose path, size and mtime match a journaled row, and
scores the rest. At the end the results file is assembled from the parts, again through a
temporary file and an atomic rename, and the parts folder is removed.

No row is lost or duplicated across any number of kills: each row reaches the results file
only through a part, parts never overlap in what a run scores, and when a photo changed
between runs (new size or mtime) only its newest row is kept.

Output formats, chosen by the extension of ``RESULTS``:

* ``.csv``: opens in a spreadsheet; fine up to a few hundred thousand rows. UTF-8 with
  ``surrogateescape`` (undecodable name bytes come back exactly), empty cell = null.
* ``.jsonl``: one JSON object per line, typed (numbers, booleans, null); streams into ``jq``,
  pandas ``read_json(lines=True)`` or a log pipeline; appends and greps well.
* ``.parquet``: columnar, compressed and typed; for millions of rows and for analysis in
  pandas, Polars, DuckDB or Spark. Needs pyarrow (``pip install 'longteng[dask]'``).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from longteng.errors import ConfigError
from longteng.inference.records import csv_cell
from longteng.inference.score import SCHEMA_VERSION, field_type

FORMATS = (".csv", ".jsonl", ".parquet")
_HEADER = "journal.json"
_PART_PREFIX = "part-"
_TMP_SUFFIX = ".tmp"
_PARQUET_ROWS = 4096


def results_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{path}: unknown results format {suffix or '(none)'!r}; use {', '.join(FORMATS)}")
    return suffix


def require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError("Parquet output needs pyarrow: pip install 'longteng[dask]' (or pyarrow)") from None


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


class Journal:
    """The parts folder of one results file.

    ``header`` (model version and columns) is written on first use and checked on every
    rerun: mixing rows of two models in one file would make the file meaningless.
    """

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = Path(out)
        self.dir = parts_dir(self.out)
        self.header = {"schema_version": SCHEMA_VERSION, **header}

    def open(self) -> None:
        """Create (or check) the journal; raises ConfigError if it cannot be written or belongs to another model."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            header_path = self.dir / _HEADER
            if header_path.exists():
                existing = json.loads(header_path.read_text(encoding="utf-8"))
                if existing != self.header:
                    raise ConfigError(
                        f"{self.dir}: holds results of another model or schema "
                        f"({existing.get('model_version')}); delete it or choose another --out"
                    )
            else:
                _write_atomic(header_path, json.dumps(self.header, sort_keys=True).encode())
            for trash in self.dir.parent.glob(glob.escape(self.dir.name) + ".removing-*"):
                shutil.rmtree(trash, ignore_errors=True)  # a removal that a kill interrupted
            for leftover in self.dir.glob(f"*{_TMP_SUFFIX}"):
                leftover.unlink(missing_ok=True)  # a part that a kill interrupted; its rows are redone
            probe = self.dir / f"probe-{os.getpid()}{_TMP_SUFFIX}"
            probe.write_bytes(b"")
            probe.unlink()
        except json.JSONDecodeError:
            raise ConfigError(f"{self.dir}/{_HEADER}: unreadable journal header; delete {self.dir}") from None
        except OSError as exc:
            raise ConfigError(f"{self.out}: cannot write results here ({exc.strerror or exc})") from None

    def parts(self) -> list[Path]:
        return sorted(p for p in self.dir.glob(f"{_PART_PREFIX}*.jsonl"))

    def rows(self) -> Iterator[dict[str, Any]]:
        for part in self.parts():
            yield from read_part(part)

    def done(self) -> dict[str, tuple[int | None, int | None]]:
        """path -> (size, mtime_ns) of every journaled row (the newest part wins)."""
        return {row["path"]: (row.get("size"), row.get("mtime_ns")) for row in self._rows_by_age()}

    def write(self, rows: Sequence[dict[str, Any]]) -> Path | None:
        return write_part(self.dir, rows)

    def assemble(self, fields: Sequence[str], on_row: Callable[[dict[str, Any]], None] | None = None) -> int:
        """Write the results file from the parts (atomically), in discovery order; return its row count.

        Two passes keep memory to one entry per path: the first finds the newest part of each
        path, the second streams the rows that won.
        """
        winner: dict[str, str] = {}
        for part in sorted(self.parts(), key=_part_age):
            for row in read_part(part):
                winner[row["path"]] = part.name

        def winning_rows() -> Iterator[dict[str, Any]]:
            for part in self.parts():
                for row in read_part(part):
                    if winner.get(row["path"]) == part.name:
                        del winner[row["path"]]  # a path repeated inside one part counts once
                        if on_row is not None:
                            on_row(row)
                        yield row

        return write_results(self.out, fields, winning_rows())

    def remove(self) -> None:
        # Renamed first, so a kill during the removal never leaves a half-deleted journal
        # that a rerun would mistake for a half-finished one.
        trash = self.dir.with_name(self.dir.name + f".removing-{os.getpid()}")
        os.replace(self.dir, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _rows_by_age(self) -> Iterator[dict[str, Any]]:
        for part in sorted(self.parts(), key=_part_age):
            yield from read_part(part)


def write_part(directory: Path, rows: Sequence[dict[str, Any]]) -> Path | None:
    """One part file, complete or absent: temp file, fsync, rename, fsync of the folder.

    Named by its first row's index then the time, so that sorting names gives discovery order.
    """
    if not rows:
        return None
    name = f"{_PART_PREFIX}{rows[0]['index']:012d}-{time.time_ns():020d}-{os.getpid()}.jsonl"
    body = "".join(json.dumps(row, ensure_ascii=True, allow_nan=False) + "\n" for row in rows)
    path = Path(directory) / name
    _write_atomic(path, body.encode("ascii"))
    return path


def read_part(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with open(path, encoding="ascii") as handle:
            lines = handle.readlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # cannot happen with atomic parts; a damaged line is redone, not fatal
        if isinstance(row, dict) and "path" in row:
            yield row


def _part_age(part: Path) -> tuple[int, str]:
    stem = part.stem.split("-")
    return (int(stem[2]) if len(stem) > 2 and stem[2].isdigit() else 0, part.name)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some filesystems (and Windows) cannot open a folder; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- results files ----------------------------------------------------------------------


def write_results(out: Path, fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> int:
    """Stream ``rows`` (only ``fields``) into ``out`` in its format, atomically; return the count."""
    fmt = results_format(out)
    tmp = out.with_name(out.name + _TMP_SUFFIX)
    try:
        if fmt == ".parquet":
            count = _write_parquet(tmp, fields, rows)
        else:
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
                count = (_write_csv if fmt == ".csv" else _write_jsonl)(handle, fields, rows)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)
    return count


def _write_jsonl(handle, fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    for row in rows:
        handle.write(json.dumps({name: row.get(name) for name in fields}, ensure_ascii=True, allow_nan=False) + "\n")
        count += 1
    return count


def _write_csv(handle, fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> int:
    writer = csv.writer(handle)
    writer.writerow(fields)
    count = 0
    for row in rows:
        writer.writerow([csv_cell(row.get(name)) for name in fields])
        count += 1
    return count




def arrow_schema(fields: Sequence[str]):
    """Explicit types, so a part without any error row still gives ``error`` a string type."""
    import pyarrow as pa

    types = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "str": pa.string()}
    return pa.schema([pa.field(name, types[field_type(name)]) for name in fields])


def _write_parquet(tmp: Path, fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(fields)
    count = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append({name: _arrow_value(row.get(name)) for name in fields})
            if len(batch) == _PARQUET_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    return count


def _arrow_value(value: Any) -> Any:
    # Undecodable name bytes (lone surrogates) cannot be UTF-8; Parquet strings must be.
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file, typed as in the schema (for tests and quick analysis)."""
    fmt = results_format(path)
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if fmt == ".jsonl":
        with open(path, encoding="ascii") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        rows = [{name: _parse(name, value) for name, value in row.items()} for row in csv.DictReader(handle)]
    for row in rows:
        # CSV has no null text: refer_reason is "" on scored rows and null on error rows.
        if "refer_reason" in row:
            row["refer_reason"] = None if row.get("error_reason") else (row["refer_reason"] or "")
    return rows


def _parse(name: str, text: str) -> Any:
    kind = field_type(name)
    if kind == "str":
        # CSV cannot tell null from "": error and error_detail are never null ("" = scored).
        return text if text or name in ("error_reason", "error_detail") else None
    if text == "":
        return None
    if kind == "float":
        return float(text)
    if kind == "int":
        return int(text)
    return text == "true"
