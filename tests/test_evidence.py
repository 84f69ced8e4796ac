"""Evidence masks: where a counterfeit's tells are, from the generator to the focus crop's cells."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from longteng.data.evidence import EVIDENCE_GRID, evidence_at, format_evidence, parse_evidence, quad_frame_coordinates
from longteng.data.synth import PRODUCTS, TELLS, SynthConfig, synthesize
from longteng.data.synth.designs import genuine_design
from longteng.data.synth.evidence import evidence_mask
from longteng.data.synth.tells import TellInstance, apply_tells
from longteng.focus import FocusSpec, OrientedBox, parse_quad
from longteng.training.focus_data import evidence_target


def test_format_and_parse_round_trip() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random(EVIDENCE_GRID) < 0.2
    assert np.array_equal(parse_evidence(format_evidence(mask)), mask)
    assert format_evidence(np.zeros(EVIDENCE_GRID, bool)) == ""
    assert parse_evidence("") is None


@pytest.mark.parametrize(("text", "fragment"), [("abc", "hex digits"), ("zz" * 64, "not hex")])
def test_bad_evidence_text_is_rejected_with_the_reason(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_evidence(text)


@pytest.mark.parametrize("angle", [0.0, 30.0, 145.0])
def test_quad_frame_coordinates_invert_the_quad(angle: float) -> None:
    box = OrientedBox(300.0, 200.0, 180.0, 60.0, math.radians(angle))
    quad = box.corners()
    u, v = quad_frame_coordinates(quad, quad[:, 0], quad[:, 1])
    np.testing.assert_allclose(np.stack([u, v], 1), [[0, 0], [1, 0], [1, 1], [0, 1]], atol=1e-9)
    u, v = quad_frame_coordinates(quad, np.array([box.cx]), np.array([box.cy]))
    np.testing.assert_allclose([u[0], v[0]], [0.5, 0.5], atol=1e-9)


def _marked_rows_and_columns(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(mask)
    return (rows + 0.5) / mask.shape[0], (cols + 0.5) / mask.shape[1]


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_swapped_glyph_is_marked_inside_the_logo_and_nowhere_else(product: str) -> None:
    genuine = genuine_design(product, np.random.default_rng(4))
    fake = apply_tells(genuine, [TellInstance("glyph_swap", 0.3, 0.3, 1)])
    assert fake.logo.text != genuine.logo.text or fake.logo.mirrored != genuine.logo.mirrored
    v, u = _marked_rows_and_columns(evidence_mask(genuine, fake))
    assert len(v) > 0
    # The logo reads along the item (angle 90): it spans about its length in v, its height in u.
    length = 0.75 * len(genuine.logo.text) * genuine.logo.height
    cx, cy = genuine.logo.center
    assert np.all(np.abs(v - cy) <= length / 2 + 0.04)
    assert np.all(np.abs(u * fake.width - cx) <= genuine.logo.height + 0.04)
    # One glyph, not the whole logo.
    assert np.ptp(v) < 0.6 * length


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_dropped_mark_is_marked_on_the_marks_row(product: str) -> None:
    genuine = genuine_design(product, np.random.default_rng(5))
    fake = apply_tells(genuine, [TellInstance("cert_mark", 0.5, 0.5, 2)])
    assert len(fake.marks) == len(genuine.marks) - 1
    v, _ = _marked_rows_and_columns(evidence_mask(genuine, fake))
    row = genuine.marks[0].center[1]
    assert len(v) > 0 and np.all(np.abs(v - row) <= genuine.marks[0].size + 0.04)


@pytest.mark.parametrize("tell", TELLS)
def test_every_tell_marks_something_and_genuine_marks_nothing(tell: str) -> None:
    for product in PRODUCTS:
        genuine = genuine_design(product, np.random.default_rng(6))
        assert not evidence_mask(genuine, genuine).any()
        fake = apply_tells(genuine, [TellInstance(tell, 0.6, 0.6, 3)])
        assert evidence_mask(genuine, fake).any(), f"{product}/{tell}: nothing marked"


def test_the_manifest_carries_evidence_for_counterfeits_only(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    synthesize(SynthConfig(images=16, size=(160, 120), images_per_case=4, seed=2), out, workers=1)
    with open(out / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["evidence"] == "" for r in rows if r["authenticity"] == "genuine"} == {True}
    counterfeit = [r for r in rows if r["authenticity"] == "counterfeit"]
    assert counterfeit and all(parse_evidence(r["evidence"]).any() for r in counterfeit)


def test_evidence_maps_onto_the_focus_crop_cells() -> None:
    """A crop cut at the item's own box: the left half of the item marked lands on the left
    half of the crop's inner cells, and the margin is never marked."""
    box = OrientedBox(400.0, 300.0, 320.0, 160.0, math.radians(20.0))
    quad = box.corners()
    mask = np.zeros(EVIDENCE_GRID, bool)
    mask[:, : EVIDENCE_GRID[1] // 2] = True
    spec = FocusSpec(input_size=384)
    target = evidence_target(mask, quad, box, spec, (12, 12))
    assert target[:, 6:].max() == 0.0
    assert target[0].max() == 0.0 and target[-1].max() == 0.0  # the 12% margin above and below
    # The item is 320 long in a 384 crop of (1 + 2 * margin) * 320: its cells are fully inside.
    assert target[4:8, 4].min() == 1.0
    x, y = quad.mean(axis=0) + 0.25 * (quad[0] - quad[1])  # a point on the left half
    assert evidence_at(mask, quad, np.array([x]), np.array([y]))[0]


def test_parse_quad_and_evidence_agree_on_the_photo_frame() -> None:
    quad = parse_quad("0.1 0.1 0.3 0.1 0.3 0.6 0.1 0.6", (1000, 800))
    mask = np.zeros(EVIDENCE_GRID, bool)
    mask[0, 0] = True  # the item's top-left cell
    assert evidence_at(mask, quad, np.array([101.0]), np.array([81.0]))[0]
    assert not evidence_at(mask, quad, np.array([299.0]), np.array([479.0]))[0]


@pytest.fixture(scope="module")
def marked_photos(tmp_path_factory: pytest.TempPathFactory):
    from longteng.data.layout import scan_dataset

    out = tmp_path_factory.mktemp("evidence") / "synth"
    synthesize(SynthConfig(images=16, size=(320, 240), images_per_case=4, seed=5), out, workers=1)
    return [r for r in scan_dataset(out) if r.is_counterfeit and r.extra["evidence"]]


def test_the_pointing_measure_counts_a_peak_on_the_tell_as_a_hit_and_elsewhere_as_a_miss(marked_photos) -> None:
    from longteng.training.pointing import _cells_on_evidence, pointing_report

    classes = sorted({f"{r.product}/{a}" for r in marked_photos for a in ("counterfeit", "genuine")})
    focus = FocusSpec(input_size=384)
    size = (320, 240)
    boxes, on_target, off_target = [], [], []
    for record in marked_photos:
        quad = parse_quad(record.extra["quad"], size)
        box = OrientedBox.from_quad(quad)
        on_tell = _cells_on_evidence(parse_evidence(record.extra["evidence"]), quad, box, focus, (12, 12))
        on_item = _cells_on_evidence(np.ones(EVIDENCE_GRID, bool), quad, box, focus, (12, 12))
        assert on_tell.any() and (on_item & ~on_tell).any()
        fake = classes.index(f"{record.product}/counterfeit")
        hit, miss = np.zeros((len(classes), 12, 12)), np.zeros((len(classes), 12, 12))
        hit[fake][np.argwhere(on_tell)[0][0], np.argwhere(on_tell)[0][1]] = 5.0
        elsewhere = np.argwhere(on_item & ~on_tell)[0]
        miss[fake][elsewhere[0], elsewhere[1]] = 5.0
        boxes.append(box)
        on_target.append(hit)
        off_target.append(miss)
    good = pointing_report(marked_photos, np.stack(on_target), boxes, [size] * len(boxes), classes, focus)
    bad = pointing_report(marked_photos, np.stack(off_target), boxes, [size] * len(boxes), classes, focus)
    assert good["n"] == bad["n"] == len(marked_photos)
    assert good["peak_on_tell"] == 1.0 and bad["peak_on_tell"] == 0.0
    assert 0.0 < good["chance"] < 1.0
    assert pointing_report(marked_photos, np.stack(on_target), [None] * len(boxes), [size] * len(boxes), classes, focus) is None
