"""The artwork check (inference/artwork_check.py): what it measures of the logo OCR finds, what it
learns from genuine references, and which drifts are evidence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from longteng.errors import CheckpointError, ConfigError
from longteng.decision import counterfeit_score
from longteng.inference.artwork_check import (
    INK, ArtworkCheck, ArtworkFinding, apply_artwork_check, find_logo, ink_against_shell, logo_word, measure,
)
from longteng.inference.text_check import TextRead, read_text

SHELL, INK_COLOUR = (40, 42, 46), (200, 204, 210)
SIZE = 384


def box_read(text: str, centre=(192.0, 192.0), length=150.0, height=30.0, turn=0.0, confidence=0.99) -> TextRead:
    """A vertical logo read (as the products print theirs: along the item), turned by ``turn`` degrees."""
    c, s = math.cos(math.radians(turn)), math.sin(math.radians(turn))
    along, across = np.array([s, c]), np.array([c, -s])
    corners = [np.array(centre) + a * along * length / 2 + b * across * height / 2 for a, b in ((-1, -1), (-1, 1), (1, 1), (1, -1))]
    return TextRead(text, confidence, tuple((float(x), float(y)) for x, y in corners))


def crop_with_logo(read: TextRead, ink=INK_COLOUR, shell=SHELL) -> np.ndarray:
    """A shell with the read's box filled by stripes of ink (a third of it), like glyph strokes."""
    image = Image.new("RGB", (SIZE, SIZE), shell)
    mask = Image.new("L", (SIZE, SIZE))
    ImageDraw.Draw(mask).polygon(list(read.box), fill=255)
    stripes = np.zeros((SIZE, SIZE), bool)
    stripes[:, ::3] = True
    pixels = np.array(image)
    pixels[np.asarray(mask, bool) & stripes] = ink
    return pixels


def test_the_measures_of_a_logo_box():
    read = box_read("KORVEX", centre=(180.0, 200.0), length=160.0, height=32.0, turn=3.0)
    found = measure(crop_with_logo(read), [read, TextRead("CE", 0.99, read.box)], aspect=0.31, logo="KORVEX")
    assert found.scalars["logo_across"] == pytest.approx(180 / SIZE)
    assert found.scalars["logo_along"] == pytest.approx(200 / SIZE)
    assert found.scalars["logo_length"] == pytest.approx(math.log(160 / SIZE))
    assert found.scalars["logo_thickness"] == pytest.approx(32 / 160)
    assert found.scalars["logo_turn"] == pytest.approx(3.0)
    assert found.scalars["aspect"] == pytest.approx(math.log(0.31))
    expected_ink = np.log(np.array(INK_COLOUR) + 4.0) - np.log(np.array(SHELL) + 4.0)
    assert found.ink == pytest.approx(expected_ink, abs=1e-9)


def test_without_the_logo_only_the_item_is_measured():
    other = box_read("CE")
    found = measure(crop_with_logo(other), [other], aspect=0.5, logo="KORVEX")
    assert found.scalars == {"aspect": math.log(0.5)} and found.ink is None and found.logo_box is None


@pytest.mark.parametrize("text, found", [
    ("KORVEX", True), ("KOPVEX", True), ("K0PUEX", True),  # a counterfeit's swapped glyphs are still its logo
    ("KORVEXX", False), ("KOR", False), ("SKYRIDGE", False), ("ABCDEF", False),
])
def test_which_read_is_the_logo(text, found):
    assert (find_logo([box_read(text)], "KORVEX") is not None) is found


def test_the_logo_is_the_word_most_references_read():
    photos = [[box_read("KORVEX"), box_read("CE")], [box_read("KORVEX")], [box_read("KOPVEX")], [box_read("128GB")]]
    assert logo_word(photos) == "KORVEX"
    assert logo_word([[box_read("CE")]]) is None


def test_ink_is_measured_against_the_shell_whatever_the_lamp():
    read = box_read("KORVEX")
    white = ink_against_shell(crop_with_logo(read), np.array(read.box))
    # A warm lamp: every channel scaled by its own gain; the log ratios barely move.
    gains = np.array([1.15, 1.0, 0.8])
    warm = ink_against_shell(crop_with_logo(read, tuple((np.array(INK_COLOUR) * gains).astype(int)),
                                            tuple((np.array(SHELL) * gains).astype(int))), np.array(read.box))
    assert np.abs(white - warm).max() < 0.05
    red = ink_against_shell(crop_with_logo(read, (214, 58, 58)), np.array(read.box))
    assert np.abs(white - red).max() > 0.5


def references(n: int = 12, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    photos = []
    for _ in range(n):
        read = box_read("KORVEX", centre=(192 + rng.normal(0, 0.8), 192 + rng.normal(0, 0.8)), length=150 + rng.normal(0, 0.8))
        photos.append((crop_with_logo(read), [read], 0.30 + rng.normal(0, 0.002)))
    return photos


@pytest.fixture(scope="module")
def check() -> ArtworkCheck:
    return ArtworkCheck.learn({"usb_flash_drive": references()})


@pytest.mark.parametrize("read, ink, aspect, measure_name", [
    (box_read("KORVEX", centre=(192.0, 215.0)), INK_COLOUR, 0.30, "logo_along"),  # logo shifted along the item
    (box_read("KORVEX", centre=(210.0, 192.0)), INK_COLOUR, 0.30, "logo_across"),
    (box_read("KORPEX", length=185.0), INK_COLOUR, 0.30, "logo_length"),  # set wider (and misspelt: still measured)
    (box_read("KORVEX", turn=11.0), INK_COLOUR, 0.30, "logo_turn"),
    (box_read("KORVEX"), (214, 176, 52), 0.30, INK),  # an off-brand yellow
    (box_read("KORVEX"), INK_COLOUR, 0.36, "aspect"),  # a shell 20% too wide
])
def test_drifts_from_the_references_fire_with_what_drifted(check, read, ink, aspect, measure_name):
    score, finding = check.score("usb_flash_drive", crop_with_logo(read, ink), [read], aspect)
    assert finding is not None and finding.measure == measure_name and score >= check.fires_at
    assert finding.describe()
    assert (finding.box is None) == (measure_name == "aspect")


def test_a_genuine_item_within_the_tolerances_does_not_fire(check):
    for crop, reads, aspect in references(n=20, seed=1):
        score, finding = check.score("usb_flash_drive", crop, reads, aspect)
        assert finding is None and score < check.fires_at


def test_nothing_to_say_about_a_product_without_references_or_a_photo_without_its_logo(check):
    read = box_read("KORVEX", centre=(192.0, 250.0))
    assert check.score("drone", crop_with_logo(read), [read], 0.3) == (0.0, None)
    other = box_read("128GB")
    score, finding = check.score("usb_flash_drive", crop_with_logo(other), [other], None)
    assert (score, finding) == (0.0, None)


def test_the_check_survives_its_json(check):
    again = ArtworkCheck.from_json(check.to_json())
    assert again.to_json() == check.to_json()
    # Stored to 4-5 decimals: the scores agree to a thousandth of a spread, on photos that fire and that do not.
    for read, ink, aspect in ((box_read("KORVEX", centre=(192.0, 215.0)), (90, 160, 90), 0.33), (box_read("KORVEX"), INK_COLOUR, 0.3)):
        crop = crop_with_logo(read, ink)
        first, second = check.score("usb_flash_drive", crop, [read], aspect), again.score("usb_flash_drive", crop, [read], aspect)
        assert first[0] == pytest.approx(second[0], abs=1e-3)
        assert (first[1] is None) == (second[1] is None)


@pytest.mark.parametrize("damage, field", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d["products"]["usb_flash_drive"]["measures"].update(shine=[1.0, 0.1]), "shine"),
    (lambda d: d["products"]["usb_flash_drive"]["measures"].update(aspect=[0.3, 0.0]), "positive spreads"),
    (lambda d: d["products"]["usb_flash_drive"].pop("logo"), "usb_flash_drive"),
    (lambda d: d.update(mismatch_probability=0.3), "mismatch_probability"),
    (lambda d: d.update(fires_at=-1), "fires_at"),
])
def test_a_damaged_check_is_refused_naming_what_is_wrong(check, damage, field):
    data = json.loads(check.to_json())
    damage(data)
    with pytest.raises(ConfigError, match=field):
        ArtworkCheck.from_json(json.dumps(data))


@pytest.mark.parametrize("finding, text", [
    (ArtworkFinding("logo_length", math.log(0.5), math.log(0.4), 8.0, None), "logo 25% longer than registered"),
    (ArtworkFinding("aspect", math.log(0.3), math.log(0.36), 9.0, None), "item's width to length 17% smaller than registered"),
    (ArtworkFinding("logo_thickness", 0.25, 0.2, 7.0, None), "logo's height to length 25% larger than registered"),
    (ArtworkFinding("logo_turn", 7.0, 0.5, 6.5, None), "logo turned +6.5 degrees from registered"),
    # 0.05 of the crop's side is 0.062 of the item's length (the crop adds a margin of 12% on each side).
    (ArtworkFinding("logo_along", 0.55, 0.5, 6.0, None), "logo moved 6.2% of the item's length along it from its registered place"),
    (ArtworkFinding(INK, 0.9, 0.0, 15.2, None), "logo ink unlike every genuine reference (15 spreads off)"),
])
def test_a_finding_says_what_drifted_and_by_how_much(finding, text):
    assert finding.describe() == text
    assert finding.to_dict()["description"] == text and finding.to_dict()["detector"] == "artwork"


def test_a_finding_raises_the_counterfeit_score_of_its_photo_only(check):
    names = ["usb_flash_drive/counterfeit", "usb_flash_drive/genuine"]
    probabilities = np.array([[0.1, 0.9], [0.1, 0.9]])
    genuine, shifted = box_read("KORVEX"), box_read("KORVEX", centre=(192.0, 220.0))
    crops = np.stack([crop_with_logo(genuine), crop_with_logo(shifted)])
    fused, findings, scores = apply_artwork_check(check, crops, [[genuine], [shifted]], [0.3, 0.3], probabilities, names)
    assert findings[0] is None and isinstance(findings[1], ArtworkFinding)
    score = counterfeit_score(fused, names)
    assert score[0] == pytest.approx(0.1)
    assert score[1] == pytest.approx(1 - 0.9 * (1 - check.mismatch_probability))
    assert scores[1] > scores[0]


def test_a_registered_product_gets_its_artwork_learnt(check):
    extended = check.with_product("power_bank", references(seed=3))
    assert set(extended.products) == {"usb_flash_drive", "power_bank"}
    read = box_read("KORVEX", length=190.0)
    assert extended.score("power_bank", crop_with_logo(read), [read], 0.3)[1].measure == "logo_length"


def test_ocr_finds_and_measures_a_printed_logo():
    """The runtime's own OCR on a printed word: the box it gives is the ruler the check uses."""
    def printed(offset: int, colour=(210, 210, 210)) -> np.ndarray:
        image = Image.new("RGB", (SIZE, SIZE), SHELL)
        ImageDraw.Draw(image).text((192, 160 + offset), "KORVEX", fill=colour, font=ImageFont.load_default(size=48), anchor="mm")
        return np.asarray(image)

    genuine = [(printed(dy), read_text(printed(dy), threads=1), 0.3) for dy in (-1, 0, 1, 0, 1, -1, 0, 1)]
    check = ArtworkCheck.learn({"usb_flash_drive": genuine})
    assert check.products["usb_flash_drive"].logo == "KORVEX"
    moved = printed(40)
    score, finding = check.score("usb_flash_drive", moved, read_text(moved, threads=1), 0.3)
    assert finding is not None and finding.measure == "logo_along"
    yellow = printed(0, (214, 176, 52))
    assert check.score("usb_flash_drive", yellow, read_text(yellow, threads=1), 0.3)[1].measure == INK
    same = printed(0)
    assert check.score("usb_flash_drive", same, read_text(same, threads=1), 0.3)[1] is None


def test_metadata_refuses_an_artwork_check_without_the_text_check(check):
    from dataclasses import replace

    from longteng.decision import OperatingPoint
    from longteng.focus import FocusSpec
    from longteng.inference.metadata import ModelMetadata
    from longteng.preprocess import PreprocessSpec

    metadata = ModelMetadata(
        class_names=["usb_flash_drive/counterfeit", "usb_flash_drive/genuine"], preprocess=PreprocessSpec(), temperature=1.0,
        operating_point=OperatingPoint(0.2, 0.8, 0.02, 0.98), unknown=None, model_version="test", provenance={},
        focus=FocusSpec(), glance_trained=True, artwork_check=check,
    )
    with pytest.raises(CheckpointError, match="longteng.artwork_check needs longteng.text_registry"):
        metadata.check("model.onnx")
    from longteng.inference.text_check import TextRegistry

    fine = replace(metadata, text_registry=TextRegistry({"usb_flash_drive": {"words": ["KORVEX"], "formats": []}}))
    fine.check("model.onnx")
    again = ModelMetadata.from_props(fine.to_props())
    assert again.artwork_check is not None and again.artwork_check.to_json() == check.to_json()
