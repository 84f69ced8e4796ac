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
    INK, MIN_REFERENCES, ArtworkCheck, ArtworkFinding, apply_artwork_check, find_logo, ink_against_shell, logo_word, measure,
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


def test_the_measures_of_a_logo_and_its_anchor():
    logo = box_read("KORVEX", centre=(180.0, 200.0), length=160.0, height=32.0)
    anchor = box_read("64GB", centre=(180.0, 300.0), length=50.0, height=20.0, turn=90.0)
    found = measure(crop_with_logo(logo), [logo, anchor], logo="KORVEX", anchor="9A?")  # 64GB's format (text_check.shape)
    assert found.scalars["logo_length"] == pytest.approx(math.log(160 / SIZE))
    assert found.scalars["logo_thickness"] == pytest.approx(32 / 160)
    assert found.scalars["anchor_along"] == pytest.approx(100 / 160)
    expected_ink = np.log(np.array(INK_COLOUR) + 4.0) - np.log(np.array(SHELL) + 4.0)
    assert found.ink == pytest.approx(expected_ink, abs=1e-9)
    assert found.logo_box == logo.box


def test_the_anchor_is_measured_the_same_in_a_crop_turned_half_round():
    logo = box_read("KORVEX", centre=(192.0, 150.0))
    anchor = box_read("CE", centre=(200.0, 260.0), length=40.0, height=20.0, turn=90.0)
    upright = measure(crop_with_logo(logo), [logo, anchor], "KORVEX", "CE").scalars
    turned = [TextRead(r.text, r.confidence, tuple((SIZE - x, SIZE - y) for x, y in r.box)) for r in (logo, anchor)]
    flipped = measure(crop_with_logo(turned[0]), turned, "KORVEX", "CE").scalars
    for name in ("anchor_along", "logo_length", "logo_thickness"):
        assert flipped[name] == pytest.approx(upright[name])


def test_without_the_logo_nothing_is_measured():
    other = box_read("CE")
    found = measure(crop_with_logo(other), [other], logo="KORVEX", anchor="CE")
    assert found.scalars == {} and found.ink is None and found.logo_box is None


@pytest.mark.parametrize("text, confidence, found", [
    ("KORVEX", 0.99, True), ("korvex", 0.99, True), (" KORVEX ", 0.92, True),
    # Unsure or misread: often a logo that glare or packing covers in part, whose box and ink
    # would mislead; a misspelt logo is the text check's evidence.
    ("KORVEX", 0.85, False), ("KOPVEX", 0.99, False), ("KORVEXX", 0.99, False), ("SKYRIDGE", 0.99, False),
])
def test_which_read_is_the_logo(text, confidence, found):
    assert (find_logo([box_read(text, confidence=confidence)], "KORVEX") is not None) is found


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


def item(logo_shift=0.0, logo_length=150.0, logo_height=30.0, turn=0.0, crop_shift=(0.0, 0.0), crop_scale=1.0,
         ink=INK_COLOUR, logo_text="KORVEX"):
    """A crop of a drive: the logo with the capacity label (its anchor) below it. ``crop_*``: how
    the glance's box framed it (the whole artwork moves); ``logo_*``: the artwork itself."""
    def at(x, y):
        return (192 + (x - 192) * crop_scale + crop_shift[0], 192 + (y - 192) * crop_scale + crop_shift[1])

    logo = box_read(logo_text, centre=at(192.0, 170.0 + logo_shift), length=logo_length * crop_scale,
                    height=logo_height * crop_scale, turn=turn)
    label = box_read("128GB", centre=at(192.0, 280.0), length=60.0 * crop_scale, height=22.0 * crop_scale, turn=90.0)
    return crop_with_logo(logo, ink), [logo, label]


def references(n: int = MIN_REFERENCES, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [item(logo_shift=rng.normal(0, 0.7), logo_length=150 + rng.normal(0, 0.7), crop_scale=1 + rng.normal(0, 0.01),
                 crop_shift=tuple(rng.normal(0, 4, 2))) for _ in range(n)]


@pytest.fixture(scope="module")
def check() -> ArtworkCheck:
    return ArtworkCheck.learn({"usb_flash_drive": references()})


def test_the_references_teach_the_logo_and_the_anchor(check):
    learnt = check.products["usb_flash_drive"]
    assert (learnt.logo, learnt.anchor) == ("KORVEX", "9A?")  # 128GB as a format: its digits change between items
    assert set(learnt.medians) == {"logo_length", "logo_thickness", "anchor_along"}
    assert learnt.references == MIN_REFERENCES
    assert learnt.medians["anchor_along"] == pytest.approx(110 / 150, abs=0.01)


@pytest.mark.parametrize("photo, measure_name", [
    (item(logo_shift=-20.0), "anchor_along"),  # the logo printed 13% of its length higher on the item
    (item(logo_length=195.0), "logo_length"),  # set 30% wider
    (item(logo_height=45.0), "logo_thickness"),  # set half as tall again
    (item(ink=(214, 176, 52)), INK),  # an off-brand yellow
])
def test_drifts_from_the_references_fire_with_what_drifted(check, photo, measure_name):
    score, finding = check.score("usb_flash_drive", *photo)
    assert finding is not None and finding.measure == measure_name and score >= check.fires_at
    assert finding.box == photo[1][0].box


@pytest.mark.parametrize("photo", [
    item(), item(crop_shift=(25.0, -30.0)),  # the glance's box shifted: the whole artwork moves
    item(crop_scale=1.03), item(crop_scale=0.97, crop_shift=(-10.0, 12.0)),
    item(ink=(190, 196, 206)),  # another lamp
])
def test_genuine_items_however_the_glance_framed_them_do_not_fire(check, photo):
    score, finding = check.score("usb_flash_drive", *photo)
    assert finding is None and score < check.fires_at


def test_nothing_to_say_about_a_product_without_references_or_a_photo_without_its_logo(check):
    assert check.score("drone", *item(logo_shift=-30.0)) == (0.0, None)
    assert check.score("usb_flash_drive", *item(logo_shift=-30.0, logo_text="KOPVEX")) == (0.0, None)


def test_the_check_survives_its_json(check):
    again = ArtworkCheck.from_json(check.to_json())
    assert again.to_json() == check.to_json()
    # Stored to 4-5 decimals: the scores agree to a thousandth of a spread, on photos that fire and that do not.
    for photo in (item(logo_shift=-18.0), item(), item(ink=(90, 160, 90))):
        first, second = check.score("usb_flash_drive", *photo), again.score("usb_flash_drive", *photo)
        assert first[0] == pytest.approx(second[0], abs=1e-3)
        assert (first[1] is None) == (second[1] is None)


@pytest.mark.parametrize("damage, field", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d["products"]["usb_flash_drive"]["measures"].update(shine=[1.0, 0.1]), "shine"),
    (lambda d: d["products"]["usb_flash_drive"]["measures"].update(logo_length=[-1.0, 0.0]), "positive spreads"),
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
    (ArtworkFinding("logo_length", math.log(0.3), math.log(0.36), 9.0, None), "logo 17% shorter than registered"),
    (ArtworkFinding("logo_thickness", 0.25, 0.2, 7.0, None), "logo's height to length 25% larger than registered"),
    (ArtworkFinding("anchor_along", 0.62, 0.7, 6.5, None), "logo moved 8% of its length along its line against the rest of the print"),
    (ArtworkFinding(INK, 0.9, 0.0, 15.2, None), "logo ink unlike every genuine reference (15 spreads off)"),
])
def test_a_finding_says_what_drifted_and_by_how_much(finding, text):
    assert finding.describe() == text
    assert finding.to_dict()["description"] == text and finding.to_dict()["detector"] == "artwork"


def test_a_finding_raises_the_counterfeit_score_of_its_photo_only(check):
    names = ["usb_flash_drive/counterfeit", "usb_flash_drive/genuine"]
    probabilities = np.array([[0.1, 0.9], [0.1, 0.9]])
    genuine, moved = item(), item(logo_shift=-25.0)
    crops = np.stack([genuine[0], moved[0]])
    fused, findings, scores = apply_artwork_check(check, crops, [genuine[1], moved[1]], probabilities, names)
    assert findings[0] is None and isinstance(findings[1], ArtworkFinding)
    score = counterfeit_score(fused, names)
    assert score[0] == pytest.approx(0.1)
    assert score[1] == pytest.approx(1 - 0.9 * (1 - check.mismatch_probability))
    assert scores[1] > check.fires_at > scores[0]


def test_a_registered_product_gets_its_artwork_learnt_from_enough_photos(check):
    extended = check.with_product("power_bank", references(seed=3))
    assert set(extended.products) == {"usb_flash_drive", "power_bank"}
    assert extended.score("power_bank", *item(logo_length=195.0))[1].measure == "logo_length"
    # Fewer photos than MIN_REFERENCES: their spreads would be guesses, so no check for it.
    assert set(check.with_product("power_bank", references(n=MIN_REFERENCES - 1, seed=3)).products) == {"usb_flash_drive"}


def test_ocr_finds_and_measures_a_printed_logo():
    """The runtime's own OCR on printed words: the boxes it gives are the rulers the check uses."""
    def printed(logo_offset: int = 0, colour=(210, 210, 210), frame_offset: int = 0) -> np.ndarray:
        image = Image.new("RGB", (SIZE, SIZE), SHELL)
        draw = ImageDraw.Draw(image)
        # The capacity label on the logo's line, as the anchor; the frame moves both.
        draw.text((115 + logo_offset + frame_offset, 192), "KORVEX", fill=colour, font=ImageFont.load_default(size=44), anchor="mm")
        draw.text((300 + frame_offset, 192), "128GB", fill=(210, 210, 210), font=ImageFont.load_default(size=30), anchor="mm")
        return np.asarray(image)

    genuine = [(printed(dx, frame_offset=f), read_text(printed(dx, frame_offset=f), threads=1))
               for dx, f in ((-1, 0), (0, 6), (1, -6), (0, 3), (1, 0), (-1, -3), (0, 8), (1, -8))]
    check = ArtworkCheck.learn({"usb_flash_drive": genuine}, min_references=len(genuine))
    assert (check.products["usb_flash_drive"].logo, check.products["usb_flash_drive"].anchor) == ("KORVEX", "9A?")
    for photo, expected in ((printed(frame_offset=12), None), (printed(-25), "anchor_along"), (printed(colour=(214, 176, 52)), INK)):
        finding = check.score("usb_flash_drive", photo, read_text(photo, threads=1))[1]
        assert (None if finding is None else finding.measure) == expected


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


def test_the_station_shows_the_finding_an_expert_checks():
    from longteng.station.pages import _evidence

    entry = ArtworkFinding(INK, 0.9, 0.0, 15.2, None).to_dict()
    assert _evidence(entry) == '<p class="evidence">logo ink unlike every genuine reference (15 spreads off)</p>'
    assert "&lt;b&gt;" in _evidence({**entry, "description": "<b>"})  # escaped, whatever the file says
