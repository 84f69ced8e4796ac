"""The dataset format: ROOT/<product>/<genuine|counterfeit>/<image> plus an optional manifest.csv.

See datasets/README.md for the user-facing description.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from longteng.errors import DatasetError
from longteng.imageio import is_image_path

MANIFEST_NAME = "manifest.csv"
AUTHENTICITIES = ("genuine", "counterfeit")
SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("path", "product", "authenticity")
STANDARD_COLUMNS = ("path", "product", "authenticity", "case_id", "split", "sha256")
# Fractions of cases per split when the manifest does not say.
DEFAULT_SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class Record:
    """One photo of a dataset. `path` is relative to the dataset root, with / separators."""

    path: str
    product: str
    authenticity: str
    case_id: str
    split: str
    sha256: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return class_name(self.product, self.authenticity)

    @property
    def is_counterfeit(self) -> bool:
        return self.authenticity == "counterfeit"

    def tells(self) -> dict[str, float]:
        return parse_tells(self.extra.get("tells", ""))


def class_name(product: str, authenticity: str) -> str:
    return f"{product}/{authenticity}"


def split_class_name(name: str) -> tuple[str, str]:
    product, _, authenticity = name.rpartition("/")
    return product, authenticity


def format_tells(tells: Mapping[str, float]) -> str:
    """{'glyph_swap': 0.5} -> 'glyph_swap:0.50' (semicolon-separated, sorted)."""
    return ";".join(f"{name}:{strength:.2f}" for name, strength in sorted(tells.items()))


def parse_tells(text: str) -> dict[str, float]:
    tells: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, strength = item.partition(":")
        try:
            tells[name] = float(strength) if strength else 1.0
        except ValueError:
            raise DatasetError(f"malformed tell {item!r}: expected name:strength") from None
    return tells


def split_for_case(case_id: str, fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """Deterministic split of a case from a hash of its id.

    A case keeps its split when the dataset grows, so a retrained model is never tested
    on a shipment it was trained on.
    """
    digest = hashlib.sha256(case_id.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for split, fraction in zip(SPLITS, fractions):
        cumulative += fraction
        if position < cumulative:
            return split
    return SPLITS[-1]


def sha256_file(path: Path | str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def scan_dataset(root: Path | str) -> list[Record]:
    """All records of a dataset, from manifest.csv when present, else from the folders."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a directory")
    manifest = root / MANIFEST_NAME
    records = read_manifest(manifest) if manifest.is_file() else list(_scan_folders(root))
    if not records:
        raise DatasetError(
            f"{root}: no images found; expected ROOT/<product>/<genuine|counterfeit>/<image> or {MANIFEST_NAME}"
        )
    return records


def read_manifest(manifest: Path) -> list[Record]:
    try:
        handle = open(manifest, newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{manifest}: cannot read manifest ({exc.strerror or exc})") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [column for column in REQUIRED_COLUMNS if column not in columns]
        if missing:
            raise DatasetError(f"{manifest}: missing required column(s): {', '.join(missing)}")
        records = []
        for line_number, row in enumerate(reader, start=2):
            records.append(_record_from_row(row, manifest, line_number))
    return records


def _record_from_row(row: dict[str, str], manifest: Path, line_number: int) -> Record:
    path = (row.get("path") or "").strip().replace("\\", "/")
    product = (row.get("product") or "").strip()
    authenticity = (row.get("authenticity") or "").strip().lower()
    where = f"{manifest}:{line_number}"
    if not path or not product:
        raise DatasetError(f"{where}: empty path or product")
    if authenticity not in AUTHENTICITIES:
        raise DatasetError(f"{where}: authenticity {authenticity!r} must be one of {', '.join(AUTHENTICITIES)}")
    if "/" in product:
        raise DatasetError(f"{where}: product {product!r} must not contain '/'")
    # Without a case id each photo is its own case (see datasets/README.md for why that flatters metrics).
    case_id = (row.get("case_id") or "").strip() or f"photo:{path}"
    split = (row.get("split") or "").strip().lower() or split_for_case(case_id)
    if split not in SPLITS:
        raise DatasetError(f"{where}: split {split!r} must be one of {', '.join(SPLITS)}")
    extra = {k: v for k, v in row.items() if k not in STANDARD_COLUMNS and k is not None and v is not None}
    return Record(path, product, authenticity, case_id, split, (row.get("sha256") or "").strip(), extra)


def _scan_folders(root: Path) -> Iterator[Record]:
    for product_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for authenticity in AUTHENTICITIES:
            folder = product_dir / authenticity
            if not folder.is_dir():
                continue
            for path in sorted(_walk_files(folder)):
                relative = path.relative_to(root).as_posix()
                case_id = f"photo:{relative}"
                yield Record(relative, product_dir.name, authenticity, case_id, split_for_case(case_id))


def _walk_files(folder: Path) -> Iterator[Path]:
    # followlinks=False: a symlink loop in a user's archive must not hang the scan.
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and is_image_path(name):
                yield Path(directory) / name


def write_manifest(root: Path | str, records: Iterable[Record], extra_columns: Sequence[str] = ()) -> Path:
    """Write ROOT/manifest.csv atomically (temp file + rename)."""
    root = Path(root)
    target = root / MANIFEST_NAME
    temporary = target.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*STANDARD_COLUMNS, *extra_columns])
        for r in records:
            writer.writerow(
                [r.path, r.product, r.authenticity, r.case_id, r.split, r.sha256]
                + [r.extra.get(column, "") for column in extra_columns]
            )
    os.replace(temporary, target)
    return target


def manifest_hash(records: Iterable[Record]) -> str:
    """Content hash of what a model was trained on (paths, labels, splits, file hashes)."""
    digest = hashlib.sha256()
    for r in sorted(records, key=lambda rec: rec.path):
        digest.update("\x1f".join((r.path, r.label, r.case_id, r.split, r.sha256)).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def class_names(records: Iterable[Record]) -> list[str]:
    """Sorted 'product/authenticity' names: the model's output order."""
    return sorted({r.label for r in records})
