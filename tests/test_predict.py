"""`longteng predict` and the runtime behind it: discovery, bad photos, EXIF, odd names, the
JSON/CSV schema, heatmaps, items, exit codes, and no torch on the officer's path."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, features

from longteng.cli import exitcodes
from longteng.cli.main import main
from longteng.imageio import heif_available
from longteng.decision import COUNTERFEIT, GENUINE, REFER, Decision, OperatingPoint
from longteng.inference import records
from longteng.inference.discover import DiscoveryError, DiscoveryOptions, discover
from longteng.inference.explain import overlay_name
from longteng.preprocess import content_box
from longteng.inference.items import combine
from longteng.inference.predict import PhotoPrediction
from longteng.preprocess import PreprocessSpec, load_resized, resize_to_input

# What exif_transpose must undo for each EXIF orientation (from the EXIF specification):
# the photo is stored transformed by the inverse of the transposition that displays it.
STORED_AS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # displayed by rotating 90 degrees clockwise
    8: Image.Transpose.ROTATE_270,  # displayed by rotating 90 degrees counter-clockwise
}
ORIENTATION_TAG = 0x0112


def photo(size: tuple[int, int] = (96, 72), seed: int = 0) -> Image.Image:
    """A small photo-like picture with no symmetry, so a wrong rotation changes the input."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(80, 180, 3)))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((w // 8, h // 6, w // 2, h - h // 5), fill=(230, 230, 230))
    draw.ellipse((w // 2, h // 8, w - w // 10, h // 2), fill=(30, 30, 40))
    draw.rectangle((w // 5, h // 4, w // 5 + w // 8, h // 4 + h // 8), fill=(200, 30, 30))
    noise = rng.normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def save(image: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def run_json(args: list[str], capsys) -> tuple[int, list[dict]]:
    code = main(["predict", "--json", *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def by_path(rows: list[dict]) -> dict[str, dict]:
    return {row["path"]: row for row in rows}


# --- EXIF orientation ---------------------------------------------------------------------


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_exif_rotated_photo_gives_the_same_verdict_as_the_physically_rotated_one(
    tiny_onnx_model, tmp_path, capsys, orientation
):
    upright = photo((96, 72), seed=orientation)
    stored = upright.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    tagged = save(stored, tmp_path / "tagged.jpg", quality=92, exif=exif.tobytes())
    # The same decoded pixels, turned upright by hand and stored losslessly without a tag.
    with Image.open(tagged) as raw:
        decoded = raw.convert("RGB")
    physically_rotated = save(decoded.transpose(_inverse(STORED_AS[orientation])), tmp_path / "rotated.png")
    untagged = save(decoded, tmp_path / "untagged.png")

    code, rows = run_json(["--model", str(tiny_onnx_model), str(tagged), str(physically_rotated)], capsys)

    assert code == exitcodes.OK
    exif_row, rotated_row = rows
    for key in ("verdict", "product", "refer_reason"):
        assert exif_row[key] == rotated_row[key]
    for key in ("confidence", "counterfeit_score", "product_confidence", "unknown_score"):
        assert exif_row[key] == pytest.approx(rotated_row[key], abs=1e-6)
    assert [c["class"] for c in exif_row["top_classes"]] == [c["class"] for c in rotated_row["top_classes"]]
    # The control: ignoring the tag would have fed the model a different picture.
    spec = PreprocessSpec(input_size=64)
    assert np.array_equal(load_resized(tagged, spec), load_resized(physically_rotated, spec))
    assert not np.array_equal(load_resized(untagged, spec), load_resized(physically_rotated, spec))


def _inverse(transpose: Image.Transpose) -> Image.Transpose:
    return {Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90}.get(
        transpose, transpose
    )


# --- photos as phones and scanners make them ----------------------------------------------


def _formats() -> list[tuple[str, object]]:
    cases = [
        ("photo.jpg", lambda p: save(photo(), p, quality=90)),
        ("photo.png", lambda p: save(photo(), p)),
        ("cmyk.jpg", lambda p: save(photo().convert("CMYK"), p, quality=90)),
        ("sixteen.png", lambda p: save(Image.fromarray(np.asarray(photo().convert("L"), np.uint16) * 257), p)),
        ("grey.tif", lambda p: save(photo().convert("L"), p)),
        ("rgba.png", lambda p: save(photo().convert("RGBA"), p)),
    ]
    if features.check("webp"):
        cases.append(("photo.webp", lambda p: save(photo(), p, quality=90)))
    return cases


def test_every_common_format_gets_a_verdict(tiny_onnx_model, tmp_path, capsys):
    paths = [make(tmp_path / name) for name, make in _formats()]
    code, rows = run_json(["--model", str(tiny_onnx_model), str(tmp_path)], capsys)
    assert code == exitcodes.OK
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in paths)
    assert {row["kind"] for row in rows} == {"photo"}
    assert {row["verdict"] for row in rows} <= {GENUINE, COUNTERFEIT, REFER}


# --- bad photos ---------------------------------------------------------------------------


def _truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    photo().save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


BAD_INPUTS = {
    "missing": ("missing.jpg", lambda p: p, "not_found"),
    "zero_bytes": ("empty.jpg", lambda p: (p.write_bytes(b""), p)[1], "empty"),
    "text_named_jpg": ("notes.jpg", lambda p: (p.write_text("not a photo\n"), p)[1], "not_an_image"),
    "truncated": ("cut.jpg", _truncated_jpeg, "truncated"),
    "heic_without_extra": ("phone.heic", lambda p: (p.write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64), p)[1],
                           "unsupported_format"),
    "empty_folder": ("nothing_here", lambda p: (p.mkdir(), p)[1], "no_images"),
    "unmatched_glob": ("*.nomatch", lambda p: p, "no_match"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_a_bad_input_gets_an_error_row_and_exit_3_while_the_others_are_predicted(tiny_onnx_model, tmp_path, capsys, case):
    name, make, reason = BAD_INPUTS[case]
    if case == "heic_without_extra" and heif_available():
        pytest.skip("pillow-heif is installed: .heic files are supported")
    good = save(photo(), tmp_path / "good.png")
    bad = make(tmp_path / name)

    code, rows = run_json(["--model", str(tiny_onnx_model), str(good), str(bad)], capsys)

    assert code == exitcodes.PARTIAL
    assert [row["kind"] for row in rows] == ["photo", "error"]
    assert rows[0]["path"] == str(good)
    assert rows[1]["path"] == str(bad)
    assert rows[1]["error_reason"] == reason
    assert rows[1]["error_detail"]


def test_too_large_photos_are_refused_by_max_pixels(tiny_onnx_model, tmp_path, capsys):
    small = save(photo((40, 30)), tmp_path / "small.png")
    large = save(photo((96, 72)), tmp_path / "large.png")
    code, rows = run_json(["--model", str(tiny_onnx_model), "--max-pixels", str(40 * 30), str(small), str(large)], capsys)
    assert code == exitcodes.PARTIAL
    assert by_path(rows)[str(small)]["kind"] == "photo"
    assert by_path(rows)[str(large)]["error_reason"] == "too_large"


def test_table_output_names_each_failure_and_exit_code(tiny_onnx_model, tmp_path, capsys):
    good = save(photo(), tmp_path / "good.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    code = main(["predict", "--model", str(tiny_onnx_model), str(good), str(tmp_path / "empty.jpg")])
    captured = capsys.readouterr()
    assert code == exitcodes.PARTIAL
    assert "empty.jpg" in captured.out and "empty" in captured.out and "ERROR" in captured.out
    assert "Traceback" not in captured.out + captured.err
    assert "1 failed" in captured.err


def test_all_good_photos_exit_0(tiny_onnx_model, tmp_path, capsys):
    paths = [save(photo(seed=i), tmp_path / f"p{i}.png") for i in range(3)]
    code, rows = run_json(["--model", str(tiny_onnx_model), *map(str, paths)], capsys)
    assert code == exitcodes.OK
    assert [row["path"] for row in rows] == [str(p) for p in paths]


def test_batches_give_the_same_results_as_one_photo_at_a_time(tiny_onnx_model, tmp_path, capsys):
    for i in range(5):
        save(photo(seed=i), tmp_path / f"p{i}.png")
    (tmp_path / "p2_bad.png").write_bytes(b"oops")  # a failure in the middle of a batch
    args = ["--model", str(tiny_onnx_model), str(tmp_path)]
    _, batched = run_json([*args, "--batch-size", "4"], capsys)
    _, single = run_json([*args, "--batch-size", "1"], capsys)
    assert [row["path"] for row in batched] == [row["path"] for row in single]
    assert [row["kind"] for row in batched] == ["photo", "photo", "photo", "error", "photo", "photo"]
    for a, b in zip(batched, single):
        assert a["kind"] == b["kind"]
        if a["kind"] == "photo":
            assert a["counterfeit_score"] == pytest.approx(b["counterfeit_score"], abs=1e-5)


# --- folders walked safely ----------------------------------------------------------------


def test_folder_with_a_symlink_loop_and_an_unreadable_subfolder(tiny_onnx_model, tmp_path, capsys):
    root = tmp_path / "seizure"
    good = save(photo(), root / "a" / "front.png")
    os.symlink(root, root / "a" / "loop")
    locked = root / "locked"
    save(photo(seed=1), locked / "hidden_from_us.png")
    locked.chmod(0)
    try:
        code, rows = run_json(["--model", str(tiny_onnx_model), str(root)], capsys)
    finally:
        locked.chmod(0o755)

    assert code == exitcodes.PARTIAL
    rows_by_path = by_path(rows)
    assert rows_by_path[str(good)]["kind"] == "photo"
    assert rows_by_path[str(root / "a" / "loop")]["error_reason"] == "symlink_loop"
    if os.geteuid() == 0:
        # root reads any folder: the locked one is walked like the others.
        assert rows_by_path[str(locked / "hidden_from_us.png")]["kind"] == "photo"
    else:
        assert rows_by_path[str(locked)]["error_reason"] == "unreadable"


def _tree(root: Path) -> None:
    for relative in ("b/2.png", "a/1.JPG", "a/z/3.webp", "B.png", "notes.txt", ".hidden.png", "a/._1.JPG", "noext"):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" if relative == "noext" else b"x")


def test_discovery_order_is_sorted_by_name_bytes_and_skips_hidden_and_non_photos(tmp_path):
    _tree(tmp_path)
    found = list(discover([tmp_path]))
    assert found == [tmp_path / "B.png", tmp_path / "a/1.JPG", tmp_path / "a/z/3.webp", tmp_path / "b/2.png"]


def test_discovery_sniffs_extensionless_files_when_asked(tmp_path):
    _tree(tmp_path)
    assert tmp_path / "noext" in list(discover([tmp_path], DiscoveryOptions(sniff_extensionless=True)))


def test_discovery_keeps_explicit_files_and_reports_each_problem(tmp_path):
    _tree(tmp_path)
    os.mkfifo(tmp_path / "pipe.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    found = list(discover([
        tmp_path / "notes.txt",  # named explicitly: kept, the loader will judge it
        tmp_path / "a",
        tmp_path / "a" / "1.JPG",  # already found through the folder: not twice
        str(tmp_path / "**" / "*.webp"),  # a glob (already found, so nothing new, no error)
        str(tmp_path / "*.gif"),
        tmp_path / "pipe.png",
        tmp_path / "dangling.png",
        tmp_path / "missing",
    ]))
    assert found[:3] == [tmp_path / "notes.txt", tmp_path / "a/1.JPG", tmp_path / "a/z/3.webp"]
    problems = [(item.path, item.reason) for item in found[3:]]
    assert all(isinstance(item, DiscoveryError) for item in found[3:])
    assert problems == [
        (tmp_path / "*.gif", "no_match"),
        (tmp_path / "pipe.png", "unreadable"),
        (tmp_path / "dangling.png", "not_found"),
        (tmp_path / "missing", "not_found"),
    ]


def test_discovery_reports_a_pipe_named_like_a_photo_inside_a_folder(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"x")
    os.mkfifo(tmp_path / "pipe.jpg")
    found = list(discover([tmp_path]))
    assert found[0] == tmp_path / "ok.png"
    assert (found[1].path, found[1].reason) == (tmp_path / "pipe.jpg", "unreadable")


# --- odd file names through --json and --csv ----------------------------------------------

ODD_NAMES = [b"comma,name.png", b'quote"name.png', b"new\nline.png", "ünïcødé 照片.png".encode(), b"\xff\xfe latin1.png"]


@pytest.fixture()
def odd_folder(tmp_path) -> tuple[Path, set[bytes]]:
    """Photos whose names need quoting or escaping, plus an empty one for an error row."""
    folder = os.fsencode(tmp_path / "odd")
    os.mkdir(folder)
    names = set()
    for i, raw in enumerate([*ODD_NAMES, b'broken, "bad".png']):
        target = os.path.join(folder, raw)
        with open(target, "wb") as handle:
            if i < len(ODD_NAMES):
                photo(seed=i).save(handle, "PNG")
        names.add(target)
    return Path(os.fsdecode(folder)), names


def test_odd_file_names_round_trip_through_json(tiny_onnx_model, odd_folder, capsys):
    folder, names = odd_folder
    code, rows = run_json(["--model", str(tiny_onnx_model), os.fsdecode(folder)], capsys)
    assert code == exitcodes.PARTIAL  # the empty one
    assert {os.fsencode(row["path"]) for row in rows} == names
    assert sum(row["kind"] == "photo" for row in rows) == len(ODD_NAMES)


def test_odd_file_names_round_trip_through_csv(tiny_onnx_model, odd_folder, capsysbinary):
    folder, names = odd_folder
    code = main(["predict", "--csv", "--model", str(tiny_onnx_model), os.fsdecode(folder)])
    raw = capsysbinary.readouterr().out
    assert code == exitcodes.PARTIAL
    text = raw.decode("utf-8", errors="surrogateescape")
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {os.fsencode(row["path"]) for row in table} == names
    assert list(table[0]) == list(records.CSV_FIELDS)
    photos = [row for row in table if row["kind"] == "photo"]
    assert len(photos) == len(ODD_NAMES)
    for row in photos:
        assert row["verdict"] in {GENUINE, COUNTERFEIT, REFER}
        assert 0.0 <= float(row["confidence"]) <= 1.0
        assert row["top1_class"] and float(row["top1_probability"]) >= float(row["top2_probability"])


def test_odd_file_names_in_the_table_are_escaped_not_fatal(tiny_onnx_model, odd_folder, capsys):
    folder, _ = odd_folder
    code = main(["predict", "--model", str(tiny_onnx_model), os.fsdecode(folder)])
    out = capsys.readouterr().out
    assert code == exitcodes.PARTIAL
    assert len(re.findall(r"GENUINE|COUNTERFEIT|REFER", out)) == len(ODD_NAMES)
    assert out.count("ERROR") == 1
    assert "\udcff" not in out and "\\xff" in out  # the undecodable byte, shown escaped


# --- the JSON schema ----------------------------------------------------------------------

# Written from the table in longteng/inference/records.py: (types allowed, kinds where not null).
SCHEMA = {
    "schema_version": ((int,), {"photo", "item", "error"}),
    "kind": ((str,), {"photo", "item", "error"}),
    "path": ((str,), {"photo", "error"}),
    "item": ((str,), {"item"}),
    "verdict": ((str,), {"photo", "item"}),
    "refer_reason": ((str,), {"photo", "item"}),
    "product": ((str,), {"photo", "item"}),
    "confidence": ((float,), {"photo", "item"}),
    "counterfeit_score": ((float,), {"photo", "item"}),
    "product_confidence": ((float,), {"photo", "item"}),
    "top_classes": ((list,), {"photo", "item"}),
    "unknown_score": ((float,), set()),  # null when the model has no detector
    "unknown": ((bool,), {"photo", "item"}),
    "product_box": ((list,), set()),  # two-stage models only
    "evidence": ((list,), {"photo", "item"}),
    "item_count": ((int,), set()),  # models that find several items per photo only
    "items_in_photo": ((list,), set()),
    "photos": ((list,), {"item"}),
    "decisive_photo": ((str,), {"item"}),
    "explain": ((str,), set()),
    "error_reason": ((str,), {"error"}),
    "error_detail": ((str,), {"error"}),
    "model_version": ((str,), {"photo", "item", "error"}),
}


def _documented_keys() -> list[str]:
    """The first word of each row of the key table in the records module's docstring."""
    body = records.__doc__[records.__doc__.index("\nschema_version ") :]
    body = body[: body.index("\n====")]
    return [line.split()[0] for line in body.splitlines() if line and not line.startswith(" ")]


def _check_schema(row: dict) -> None:
    assert list(row) == list(SCHEMA)
    assert row["schema_version"] == 1
    for key, (types, required_in) in SCHEMA.items():
        value = row[key]
        if value is None:
            assert row["kind"] not in required_in, f"{key} is null in a {row['kind']} row"
        else:
            assert isinstance(value, types), f"{key}: {value!r} is not {types}"
            if types == (float,):
                assert not isinstance(value, bool)
    if row["verdict"] is not None:
        assert row["verdict"] in {GENUINE, COUNTERFEIT, REFER}
        assert row["refer_reason"] in {"", "uncertain", "unknown"}
        assert (row["refer_reason"] != "") == (row["verdict"] == REFER)
    for entry in row["top_classes"] or []:
        assert set(entry) == {"class", "probability"} and 0.0 <= entry["probability"] <= 1.0
    for entry in row["photos"] or []:
        assert set(entry) == {"path", "verdict", "counterfeit_score", "unknown", "explain"}


def test_the_documented_keys_are_the_keys_written():
    assert _documented_keys() == list(SCHEMA) == list(records.FIELDS)


def test_every_row_kind_follows_the_documented_schema(tiny_onnx_model, tmp_path, capsys):
    good = [save(photo(seed=i), tmp_path / "box" / f"{i}.png") for i in range(2)]
    missing = tmp_path / "missing.png"
    _, photo_rows = run_json(["--model", str(tiny_onnx_model), *map(str, good), str(missing)], capsys)
    _, item_rows = run_json(["--model", str(tiny_onnx_model), "--item", "box", *map(str, good)], capsys)
    rows = photo_rows + item_rows
    assert [row["kind"] for row in rows] == ["photo", "photo", "error", "item"]
    for row in rows:
        _check_schema(row)
    assert isinstance(photo_rows[0]["unknown_score"], float)  # the tiny model has a detector


# --- heatmaps -----------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["jpg", "png"])
def test_explain_writes_one_overlay_per_photo_at_the_photos_size(tiny_onnx_model, tmp_path, capsys, image_format):
    wide = save(photo((120, 60), seed=1), tmp_path / "in" / "wide.jpg", quality=90)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    turned = save(photo((80, 50), seed=2), tmp_path / "in" / "sub" / "wide.jpg", quality=90, exif=exif.tobytes())
    out = tmp_path / "heat"

    code, rows = run_json(
        ["--model", str(tiny_onnx_model), "--explain", str(out), "--explain-format", image_format, str(wide), str(turned)],
        capsys,
    )

    assert code == exitcodes.OK
    overlays = [Path(row["explain"]) for row in rows]
    assert sorted(overlays) == sorted(out.iterdir())  # one each, the same stem kept apart
    assert len(set(overlays)) == 2
    expected_sizes = [(120, 60), (50, 80)]  # the second is upright: EXIF 6 turns 80x50 on its side
    for overlay, size in zip(overlays, expected_sizes):
        assert overlay.suffix == f".{image_format}"
        with Image.open(overlay) as image:
            assert image.size == size


def test_explain_overlay_keeps_the_photo_where_there_is_no_heat(tiny_onnx_model, tmp_path, capsys):
    source = save(photo((96, 72)), tmp_path / "p.png")
    code, rows = run_json(["--model", str(tiny_onnx_model), "--explain", str(tmp_path / "h"), "--explain-format", "png", str(source)], capsys)
    assert code == exitcodes.OK
    original = np.asarray(Image.open(source).convert("RGB"), dtype=np.int16)
    overlay = np.asarray(Image.open(rows[0]["explain"]).convert("RGB"), dtype=np.int16)
    changed = np.abs(original - overlay).max(axis=2) > 0
    assert changed.any()  # something is coloured...
    assert not changed.all()  # ...and the coldest region keeps the photo's own pixels


@pytest.mark.parametrize("size", [(96, 72), (72, 96), (64, 64), (300, 7), (7, 300), (65, 64)])
def test_content_box_is_where_resize_to_input_puts_the_photo(size):
    spec = PreprocessSpec(input_size=64, interpolation="nearest")
    filled = Image.new("RGB", size, (255, 0, 255))  # far from the grey padding
    resized = resize_to_input(filled, spec)
    is_photo = np.all(resized == (255, 0, 255), axis=2)
    rows, columns = np.nonzero(is_photo)
    assert content_box(*size, spec) == (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)


def test_overlay_names_are_safe_and_unique_per_input():
    names = [overlay_name(Path(p), "jpg") for p in ("a/front.jpg", "b/front.jpg", 'x/we"ird, na\nme.jpg', "/\udcff.png")]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+-[0-9a-f]{8}\.jpg", name) for name in names)
    assert overlay_name(Path("a/front.jpg"), "jpg") == names[0]  # stable


# --- items --------------------------------------------------------------------------------

POINT = OperatingPoint(refer_low=0.3, refer_high=0.7, max_false_alarm_rate=0.02, min_counterfeit_recall=0.98)


def _photo_prediction(name: str, score: float, unknown: bool = False) -> PhotoPrediction:
    verdict = REFER if unknown else (GENUINE if score < 0.3 else COUNTERFEIT if score >= 0.7 else REFER)
    decision = Decision(verdict, "drone", max(score, 1 - score), score, 0.99, "unknown" if unknown else "")
    probabilities = np.array([score, 1 - score])
    top = (("drone/counterfeit", score), ("drone/genuine", 1 - score))
    return PhotoPrediction(Path(name), decision, top, probabilities, 9.0 if unknown else 1.0, unknown, None)


@pytest.mark.parametrize(
    "scores, unknown, verdict, reason, decisive",
    [
        ([0.05, 0.1, 0.02], [False] * 3, GENUINE, "", "b"),
        ([0.05, 0.9, 0.02], [False] * 3, COUNTERFEIT, "", "b"),  # a tell on one side decides
        ([0.05, 0.5, 0.02], [False] * 3, REFER, "uncertain", "b"),
        ([0.05, 0.1, 0.02], [False, False, True], REFER, "unknown", "b"),  # cannot clear an unknown photo
        ([0.05, 0.9, 0.95], [False, False, True], COUNTERFEIT, "", "b"),  # the unknown photo's score is ignored
        ([0.05, 0.9], [True, True], REFER, "unknown", "b"),
    ],
)
def test_an_item_is_as_suspicious_as_its_most_suspicious_photo(scores, unknown, verdict, reason, decisive):
    photos = [_photo_prediction(name, s, u) for name, s, u in zip("abc", scores, unknown)]
    item = combine("box", photos, POINT)
    assert item.decision.verdict == verdict
    assert item.decision.refer_reason == reason
    assert item.decisive.path == Path(decisive)
    assert item.decision.counterfeit_score == dict(zip("abc", scores))[decisive]
    assert item.unknown == any(unknown)


def test_item_gives_one_row_for_all_photos(tiny_onnx_model, tmp_path, capsys):
    paths = [save(photo(seed=i), tmp_path / f"side{i}.png") for i in range(3)]
    model = ["--model", str(tiny_onnx_model)]
    _, single = run_json([*model, *map(str, paths)], capsys)
    code, rows = run_json([*model, "--item", "box-17", *map(str, paths)], capsys)

    assert code == exitcodes.OK
    assert len(rows) == 1
    (row,) = rows
    assert (row["kind"], row["item"]) == ("item", "box-17")
    assert [p["path"] for p in row["photos"]] == [str(p) for p in paths]
    most_suspicious = max(single, key=lambda r: r["counterfeit_score"])
    assert row["decisive_photo"] == most_suspicious["path"]
    assert row["counterfeit_score"] == pytest.approx(most_suspicious["counterfeit_score"])


def test_group_by_parent_gives_one_row_per_folder_and_reports_lost_photos(tiny_onnx_model, tmp_path, capsys):
    for i in range(2):
        save(photo(seed=i), tmp_path / "case1" / f"{i}.png")
    save(photo(seed=5), tmp_path / "case2" / "front.png")
    (tmp_path / "case2" / "label.jpg").write_bytes(b"")
    (tmp_path / "case3").mkdir()
    (tmp_path / "case3" / "only.jpg").write_text("nope")

    code, rows = run_json(["--model", str(tiny_onnx_model), "--group-by", "parent", str(tmp_path)], capsys)

    assert code == exitcodes.PARTIAL
    summary = [(row["kind"], row["item"], row["error_reason"]) for row in rows]
    assert summary == [
        ("item", str(tmp_path / "case1"), None),
        ("item", str(tmp_path / "case2"), None),
        ("error", str(tmp_path / "case2"), "empty"),
        ("error", str(tmp_path / "case3"), "no_photos"),
        ("error", str(tmp_path / "case3"), "not_an_image"),
    ]
    assert len(rows[0]["photos"]) == 2 and len(rows[1]["photos"]) == 1


# --- fatal and usage errors ---------------------------------------------------------------


def test_missing_model_is_one_line_naming_it_before_any_work(tmp_path, capsys):
    model = tmp_path / "no" / "model.onnx"
    explain = tmp_path / "heatmaps"
    code = main(["predict", "--model", str(model), "--explain", str(explain), str(tmp_path)])
    captured = capsys.readouterr()
    assert code == exitcodes.ERROR
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert str(model) in captured.err
    assert not explain.exists()  # nothing was done


def test_model_defaults_to_longteng_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LONGTENG_MODEL", str(tmp_path / "env.onnx"))
    code = main(["predict", str(tmp_path)])
    assert code == exitcodes.ERROR
    assert str(tmp_path / "env.onnx") in capsys.readouterr().err


def test_a_file_that_is_not_a_model_is_fatal(tmp_path, capsys):
    fake = tmp_path / "model.onnx"
    fake.write_text("not onnx")
    code = main(["predict", "--model", str(fake), str(tmp_path)])
    err = capsys.readouterr().err
    assert code == exitcodes.ERROR and str(fake) in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "options", [["--json", "--csv"], ["--item", "x", "--group-by", "parent"], ["--group-by", "grandparent"],
                ["--device", "tpu"], ["--explain-format", "gif"], ["--threads", "-1"], ["--batch-size", "0"],
                ["--max-pixels", "0"]],
)
def test_usage_errors_exit_2(tmp_path, capsys, options):
    code = main(["predict", "--model", str(tmp_path / "m.onnx"), *options, str(tmp_path)])
    assert code == exitcodes.USAGE
    assert capsys.readouterr().err.strip()


# --- the officer's path stays light -------------------------------------------------------

TOP_LEVEL = ("torch", "torchvision", "timm", "onnx", "matplotlib", "sklearn", "skimage", "scipy")
OURS = ("longteng.training", "longteng.model")
# Plain dataclasses, no torch: the CLI reads `longteng train`'s defaults from TrainConfig so
# the two cannot drift. Everything else of training stays out of the officer's process.
ALLOWED = ("longteng.training", "longteng.training.config")


def test_predict_imports_no_torch_or_training_code(tiny_onnx_model, tmp_path):
    good = save(photo(), tmp_path / "p.png")
    script = (
        "import sys\n"
        "from longteng.cli.main import main\n"
        f"code = main(['predict', '--json', '--model', {str(tiny_onnx_model)!r}, {str(good)!r}, '--explain', {str(tmp_path / 'h')!r}])\n"
        f"heavy = sorted(m for m in sys.modules if (m.split('.')[0] in {TOP_LEVEL!r} or m.startswith({OURS!r})) and m not in {ALLOWED!r})\n"
        "print('HEAVY', heavy, code, file=sys.stderr)\n"
    )
    help_script = (
        "import sys\nfrom longteng.cli.main import main\nmain(['--help'])\n"
        f"print('HEAVY', sorted(m for m in sys.modules if (m.split('.')[0] in {TOP_LEVEL!r} or m.startswith({OURS!r})) and m not in {ALLOWED!r}), file=sys.stderr)\n"
    )
    for text in (script, help_script):
        completed = subprocess.run([sys.executable, "-c", text], capture_output=True, text=True, timeout=120)
        assert completed.returncode == 0, completed.stderr
        heavy_line = [line for line in completed.stderr.splitlines() if line.startswith("HEAVY")][-1]
        assert heavy_line.startswith("HEAVY []"), heavy_line
    assert json.loads(subprocess.run(
        [sys.executable, "-m", "longteng", "predict", "--json", "--model", str(tiny_onnx_model), str(good)],
        capture_output=True, text=True, timeout=120,
    ).stdout)["path"] == str(good)
