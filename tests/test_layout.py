"""Dataset format: folders, manifest, case-level splits."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from longteng.data.layout import (
    MANIFEST_NAME,
    Record,
    class_names,
    format_tells,
    manifest_hash,
    parse_tells,
    read_manifest,
    scan_dataset,
    split_for_case,
    write_manifest,
)
from longteng.errors import DatasetError


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)


def test_folder_layout_without_manifest(tmp_path):
    for rel in ["drone/genuine/a.jpg", "drone/counterfeit/b.png", "usb/genuine/deep/c.webp", "usb/genuine/notes.txt"]:
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("x")
        else:
            _image(tmp_path / rel)
    records = scan_dataset(tmp_path)
    assert [r.path for r in records] == ["drone/genuine/a.jpg", "drone/counterfeit/b.png", "usb/genuine/deep/c.webp"]
    assert class_names(records) == ["drone/counterfeit", "drone/genuine", "usb/genuine"]
    # Without case ids every photo is its own case.
    assert len({r.case_id for r in records}) == 3


def test_manifest_cases_never_cross_splits(tmp_path):
    rows = [("p%03d.jpg" % i, "phone", "genuine" if i % 2 else "counterfeit", f"case{i // 5}") for i in range(200)]
    with open(tmp_path / MANIFEST_NAME, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "product", "authenticity", "case_id", "site"])
        writer.writerows([(*row, "shenzhen") for row in rows])
    records = read_manifest(tmp_path / MANIFEST_NAME)
    split_of_case: dict[str, set[str]] = {}
    for record in records:
        split_of_case.setdefault(record.case_id, set()).add(record.split)
    assert all(len(splits) == 1 for splits in split_of_case.values())
    assert {s for splits in split_of_case.values() for s in splits} == {"train", "val", "test"}
    assert records[0].extra == {"site": "shenzhen"}


def test_split_is_stable_and_roughly_proportional():
    splits = [split_for_case(f"case-{i}") for i in range(3000)]
    assert splits == [split_for_case(f"case-{i}") for i in range(3000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.70) < 0.04 and abs(share["val"] - 0.15) < 0.03


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (["path", "product"], ["a.jpg", "phone"], "authenticity"),
        (["path", "product", "authenticity"], ["a.jpg", "phone", "fake"], "authenticity 'fake'"),
        (["path", "product", "authenticity", "split"], ["a.jpg", "phone", "genuine", "holdout"], "split 'holdout'"),
        (["path", "product", "authenticity"], ["a.jpg", "phone/x", "genuine"], "must not contain"),
    ],
)
def test_bad_manifest_names_the_problem(tmp_path, header, row, message):
    with open(tmp_path / MANIFEST_NAME, "w", newline="") as handle:
        csv.writer(handle).writerows([header, row])
    with pytest.raises(DatasetError, match=message):
        scan_dataset(tmp_path)


def test_empty_or_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        scan_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        scan_dataset(tmp_path / "absent")


def test_manifest_round_trip_and_hash(tmp_path):
    records = [
        Record("drone/counterfeit/x.jpg", "drone", "counterfeit", "c1", "train", "ab", {"tells": "glyph_swap:0.50"}),
        Record("drone/genuine/y.jpg", "drone", "genuine", "c1", "train", "cd", {"tells": ""}),
    ]
    write_manifest(tmp_path, records, extra_columns=["tells"])
    loaded = read_manifest(tmp_path / MANIFEST_NAME)
    assert loaded == records
    assert loaded[0].tells() == {"glyph_swap": 0.5}
    assert manifest_hash(loaded) == manifest_hash(reversed(records))
    changed = [records[0], Record(*records[1].__dict__.values())]
    changed[1] = Record("drone/genuine/y.jpg", "drone", "genuine", "c1", "test", "cd", {})
    assert manifest_hash(changed) != manifest_hash(records)


def test_tells_format_round_trip():
    tells = {"off_palette": 0.333, "cert_mark": 1.0}
    assert format_tells(tells) == "cert_mark:1.00;off_palette:0.33"
    assert parse_tells(format_tells(tells)) == {"cert_mark": 1.0, "off_palette": 0.33}
    with pytest.raises(DatasetError):
        parse_tells("glyph_swap:strong")
