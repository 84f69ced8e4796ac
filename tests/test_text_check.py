"""The text check's rules (inference/text_check.py) on reads as OCR gives them: what a registry
learns from genuine references, and which reads are evidence."""

from __future__ import annotations

import pytest

from longteng.inference.text_check import TextRead, TextRegistry, edit_distance, shape

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
    assert TextRegistry.from_json(registry.to_json()).products == registry.products


@pytest.mark.parametrize("read, expected, kind", [
    ("N0VALYNK", "NOVALYNK", "spelling"),  # a substituted glyph
    ("NOUALYNK", "NOVALYNK", "spelling"),
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
])
def test_what_is_not_evidence(registry, texts):
    confidence = 0.6 if texts == ("N0VALYNK",) else 0.99
    assert registry.check("smartphone", reads(*texts, confidence=confidence)) is None


def test_a_product_without_references_is_never_flagged(registry):
    assert registry.check("drone", reads("N0VALYNK")) is None


def test_shapes_and_distances():
    assert shape("S/N NDC7W-2702-0234") == "?/AAAA9A-9-9"
    assert shape("64gb") == "9aa" and shape("128GB") == "9A?"
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("9A9", "9A?", wildcard="?") == 0 and edit_distance("9-9", "9A?", wildcard="?") == 1
