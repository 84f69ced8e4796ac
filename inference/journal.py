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
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longteng.errors import ConfigError, OutputError
from longteng.inference.records import csv_cell
from longteng.inference.score import SCHEMA_VERSION, field_type

FORMATS = (".csv", ".jsonl", ".parquet")
_HEADER = "journal.json"
_PART_PREFIX = "part-"
_TMP_SUFFIX = ".tmp"
_LOCK = "lock"
_TRAILER = "#longteng-journal "
_DAMAGED = object()  # _read_header's answer for a header that fails its check
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
        self.set_aside: list[SetAside] = []
        self._aside_dir: Path | None = None
        self._lock_file = None

    def open(self) -> None:
        """Create (or check) the journal and lock it for this process.

        Raises ConfigError if it cannot be written, belongs to another model or is locked by
        another run. Whatever in it is damaged (a header or a part that fails its checksum) is
        set aside, named in ``set_aside``, and its photos are scored again.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            header = self._read_header()
            if header is _DAMAGED:
                self._set_aside_all()
            elif header is not None and header != self.header:
                raise ConfigError(
                    f"{self.dir}: holds results of another model or schema "
                    f"({header.get('model_version')}); delete it or choose another --out"
                )
            if header is None or header is _DAMAGED:
                _write_atomic(self.dir / _HEADER, _with_trailer(json.dumps(self.header, sort_keys=True).encode() + b"\n"))
            for trash in self.dir.parent.glob(glob.escape(self.dir.name) + ".removing-*"):
                shutil.rmtree(trash, ignore_errors=True)  # a removal that a kill interrupted
            for leftover in self.dir.glob(f"*{_TMP_SUFFIX}"):
                leftover.unlink(missing_ok=True)  # a part that a kill interrupted; its rows are redone
            for part in self.parts():
                try:
                    _check_trailer(part)  # checksum and row count only: the rows are parsed once, later
                except DamagedPart as exc:
                    self._set_aside(part, exc.reason)
            probe = self.dir / f"probe-{os.getpid()}{_TMP_SUFFIX}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self.close()
            raise ConfigError(f"{self.out}: cannot write results here ({exc.strerror or exc})") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the lock (also when the process dies: the OS drops it)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _lock(self) -> None:
        import fcntl

        handle = open(self.dir / _LOCK, "a+", encoding="ascii")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ConfigError(
                f"{self.out}: another longteng score (pid {holder}) is writing these results; "
                "wait for it to finish or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    def _read_header(self) -> dict[str, Any] | None | object:
        path = self.dir / _HEADER
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            header = json.loads(_split_trailer(data, path)[0].decode("utf-8"))
            if not isinstance(header, dict):
                raise DamagedPart(path, "not a JSON object")
        except (DamagedPart, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._set_aside(path, exc.reason if isinstance(exc, DamagedPart) else "not JSON")
            return _DAMAGED
        return header

    def _set_aside_all(self) -> None:
        """A damaged header cannot say which model wrote the parts: all of them are set aside."""
        for part in self.parts():
            self._set_aside(part, "written under a damaged header")

    def _set_aside(self, path: Path, reason: str) -> None:
        """Move a damaged journal file out of the journal (kept for inspection, never read again)."""
        if self._aside_dir is None:
            self._aside_dir = self.dir.with_name(f"{self.dir.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
            self._aside_dir.mkdir(exist_ok=True)
        moved = self._aside_dir / path.name
        os.replace(path, moved)
        self.set_aside.append(SetAside(path, reason, moved))

    def parts(self) -> list[Path]:
        return sorted(p for p in self.dir.glob(f"{_PART_PREFIX}*.jsonl"))

    def done(self) -> dict[str, tuple[int | None, int | None]]:
        """path -> (size, mtime_ns) of every journaled row (the newest part wins)."""
        return {row["path"]: (row.get("size"), row.get("mtime_ns")) for row in self._rows_by_age()}

    def write(self, rows: Sequence[dict[str, Any]]) -> Path | None:
        try:
            return write_part(self.dir, rows)
        except OSError as exc:
            raise OutputError(
                f"{self.dir}: cannot write a journal part ({exc.strerror or exc}); "
                "the rows journaled so far are kept, rerun the same command to resume"
            ) from exc

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

        try:
            return write_results(self.out, fields, winning_rows())
        except DamagedPart as exc:
            raise OutputError(f"{exc.path}: journal part damaged while scoring ({exc.reason}); rerun to score its photos again") from exc
        except OSError as exc:
            raise OutputError(
                f"{self.out}: cannot write the results file ({exc.strerror or exc}); "
                f"the journal {self.dir} is kept, rerun the same command to finish"
            ) from exc

    def _rows_by_age(self) -> Iterator[dict[str, Any]]:
        for part in sorted(self.parts(), key=_part_age):
            yield from read_part(part)

    def remove(self) -> None:
        # Renamed first, so a kill during the removal never leaves a half-deleted journal
        # that a rerun would mistake for a half-finished one.
        trash = self.dir.with_name(self.dir.name + f".removing-{os.getpid()}")
        os.replace(self.dir, trash)
        shutil.rmtree(trash, ignore_errors=True)
        self.close()


def write_part(directory: Path, rows: Sequence[dict[str, Any]]) -> Path | None:
    """One part file, complete or absent: temp file, fsync, rename, fsync of the folder.

    Named by its first row's index then the time, so that sorting names gives discovery order.
    Its last line is a trailer with the row count and the sha256 of the lines before it, so
    a part damaged later (a disk error, a stray write) is detected and scored again.
    """
    if not rows:
        return None
    name = f"{_PART_PREFIX}{rows[0]['index']:012d}-{time.time_ns():020d}-{os.getpid()}.jsonl"
    body = "".join(json.dumps(row, ensure_ascii=True, allow_nan=False) + "\n" for row in rows)
    path = Path(directory) / name
    _write_atomic(path, _with_trailer(body.encode("ascii")))
    return path


class DamagedPart(Exception):
    """A journal file that fails its checksum; ``reason`` says how."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class SetAside:
    """A damaged journal file, and where it was moved to."""

    path: Path
    reason: str
    moved_to: Path


def read_part(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a part; raises DamagedPart if it fails its checksum (a vanished part has none)."""
    try:
        rows = _read_verified(path)
    except FileNotFoundError:
        return
    yield from rows


def _check_trailer(path: Path) -> bytes:
    """The part's lines, after checking them against its trailer (sha256 and row count)."""
    body, count = _split_trailer(path.read_bytes(), path)
    lines = body.count(b"\n")
    if lines != count:
        raise DamagedPart(path, f"{lines} rows, its trailer says {count}")
    return body


def _read_verified(path: Path) -> list[dict[str, Any]]:
    body = _check_trailer(path)
    try:
        rows = [json.loads(line) for line in body.decode("ascii").splitlines()]
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DamagedPart(path, "rows are not JSON Lines") from None
    if not all(isinstance(row, dict) and "path" in row for row in rows):
        raise DamagedPart(path, "a row without a path")
    return rows


def _with_trailer(body: bytes) -> bytes:
    rows = body.count(b"\n")
    return body + f"{_TRAILER}rows={rows} sha256={hashlib.sha256(body).hexdigest()}\n".encode("ascii")


def _split_trailer(data: bytes, path: Path) -> tuple[bytes, int]:
    """(the lines before the trailer, the row count it declares), checked against its sha256."""
    body, separator, trailer = data.rstrip(b"\n").rpartition(b"\n")
    if not separator:
        body, trailer = b"", data.rstrip(b"\n")
    else:
        body += b"\n"
    if not trailer.startswith(_TRAILER.encode()):
        raise DamagedPart(path, "no checksum trailer (truncated, overwritten or from an older longteng)")
    try:
        fields = dict(item.split(b"=", 1) for item in trailer[len(_TRAILER):].split(b" "))
        expected = fields[b"sha256"].decode("ascii")
        count = int(fields[b"rows"])
    except (KeyError, ValueError, UnicodeDecodeError):
        raise DamagedPart(path, "unreadable checksum trailer") from None
    if hashlib.sha256(body).hexdigest() != expected:
        raise DamagedPart(path, "checksum mismatch")
    return body, count


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
        # CSV has no null text: these are "" on scored rows and null on error rows.
        for name in ("refer_reason", "text_evidence", "novelty_evidence", "aligned_evidence", "artwork_evidence"):
            if name in row:
                row[name] = None if row.get("error_reason") else (row[name] or "")
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
