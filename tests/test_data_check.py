"""`data check`: bad files, manifest drift, duplicates across splits, balance, and the CLI."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from longteng.cli.main import main
from longteng.data import phash
from longteng.data.check import CheckReport, _component_labels, check_dataset
from longteng.data.layout import Record, sha256_file, write_manifest
from longteng.data.phash import close_pairs, hamming_distance, hashes_to_words, perceptual_hash

# --- fixtures: small photo-like images in the dataset layout ---------------------------


def photo(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A smooth background with a few boxes and sensor-like noise: structure, like a product shot."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        w, h = int(rng.integers(10, 50)), int(rng.integers(10, 40))
        draw.rectangle([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, 8, (size[1], size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


class Dataset:
    """Writes images under ROOT/<product>/<authenticity>/ and remembers their manifest rows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.records: list[Record] = []
        self._next_seed = 0

    def add(
        self,
        path: str,
        *,
        split: str = "train",
        case_id: str | None = None,
        image: Image.Image | None = None,
        quality: int = 92,
    ) -> str:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if image is None:
            image = photo(self._next_seed)
            self._next_seed += 1
        if target.suffix.lower() in {".jpg", ".jpeg"}:
            image.save(target, "JPEG", quality=quality)
        else:
            image.save(target)
        self.add_existing(path, split=split, case_id=case_id)
        return path

    def add_existing(self, path: str, *, split: str = "train", case_id: str | None = None) -> str:
        product, authenticity = path.split("/")[:2]
        self.records.append(Record(path, product, authenticity, case_id or f"case-{path}", split))
        return path

    def copy(self, source: str, path: str, *, split: str, case_id: str | None = None) -> str:
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / source, self.root / path)
        return self.add_existing(path, split=split, case_id=case_id)

    def write_manifest(self) -> None:
        rows = [
            Record(r.path, r.product, r.authenticity, r.case_id, r.split, sha256_file(self.root / r.path))
            for r in self.records
        ]
        write_manifest(self.root, rows)


def add_classes(dataset: Dataset, sizes: dict[str, dict[str, int]]) -> None:
    """sizes: {"phone/genuine": {"train": 3, "val": 1}, ...}."""
    for class_name, per_split in sizes.items():
        for split, count in per_split.items():
            for index in range(count):
                dataset.add(f"{class_name}/{split}-{index}.jpg", split=split)


def truncated_jpeg(path: Path) -> None:
    photo(101, (400, 300)).save(path, "JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def text_named_jpg(path: Path) -> None:
    path.write_text("case 17, container 4: see attached photos\n")


def corrupt_png(path: Path) -> None:
    buffer = io.BytesIO()
    photo(102).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = bytes(b ^ 0xFF for b in data[start : start + 40])
    path.write_bytes(bytes(data))


BAD_FILES = [
    pytest.param(truncated_jpeg, "a_bad.jpg", "truncated", id="truncated-jpeg"),
    pytest.param(zero_bytes, "a_bad.jpg", "empty", id="zero-bytes"),
    pytest.param(text_named_jpg, "a_bad.jpg", "not_an_image", id="text-named-jpg"),
    pytest.param(corrupt_png, "a_bad.png", "corrupt", id="corrupt-png"),
]


# --- counts and unreadable files --------------------------------------------------------


def test_counts_per_class_and_split(tmp_path):
    dataset = Dataset(tmp_path)
    add_classes(
        dataset,
        {
            "phone/genuine": {"train": 3, "val": 1, "test": 1},
            "phone/counterfeit": {"train": 2, "val": 1, "test": 1},
            "drone/genuine": {"train": 1},
        },
    )
    dataset.write_manifest()

    report = check_dataset(tmp_path)

    assert report.counts == {
        "drone/genuine": {"train": 1, "val": 0, "test": 0},
        "drone/counterfeit": {"train": 0, "val": 0, "test": 0},
        "phone/genuine": {"train": 3, "val": 1, "test": 1},
        "phone/counterfeit": {"train": 2, "val": 1, "test": 1},
    }
    assert (report.listed, report.usable) == (10, 10)
    # Ten different photos: nothing unreadable, nothing duplicated.
    assert report.errors == []
    assert report.exact_duplicates == [] and report.near_duplicates == []
    assert report.cases_without_id == 0


@pytest.mark.parametrize(("write_bad", "name", "reason"), BAD_FILES)
def test_bad_file_is_reported_and_check_goes_on(tmp_path, write_bad, name, reason):
    dataset = Dataset(tmp_path)
    folder = tmp_path / "usb" / "genuine"
    folder.mkdir(parents=True)
    write_bad(folder / name)  # sorts first: the good files after it must still be read
    for index in range(3):
        dataset.add(f"usb/genuine/good-{index}.jpg")
    dataset.add("usb/counterfeit/fake.jpg")

    report = check_dataset(tmp_path)

    assert [(u.path, u.reason) for u in report.unreadable] == [(f"usb/genuine/{name}", reason)]
    assert report.unreadable[0].detail
    assert report.listed == 5 and report.usable == 4
    assert sum(report.counts["usb/genuine"].values()) == 3
    assert any(f"usb/genuine/{name}" in message for message in report.errors)


def _dataset_with_every_problem(root: Path) -> Dataset:
    dataset = Dataset(root)
    add_classes(dataset, {"phone/genuine": {"train": 4, "test": 2}, "phone/counterfeit": {"train": 3, "test": 1}})
    dataset.copy("phone/genuine/train-0.jpg", "phone/genuine/copy-in-test.jpg", split="test")
    for index, (write_bad, name, _reason) in enumerate(p.values for p in BAD_FILES):
        path = f"phone/counterfeit/{index}-{name}"
        write_bad(root / path)
        dataset.add_existing(path)
    dataset.write_manifest()
    return dataset


def test_workers_give_the_same_report_and_progress_reaches_the_total(tmp_path):
    _dataset_with_every_problem(tmp_path)
    calls: list[tuple[int, int]] = []

    serial = check_dataset(tmp_path)
    parallel = check_dataset(tmp_path, workers=2, progress=lambda done, total: calls.append((done, total)))

    assert parallel.to_dict() == serial.to_dict()
    assert sorted(u.reason for u in serial.unreadable) == ["corrupt", "empty", "not_an_image", "truncated"]
    assert calls[-1] == (serial.listed, serial.listed)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


# --- duplicates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_split", "second_split", "leaks"),
    [("train", "test", True), ("train", "val", True), ("train", "train", False), ("test", "test", False)],
)
def test_exact_duplicate_is_leakage_only_across_splits(tmp_path, first_split, second_split, leaks):
    dataset = Dataset(tmp_path)
    add_classes(dataset, {"phone/genuine": {"train": 2, "val": 1, "test": 1}})
    original = dataset.add("phone/genuine/original.jpg", split=first_split)
    duplicate = dataset.copy(original, "phone/genuine/z-copy.jpg", split=second_split)
    dataset.write_manifest()

    report = check_dataset(tmp_path)

    assert [group.paths for group in report.exact_duplicates] == [[original, duplicate]]
    assert report.exact_duplicates[0].cross_split is leaks
    assert report.near_duplicates == []  # identical files are not also reported as near duplicates
    mentions = lambda messages: [m for m in messages if original in m and duplicate in m]  # noqa: E731
    assert bool(mentions(report.errors)) is leaks
    assert bool(mentions(report.warnings)) is not leaks


def _jpeg_at_quality(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


NEAR_VARIANTS = [
    pytest.param(lambda image: _jpeg_at_quality(image, 60), "z-variant.jpg", id="jpeg-quality-60"),
    pytest.param(
        lambda image: image.resize((144, 108), Image.Resampling.BILINEAR), "z-variant.jpg", id="resized-90pct"
    ),
    pytest.param(lambda image: image, "z-variant.png", id="same-pixels-as-png"),
    pytest.param(lambda image: ImageEnhance.Brightness(image).enhance(1.2), "z-variant.jpg", id="brightened-20pct"),
]


def _same_grey_other_colours(seed: int) -> tuple[Image.Image, Image.Image]:
    """Two photos whose grey images are identical (so their pHashes are) and whose colours
    are not: each pixel moves along a direction that leaves luminance unchanged, one photo
    one way, the other the opposite way."""
    rng = np.random.default_rng(seed)
    grey = np.asarray(Image.fromarray(rng.integers(90, 160, (3, 4), dtype=np.uint8)).resize((160, 120), Image.Resampling.BICUBIC), dtype=np.float64)
    pattern = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8), dtype=np.uint8)).resize((160, 120), Image.Resampling.NEAREST), dtype=np.float64) / 255 - 0.5
    no_luminance = np.array([1.0, -0.299 / 0.587, 0.0]) * 80  # 0.299 R + 0.587 G + 0.114 B unchanged
    made = [grey[..., None] + sign * pattern[..., None] * no_luminance for sign in (1, -1)]
    return tuple(Image.fromarray(np.clip(np.round(m), 0, 255).astype(np.uint8)) for m in made)


def test_photos_that_share_only_their_grey_layout_are_not_near_duplicates(tmp_path):
    first, second = _same_grey_other_colours(3)
    assert hamming_distance(perceptual_hash(first), perceptual_hash(second)) <= 2  # the hash alone would pair them
    dataset = Dataset(tmp_path)
    add_classes(dataset, {"drone/genuine": {"train": 3, "test": 2}, "drone/counterfeit": {"train": 3, "test": 2}})
    dataset.add("drone/genuine/first.png", image=first, split="train")
    dataset.add("drone/counterfeit/second.png", image=second, split="test")
    dataset.write_manifest()

    report = check_dataset(tmp_path)

    assert report.near_duplicates == [] and report.errors == []


@pytest.mark.parametrize(("make_variant", "name"), NEAR_VARIANTS)
def test_near_duplicate_across_splits_is_found_and_a_different_photo_is_not(tmp_path, make_variant, name):
    dataset = Dataset(tmp_path)
    add_classes(dataset, {"drone/genuine": {"train": 3, "test": 2}, "drone/counterfeit": {"train": 3, "test": 2}})
    original_image = photo(500)
    original = dataset.add("drone/genuine/original.jpg", image=original_image, quality=95, split="train")
    variant = dataset.add(f"drone/genuine/{name}", image=make_variant(original_image), split="test")
    different = dataset.add("drone/genuine/different.jpg", image=photo(501), split="test")
    dataset.write_manifest()

    report = check_dataset(tmp_path)

    assert report.exact_duplicates == []
    assert [group.paths for group in report.near_duplicates] == [[original, variant]]
    group = report.near_duplicates[0]
    assert (group.splits, group.cross_split, group.cases) == (["train", "test"], True, 2)
    assert all(different not in g.paths for g in report.near_duplicates)
    assert any(original in m and variant in m for m in report.errors)


@pytest.mark.parametrize(("same_case", "warned"), [(True, False), (False, True)])
def test_near_duplicates_within_a_split_warn_only_across_cases(tmp_path, same_case, warned):
    dataset = Dataset(tmp_path)
    add_classes(dataset, {"usb/genuine": {"train": 2, "val": 1, "test": 1}})
    image = photo(600)
    first = dataset.add("usb/genuine/shot-1.jpg", image=image, quality=95, case_id="case-A")
    second = dataset.add(
        "usb/genuine/shot-2.jpg", image=_jpeg_at_quality(image, 70), case_id="case-A" if same_case else "case-B"
    )
    dataset.write_manifest()

    report = check_dataset(tmp_path)

    assert [g.paths for g in report.near_duplicates] == [[first, second]]
    assert report.errors == []
    assert any(first in m and second in m for m in report.warnings) is warned


# --- balance and case ids ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        pytest.param(
            {
                "phone/genuine": {"train": 4, "val": 1, "test": 1},
                "phone/counterfeit": {"train": 3, "val": 1, "test": 1},
            },
            [],
            id="balanced",
        ),
        pytest.param(
            {
                "phone/genuine": {"train": 9, "val": 2, "test": 2},
                "phone/counterfeit": {"train": 2, "val": 1, "test": 1},
            },
            ["phone/counterfeit: 4 images, under 1/3 of the largest class phone/genuine (13)"],
            id="small-class",
        ),
        pytest.param(
            {"phone/genuine": {"train": 4, "val": 1, "test": 1}, "phone/counterfeit": {"train": 4, "val": 1}},
            ["phone/counterfeit: no images in the test split"],
            id="class-missing-from-test",
        ),
        pytest.param(
            {"phone/genuine": {"train": 4, "val": 1, "test": 1}},
            ["phone/counterfeit: 0 usable images"],
            id="empty-class",
        ),
        pytest.param(
            {"phone/genuine": {"train": 4, "val": 1}, "phone/counterfeit": {"train": 4, "val": 1}},
            ["the test split is empty"],
            id="empty-split",
        ),
    ],
)
def test_imbalance_warnings(tmp_path, sizes, expected):
    dataset = Dataset(tmp_path)
    add_classes(dataset, sizes)
    dataset.write_manifest()

    report = check_dataset(tmp_path)

    assert len(report.imbalance) == len(expected)
    for fragment, message in zip(expected, report.imbalance):
        assert message.startswith(fragment)
    assert all(message in report.warnings for message in report.imbalance)


def test_photos_without_case_id_are_counted_and_warned(tmp_path):
    for index in range(3):
        path = tmp_path / "phone" / "genuine" / f"{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(700 + index).save(path)

    report = check_dataset(tmp_path)  # folder layout: no manifest, so no case ids

    assert report.cases_without_id == 3
    assert any("3 of 3 photos have no case_id" in message for message in report.warnings)


# --- manifest integrity -----------------------------------------------------------------


def _tamper_delete(dataset: Dataset) -> str:
    (dataset.root / "phone/genuine/train-1.jpg").unlink()
    return "phone/genuine/train-1.jpg"


def _tamper_add_unlisted(dataset: Dataset) -> str:
    photo(800).save(dataset.root / "phone/counterfeit/late-arrival.jpg")
    return "phone/counterfeit/late-arrival.jpg"


def _tamper_rewrite(dataset: Dataset) -> str:
    photo(801).save(dataset.root / "phone/genuine/train-0.jpg")
    return "phone/genuine/train-0.jpg"


@pytest.mark.parametrize(
    ("tamper", "finding", "is_error"),
    [
        pytest.param(_tamper_delete, "missing", True, id="deleted-file"),
        pytest.param(_tamper_add_unlisted, "unlisted", False, id="unlisted-file"),
        pytest.param(_tamper_rewrite, "sha256_mismatch", True, id="changed-file"),
    ],
)
def test_manifest_drift_is_reported(tmp_path, tamper, finding, is_error):
    dataset = Dataset(tmp_path)
    add_classes(dataset, {"phone/genuine": {"train": 3, "test": 1}, "phone/counterfeit": {"train": 3, "test": 1}})
    dataset.write_manifest()
    manifest_sha = {r.path: sha256_file(tmp_path / r.path) for r in dataset.records}

    path = tamper(dataset)
    report = check_dataset(tmp_path)

    findings = {"missing": report.missing, "unlisted": report.unlisted, "sha256_mismatch": report.sha256_mismatch}
    assert all(found == [] for name, found in findings.items() if name != finding)
    if finding == "sha256_mismatch":
        (mismatch,) = report.sha256_mismatch
        assert (mismatch.path, mismatch.manifest, mismatch.actual) == (
            path,
            manifest_sha[path],
            sha256_file(tmp_path / path),
        )
    else:
        assert findings[finding] == [path]
    assert any(path in message for message in report.errors) is is_error
    assert any(path in message for message in report.warnings) is not is_error


def test_a_path_listed_twice_is_an_error(tmp_path):
    dataset = Dataset(tmp_path)
    add_classes(dataset, {"phone/genuine": {"train": 2, "test": 1}})
    dataset.add_existing("phone/genuine/train-0.jpg", split="test")
    dataset.write_manifest()

    report = check_dataset(tmp_path)

    assert report.repeated_entries == ["phone/genuine/train-0.jpg"]
    assert report.exact_duplicates == []  # one file listed twice is not two identical files
    assert any("listed more than once" in message for message in report.errors)


# --- perceptual hash and grouping -------------------------------------------------------


def test_perceptual_hash_size_and_self_distance():
    image = photo(900)
    assert len(perceptual_hash(image)) == 8
    assert len(perceptual_hash(image, hash_size=16)) == 32
    assert hamming_distance(perceptual_hash(image), perceptual_hash(image.copy())) == 0
    assert hamming_distance(perceptual_hash(image), perceptual_hash(photo(901))) > 6


@pytest.mark.parametrize("hash_bytes", [8, 32])
def test_close_pairs_matches_brute_force_across_blocks(monkeypatch, hash_bytes):
    rng = np.random.default_rng(hash_bytes)
    centres = rng.integers(0, 256, (12, hash_bytes), dtype=np.uint8)
    hashes = []
    for index in range(150):
        value = centres[index % 12].copy()
        for bit in rng.integers(0, hash_bytes * 8, int(rng.integers(0, 5))):
            value[bit // 8] ^= 1 << (bit % 8)
        hashes.append(value.tobytes())
    limit = 4
    expected = {
        (i, j)
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if sum(bin(a ^ b).count("1") for a, b in zip(hashes[i], hashes[j])) <= limit
    }
    # Tiny blocks: the search must stitch many blocks together without losing or repeating pairs.
    monkeypatch.setattr(phash, "_BLOCK_ELEMENTS", 1000)

    found = [
        pair
        for left, right in close_pairs(hashes_to_words(hashes), limit)
        for pair in zip(left.tolist(), right.tolist())
    ]

    assert len(found) == len(set(found))
    assert set(found) == expected
    assert expected  # the clusters do produce close pairs


def test_component_labels_match_graph_connectivity():
    rng = np.random.default_rng(3)
    size = 200
    edges = rng.integers(0, size, (150, 2))
    batches = [(edges[start : start + 40, 0], edges[start : start + 40, 1]) for start in range(0, len(edges), 40)]

    labels = _component_labels(size, batches)

    # Reference: breadth-first search over the same edges.
    neighbours: dict[int, set[int]] = {node: set() for node in range(size)}
    for a, b in edges.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    component = {}
    for start in range(size):
        if start in component:
            continue
        frontier = [start]
        component[start] = start
        while frontier:
            node = frontier.pop()
            for other in neighbours[node]:
                if other not in component:
                    component[other] = start
                    frontier.append(other)
    for a in range(size):
        for b in range(a + 1, size):
            assert (labels[a] == labels[b]) == (component[a] == component[b])


# --- command line -----------------------------------------------------------------------


def _clean_dataset(root: Path) -> Dataset:
    dataset = Dataset(root)
    add_classes(
        dataset,
        {"phone/genuine": {"train": 3, "val": 1, "test": 1}, "phone/counterfeit": {"train": 3, "val": 1, "test": 1}},
    )
    dataset.write_manifest()
    return dataset


def test_cli_json_is_the_whole_report(tmp_path, capsys):
    _dataset_with_every_problem(tmp_path)

    code = main(["data", "check", str(tmp_path), "--json"])

    captured = capsys.readouterr()
    assert code == 0  # problems are reported, not an exit status without --strict
    document = json.loads(captured.out)
    assert document == check_dataset(tmp_path).to_dict()
    assert sorted(u["reason"] for u in document["unreadable"]) == ["corrupt", "empty", "not_an_image", "truncated"]
    assert [g["paths"] for g in document["exact_duplicates"]] == [
        ["phone/genuine/copy-in-test.jpg", "phone/genuine/train-0.jpg"]
    ]
    assert document["errors"] and document["counts"]["phone/genuine"]["train"] == 4


@pytest.mark.parametrize(
    ("build", "strict", "expected_code"),
    [
        (_dataset_with_every_problem, True, 3),
        (_dataset_with_every_problem, False, 0),
        (_clean_dataset, True, 0),
    ],
)
def test_cli_exit_codes(tmp_path, capsys, build, strict, expected_code):
    build(tmp_path)
    code = main(["data", "check", str(tmp_path), *(["--strict"] if strict else [])])
    capsys.readouterr()
    assert code == expected_code


def test_cli_human_report_lists_problems_and_caps_long_sections(tmp_path, capsys):
    dataset = _clean_dataset(tmp_path)
    for index in range(25):
        path = f"phone/counterfeit/empty-{index:02d}.jpg"
        zero_bytes(tmp_path / path)
        dataset.add_existing(path)
    dataset.write_manifest()

    code = main(["data", "check", str(tmp_path)])

    output = capsys.readouterr().out
    assert code == 0
    assert "usable images per class and split" in output
    assert "unreadable images (25)" in output
    assert "phone/counterfeit/empty-00.jpg" in output
    assert "phone/counterfeit/empty-24.jpg" not in output  # beyond the first 20
    assert "... and 5 more" in output


def test_cli_missing_root_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "no-such-dataset"

    code = main(["data", "check", str(missing)])

    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(missing) in lines[0]
    assert captured.out == ""


def test_report_is_json_serialisable(tmp_path):
    _dataset_with_every_problem(tmp_path)
    report = check_dataset(tmp_path)
    assert isinstance(report, CheckReport)
    assert json.loads(json.dumps(report.to_dict())) == report.to_dict()
