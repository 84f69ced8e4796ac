"""`data check`: find what would silently spoil training or flatter the metrics of a dataset.

Every image is read once: its bytes give the sha256 (exact duplicates, manifest integrity)
and its decoded pixels give a perceptual hash (near duplicates). One bad file is reported
and never stops the check.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longteng.data.layout import (
    AUTHENTICITIES,
    MANIFEST_NAME,
    SPLITS,
    Record,
    class_name,
    scan_dataset,
    sha256_file,
)
from longteng.data.phash import (
    alike_thumbnails, close_pairs, colour_thumbnail, hashes_to_words, perceptual_hash, unit_thumbnails,
)
from longteng.workers import owned_pool
from longteng.errors import ConfigError, ImageLoadError, UnusableFile
from longteng.imageio import is_image_path, load_image

# pHash only needs a 32x32 grid; asking for 64 lets JPEG draft mode decode at 1/8 scale.
_DECODE_SIZE = 64
# A class with fewer images than this fraction of the largest class gets a warning.
IMBALANCE_RATIO = 1 / 3
# Case ids layout.py invents for photos without one (each photo is then its own case).
_SYNTHESISED_CASE_PREFIX = "photo:"

Progress = Callable[[int, int], None]


# A file the check could not read: the project's one type for it.
UnreadableFile = UnusableFile


@dataclass(frozen=True)
class ShaMismatch:
    path: str
    manifest: str
    actual: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos that are the same picture: identical bytes, or perceptual hashes within the threshold."""

    paths: list[str]
    splits: list[str]
    labels: list[str]
    cases: int
    cross_split: bool  # the same picture in train and val/test: the test score measures memory
    cross_label: bool  # the same picture with two labels


@dataclass
class CheckReport:
    """The findings of `check_dataset`, as plain data (see `to_dict`)."""

    root: str
    has_manifest: bool
    listed: int  # records in the manifest (or image files found in the folders)
    # Decodable images per class ("product/authenticity") and split; every split is present.
    counts: dict[str, dict[str, int]]
    unreadable: list[UnreadableFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    repeated_entries: list[str] = field(default_factory=list)
    sha256_mismatch: list[ShaMismatch] = field(default_factory=list)
    exact_duplicates: list[DuplicateGroup] = field(default_factory=list)
    near_duplicates: list[DuplicateGroup] = field(default_factory=list)
    imbalance: list[str] = field(default_factory=list)
    cases_without_id: int = 0
    near_duplicate_distance: int = 6

    @property
    def usable(self) -> int:
        return sum(sum(per_split.values()) for per_split in self.counts.values())

    @property
    def errors(self) -> list[str]:
        """Problems that make training or its metrics wrong."""
        messages = [f"{u.path}: unreadable ({u.reason}): {u.detail}" for u in self.unreadable]
        messages += [f"{path}: listed in {MANIFEST_NAME} but not on disk" for path in self.missing]
        messages += [f"{path}: listed more than once in {MANIFEST_NAME}" for path in self.repeated_entries]
        messages += [
            f"{m.path}: sha256 {m.actual[:12]}... differs from {MANIFEST_NAME} ({m.manifest[:12]}...): "
            "the file changed after the manifest was written"
            for m in self.sha256_mismatch
        ]
        for kind, groups in (("exact", self.exact_duplicates), ("near", self.near_duplicates)):
            for group in groups:
                if group.cross_split:
                    messages.append(
                        f"{kind} duplicates across splits {'/'.join(group.splits)} (test leakage): "
                        + ", ".join(group.paths)
                    )
        messages += [
            f"identical files with different labels {', '.join(g.labels)}: " + ", ".join(g.paths)
            for g in self.exact_duplicates
            if g.cross_label
        ]
        return messages

    @property
    def warnings(self) -> list[str]:
        """Problems worth a look that do not make results wrong by themselves."""
        messages = [f"{path}: image on disk but not in {MANIFEST_NAME} (training ignores it)" for path in self.unlisted]
        messages += list(self.imbalance)
        for group in self.exact_duplicates:
            if not group.cross_split:
                messages.append(f"identical files within the {group.splits[0]} split: " + ", ".join(group.paths))
        for group in self.near_duplicates:
            # Several photos of one seized item look alike by nature; only other cases are suspicious.
            if not group.cross_split and group.cases > 1:
                messages.append(
                    f"near-duplicate photos of different cases within the {group.splits[0]} split: "
                    + ", ".join(group.paths)
                )
        if self.cases_without_id:
            messages.append(self.case_id_warning())
        return messages

    def case_id_warning(self) -> str:
        return (
            f"{self.cases_without_id} of {self.listed} photos have no case_id, so each photo is its own case: "
            "photos of one seizure can land in both train and test, which inflates test metrics; "
            f"add a case_id column to {MANIFEST_NAME}"
        )

    def to_dict(self) -> dict:
        document = dataclasses.asdict(self)
        document["usable"] = self.usable
        document["errors"] = self.errors
        document["warnings"] = self.warnings
        return document


@dataclass(frozen=True)
class FileInspection:
    """What one read of one file tells: its sha256 and, when it decodes, its perceptual hash
    and colour thumbnail."""

    sha256: str = ""
    phash: bytes = b""
    thumbnail: bytes = b""
    failure: UnreadableFile | None = None


def check_dataset(
    root: Path | str,
    *,
    near_duplicate_distance: int = 6,
    workers: int = 1,
    progress: Progress | None = None,
    hash_size: int = 8,
) -> CheckReport:
    """Check the dataset at `root`; DatasetError when the root itself is unusable.

    `progress(done, total)` is called as files are hashed. `workers > 1` decodes in that many
    processes; the report does not depend on it.
    """
    if near_duplicate_distance < 0:
        raise ConfigError(f"near-duplicate distance must be >= 0, got {near_duplicate_distance}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if hash_size < 2:
        raise ConfigError(f"hash_size must be >= 2, got {hash_size}")

    root = Path(root)
    records = scan_dataset(root)
    has_manifest = (root / MANIFEST_NAME).is_file()
    records_by_path: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        records_by_path[_normalised(record.path)].append(record)

    present = [path for path in records_by_path if (root / path).exists()]
    inspections = dict(zip(present, _inspect_all(root, present, hash_size, workers, progress)))
    readable = {path: found for path, found in inspections.items() if found.failure is None}

    report = CheckReport(
        root=str(root),
        has_manifest=has_manifest,
        listed=len(records),
        counts=_counts(records_by_path, readable),
        unreadable=[found.failure for found in inspections.values() if found.failure is not None],
        missing=[path for path in records_by_path if path not in inspections],
        unlisted=_unlisted_images(root, records_by_path.keys()) if has_manifest else [],
        repeated_entries=[path for path, listed in records_by_path.items() if len(listed) > 1],
        sha256_mismatch=_sha256_mismatches(records_by_path, readable),
        cases_without_id=sum(r.case_id.startswith(_SYNTHESISED_CASE_PREFIX) for r in records),
        near_duplicate_distance=near_duplicate_distance,
    )
    report.exact_duplicates, report.near_duplicates = _duplicate_groups(
        records_by_path, readable, near_duplicate_distance
    )
    report.imbalance = imbalance_warnings(report.counts)
    return report


def _normalised(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


# --- reading and hashing ---------------------------------------------------------------


def inspect_file(path: Path | str, hash_size: int = 8) -> FileInspection:
    """sha256 and perceptual hash of one file; a failure is returned, never raised."""
    path = Path(path)
    try:
        digest = sha256_file(path)
        image = load_image(path, target_size=_DECODE_SIZE)
    except ImageLoadError as exc:
        return FileInspection(failure=UnreadableFile(str(path), exc.reason, exc.detail))
    except OSError as exc:
        return FileInspection(
            failure=UnreadableFile(str(path), "unreadable", f"cannot read file ({exc.strerror or exc})")
        )
    return FileInspection(digest, perceptual_hash(image, hash_size), colour_thumbnail(image))


def _inspect_chunk(root: str, paths: Sequence[str], hash_size: int) -> list[FileInspection]:
    # Top-level so that spawned worker processes can unpickle it.
    results = []
    for path in paths:
        found = inspect_file(Path(root) / path, hash_size)
        if found.failure is not None:
            # Reports name files relative to the root, like the manifest does.
            found = dataclasses.replace(found, failure=dataclasses.replace(found.failure, path=path))
        results.append(found)
    return results


def _inspect_all(
    root: Path, paths: Sequence[str], hash_size: int, workers: int, progress: Progress | None
) -> list[FileInspection]:
    """Inspections in the order of `paths`, whatever the number of workers."""
    total = len(paths)
    if workers == 1 or total < 2:
        results = []
        for done, path in enumerate(paths, start=1):
            results.extend(_inspect_chunk(str(root), [path], hash_size))
            if progress:
                progress(done, total)
        return results

    # Several chunks per worker keep them all busy to the end; small chunks keep progress smooth.
    chunk_size = max(1, min(64, total // (workers * 4)))
    chunks = [paths[start : start + chunk_size] for start in range(0, total, chunk_size)]
    by_chunk: list[list[FileInspection]] = [[] for _ in chunks]
    done = 0
    # spawn, not fork: the caller may have threads (or torch) loaded, which fork does not survive.
    with owned_pool(min(workers, len(chunks)), "spawn") as pool:
        futures = {
            pool.submit(_inspect_chunk, str(root), chunk, hash_size): index for index, chunk in enumerate(chunks)
        }
        for future in as_completed(futures):
            index = futures[future]
            by_chunk[index] = future.result()
            done += len(by_chunk[index])
            if progress:
                progress(done, total)
    return [found for chunk in by_chunk for found in chunk]


# --- findings --------------------------------------------------------------------------


def _counts(records_by_path: dict[str, list[Record]], readable: dict[str, FileInspection]) -> dict[str, dict[str, int]]:
    # Every product gets both classes, so a product without counterfeits shows up as a 0.
    products = sorted({r.product for listed in records_by_path.values() for r in listed})
    counts = {class_name(p, a): dict.fromkeys(SPLITS, 0) for p in products for a in AUTHENTICITIES}
    for path in readable:
        for record in records_by_path[path]:
            counts[record.label][record.split] += 1
    return counts


def imbalance_warnings(counts: dict[str, dict[str, int]]) -> list[str]:
    """Empty classes, classes far smaller than the largest, and splits lacking a class."""
    totals = {name: sum(per_split.values()) for name, per_split in counts.items()}
    if not totals:
        return []
    largest_name = max(totals, key=lambda name: totals[name])
    largest = totals[largest_name]
    messages = []
    for name, total in totals.items():
        if total == 0:
            messages.append(f"{name}: 0 usable images; the model cannot learn this class")
        elif total < largest * IMBALANCE_RATIO:
            messages.append(
                f"{name}: {_images(total)}, under 1/{round(1 / IMBALANCE_RATIO)} of the largest class "
                f"{largest_name} ({largest})"
            )
    split_totals = {split: sum(counts[name][split] for name in counts) for split in SPLITS}
    for split in SPLITS[1:]:
        if split_totals[split] == 0:
            messages.append(f"the {split} split is empty")
            continue
        for name, per_split in counts.items():
            if per_split["train"] > 0 and per_split[split] == 0:
                messages.append(f"{name}: no images in the {split} split ({per_split['train']} in train)")
            elif per_split["train"] == 0 and per_split[split] > 0:
                messages.append(f"{name}: {_images(per_split[split])} in {split} but none in train")
    return messages


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def _unlisted_images(root: Path, listed: Iterable[str]) -> list[str]:
    listed = set(listed)
    found = []
    # followlinks=False: a symlink loop in a user's archive must not hang the check.
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not is_image_path(name):
                continue
            relative = (Path(directory) / name).relative_to(root).as_posix()
            if relative not in listed:
                found.append(relative)
    return found


def _sha256_mismatches(
    records_by_path: dict[str, list[Record]], readable: dict[str, FileInspection]
) -> list[ShaMismatch]:
    mismatches = []
    for path, found in readable.items():
        expected = {r.sha256.lower() for r in records_by_path[path] if r.sha256}
        for value in sorted(expected - {found.sha256}):
            mismatches.append(ShaMismatch(path, value, found.sha256))
    return mismatches


def _duplicate_groups(
    records_by_path: dict[str, list[Record]], readable: dict[str, FileInspection], max_distance: int
) -> tuple[list[DuplicateGroup], list[DuplicateGroup]]:
    """Exact groups (same sha256) and near groups (close pHash and alike colour thumbnails
    between different contents)."""
    paths_by_sha: dict[str, list[str]] = defaultdict(list)
    for path, found in readable.items():
        paths_by_sha[found.sha256].append(path)
    exact = [_group(paths, records_by_path) for paths in paths_by_sha.values() if len(paths) > 1]

    # One representative per content, so identical files alone never form a near group.
    contents = list(paths_by_sha)
    words = hashes_to_words([readable[paths_by_sha[sha][0]].phash for sha in contents])
    units = unit_thumbnails([readable[paths_by_sha[sha][0]].thumbnail for sha in contents]) if contents else np.zeros((0, 1), np.float32)
    confirmed = (
        (left[alike], right[alike])
        for left, right in close_pairs(words, max_distance)
        for alike in [alike_thumbnails(units, left, right)]
    )
    labels = _component_labels(len(contents), confirmed)
    members: dict[int, list[str]] = defaultdict(list)
    for sha, label in zip(contents, labels.tolist()):
        members[label].append(sha)
    near = [
        _group([path for sha in shas for path in paths_by_sha[sha]], records_by_path)
        for shas in members.values()
        if len(shas) > 1
    ]
    return sorted(exact, key=lambda g: g.paths), sorted(near, key=lambda g: g.paths)


def _group(paths: list[str], records_by_path: dict[str, list[Record]]) -> DuplicateGroup:
    records = [r for path in paths for r in records_by_path[path]]
    splits = sorted({r.split for r in records}, key=SPLITS.index)
    labels = sorted({r.label for r in records})
    return DuplicateGroup(
        paths=sorted(paths),
        splits=splits,
        labels=labels,
        cases=len({r.case_id for r in records}),
        cross_split=len(splits) > 1,
        cross_label=len(labels) > 1,
    )


def _component_labels(size: int, edge_batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Union-find over batches of edges, vectorised: equal labels <=> connected.

    Python-level union per edge would be quadratic in the worst case (thousands of
    near-identical renders); here each round merges every differing edge at once.
    """
    labels = np.arange(size)
    for left, right in edge_batches:
        while True:
            a, b = labels[left], labels[right]
            differ = a != b
            if not differ.any():
                break
            parent = np.arange(size)
            np.minimum.at(parent, np.maximum(a[differ], b[differ]), np.minimum(a[differ], b[differ]))
            # Follow parent chains to their roots (parents always point to smaller indices).
            while not np.array_equal(grandparent := parent[parent], parent):
                parent = grandparent
            labels = parent[labels]
    return labels
