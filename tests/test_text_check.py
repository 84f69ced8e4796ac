"""The text check's rules (inference/text_check.py) on reads as OCR gives them: what a registry
learns from genuine references, and which reads are evidence."""

from __future__ import annotations

import pytest

import numpy as np

from longteng.errors import ConfigError
from longteng.inference.text_check import (
    DEFAULT_DETECTION_SIDE, LEGACY_DETECTION_SIDE, TextRead, TextRegistry, apply_text_check, edit_distance, prepare_ocr, read_text,
    shape,
)

BOX = ((0.0, 0.0), (10.0, 0.0), (10.0, 5.0), (0.0, 5.0))


def reads(*texts: str, confidence: float = 0.99) -> list[TextRead]:
    return [TextRead(text, confidence, BOX) for text in texts]


@pytest.fixture
def registry() -> TextRegistry:
    genuine = [reads("NOVALYNK", "CE", "NX-7128GB"), reads("NOVALYNK", "NX-7256GB"), reads("NOVALYNK", "NX-764GB"),
               reads("NOVALYNX", confidence=0.5)]  # a low-confidence misread is not learnt
    return TextRegistry.learn({"smartphone": genuine}, min_support=0.5)


def test_the_registry_learns_words_and_formats_with_support(registry):
    assert registry.products["smartphone"] == {"words": ["NOVALYNK"], "formats": ["AA-9A?"]}
    again = TextRegistry.from_json(registry.to_json())
    assert again.products == registry.products and again.mismatch_probability == registry.mismatch_probability
    assert again.detection_side == registry.detection_side == DEFAULT_DETECTION_SIDE


def test_a_registry_from_before_the_detection_side_reads_as_it_was_learnt():
    """Models exported before the field read their references at rapidocr's default side."""
    old = TextRegistry.from_json('{"version": 1, "products": {"drone": {"words": ["SKYRIDGE"], "formats": []}}}')
    assert old.detection_side == LEGACY_DETECTION_SIDE == 736


def printed_word(text: str = "KORVEX") -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (384, 384), (235, 235, 230))
    ImageDraw.Draw(image).text((192, 192), text, fill=(20, 20, 20), font=ImageFont.load_default(size=50), anchor="mm")
    return np.asarray(image)


@pytest.mark.parametrize("side", [DEFAULT_DETECTION_SIDE, LEGACY_DETECTION_SIDE])
def test_ocr_reads_a_printed_word_at_either_detection_side(side):
    found = read_text(printed_word(), threads=1, detection_side=side)
    assert [r.text for r in found] == ["KORVEX"] and found[0].confidence > 0.9
    # The box is in the crop's own pixels whatever the detector's scale: around the middle.
    centre = np.mean(found[0].box, axis=0)
    assert np.all(np.abs(centre - 192) < 20)


def test_ocr_loaded_in_the_background_is_loaded_once_and_reads_from_every_thread():
    """predict and the station start loading OCR before the first photo is decoded; readers
    that arrive meanwhile wait for that one engine instead of building their own."""
    from concurrent.futures import ThreadPoolExecutor

    from longteng.inference import text_check

    key = (2, DEFAULT_DETECTION_SIDE)
    for _ in range(3):
        prepare_ocr(*key)
    future = text_check._ENGINES[key]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: read_text(printed_word(), *key), range(4)))
    assert [[r.text for r in reads] for reads in found] == [["KORVEX"]] * 4
    assert text_check._ENGINES[key] is future and future.done()


@pytest.mark.parametrize("text", [
    '{"version": 1, "products": {}, "mismatch_probability": 0.3}',  # would make a mismatch evidence of genuineness
    '{"version": 1, "products": {}, "mismatch_probability": 1.0}',  # a certainty no OCR has
    '{"version": 1, "products": {}, "mismatch_probability": "many"}',
    '{"version": 1, "products": {"smartphone": {"words": "NOVALYNK"}}}',
    '{"version": 2, "products": {}}',
    '{"version": 1, "products": {}, "detection_side": 10}',  # OCR cannot find print in a 10 px image
    '{"version": 1, "products": {}, "detection_side": "big"}',
])
def test_a_damaged_registry_is_refused(text):
    with pytest.raises(ConfigError, match="text registry"):
        TextRegistry.from_json(text)


@pytest.mark.parametrize("read, expected, kind", [
    ("N0VALYNK", "NOVALYNK", "spelling"),  # a substituted glyph
    ("NOUALYNK", "NOVALYNK", "spelling"),
    ("N0V4IYNK", "NOVALYNK", "spelling"),  # three of eight glyphs swapped, digits among them
    ("nx-7128gb", "format AA-9A?", "format"),  # set in lower case
])
def test_misspellings_and_wrong_formats_are_evidence(registry, read, expected, kind):
    found = registry.check("smartphone", reads("CE", read))
    assert found is not None and (found.read, found.expected, found.kind) == (read, expected, kind)
    assert found.to_dict()["detector"] == "text"


@pytest.mark.parametrize("texts", [
    ("NOVALYNK", "NX-7512GB"),  # registered word, a registered format with other digits
    ("NOVALY",),  # a word cut off by an occlusion is not a misspelling
    ("NX-7128G8",),  # OCR reading B as 8 in a format
    ("SHIPPING LABEL 2026",),  # far from everything: not evidence either way
    ("N0VALYNK",),  # ... unless OCR is sure of it
    ("9A?",),  # a piece of a registered format (OCR split the label)
    ("ZZZZZZNK",),  # more than two thirds of the glyphs differ: another word, not a misspelling
    ("nx-7128gb",),  # a wrong format read with less confidence than formats need
])
def test_what_is_not_evidence(registry, texts):
    confidence = {("N0VALYNK",): 0.6, ("nx-7128gb",): 0.92}.get(texts, 0.99)
    assert registry.check("smartphone", reads(*texts, confidence=confidence)) is None


def test_a_misspelt_logo_is_evidence_from_a_lower_confidence_than_a_format():
    registry = TextRegistry({"smartphone": {"words": ["NOVALYNK"], "formats": ["AA-9A?"]}})
    assert registry.check("smartphone", reads("NOV4IYNK", confidence=0.92)).kind == "spelling"
    assert registry.check("smartphone", reads("NOV4IYNK", confidence=0.85)) is None


def test_a_mismatch_raises_the_counterfeit_score_of_its_photo_only():
    registry = TextRegistry({"drone": {"words": ["SKYRIDGE"], "formats": []}}, mismatch_probability=0.9)
    classes = ["drone/counterfeit", "drone/genuine", "smartphone/counterfeit", "smartphone/genuine"]
    probabilities = np.array([[0.10, 0.85, 0.01, 0.04], [0.10, 0.85, 0.01, 0.04], [0.01, 0.04, 0.10, 0.85]])
    photo_reads = [reads("SKYRIDGE"), reads("SKYRIOCE"), reads("SKYRIOCE")]  # the last photo is a smartphone
    updated, mismatches = apply_text_check(registry, photo_reads, probabilities, classes)
    assert [m is not None for m in mismatches] == [False, True, False]
    assert mismatches[1].describe() == "read SKYRIOCE, registered SKYRIDGE"
    np.testing.assert_allclose(updated[[0, 2]], probabilities[[0, 2]])
    # Counterfeit score 0.11 becomes 1 - 0.89 * 0.1 = 0.911: the genuine classes shrink 85:4 as
    # before, the added 0.801 goes to the drone's counterfeit class (the product read).
    np.testing.assert_allclose(updated[1], [0.10 + 0.801, 0.089 * 85 / 89, 0.01, 0.089 * 4 / 89])


def test_evidence_on_a_photo_the_classifier_calls_genuine_keeps_its_product():
    from longteng.decision import product_probabilities, with_evidence

    classes = ["drone/counterfeit", "drone/genuine", "smartphone/counterfeit", "smartphone/genuine"]
    # Nearly all the little counterfeit mass sits on the other product's class.
    probabilities = np.array([[1e-6, 0.9, 1e-4, 0.0999]])
    updated = with_evidence(probabilities, classes, np.array([0.95]))
    products, per_product = product_probabilities(updated, classes)
    assert products[int(per_product.argmax())] == "drone"
    assert updated[0, 0] + updated[0, 2] == pytest.approx(1 - (1 - 1.0001e-4) * 0.05)


def test_shapes_and_distances():
    assert shape("S/N NDC7W-2702-0234") == "?/AAAA9A-9-9"
    assert shape("64gb") == "9aa" and shape("128GB") == "9A?"
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("9A9", "9A?", wildcard="?") == 0 and edit_distance("9-9", "9A?", wildcard="?") == 1


def test_one_glyph_off_needs_the_confidence_of_a_format():
    registry = TextRegistry({"smartphone": {"words": ["NOVALYNX"], "formats": []}})
    assert registry.check("smartphone", reads("WOVALYNX", confidence=0.93)) is None  # a misread first glyph
    assert registry.check("smartphone", reads("NOVALYNK", confidence=0.97)).expected == "NOVALYNX"


BRANDS = TextRegistry({
    "smartphone": {"words": ["NOVALYNK", "CE"], "formats": []},
    "power_bank": {"words": ["VOLTARA"], "formats": []},
    "drone": {"words": ["SKYRIDGE", "VOLTARA"], "formats": []},  # a word two products print names neither
    "usb_flash_drive": {"words": ["KORVEX"], "formats": []},
})


@pytest.mark.parametrize("texts, confidence, named", [
    (("NOVALYNK",), 0.99, "smartphone"),
    (("N0VALYNK", "CE"), 0.99, "smartphone"),  # a substituted glyph still names the brand it copies
    (("N0VA1YNK",), 0.99, "smartphone"),  # two of eight glyphs
    (("K0RVEX",), 0.85, "usb_flash_drive"),  # one of six, read less surely
    (("K0RU3X",), 0.99, None),  # three of six: another word
    (("KORVEX",), 0.6, None),  # not read surely enough
    (("VOLTARA",), 0.99, None),  # registered for two products
    (("NOVALYNK", "KORVEX"), 0.99, None),  # two brands in one crop: no say
    (("CE",), 0.99, None),  # too short to name anything
    ((), 0.99, None),
])
def test_the_print_names_the_product_only_when_it_is_unambiguous(texts, confidence, named):
    assert BRANDS.named_product(reads(*texts, confidence=confidence)) == named
