"""Read the print: OCR of the focus crop against the spellings learnt from genuine references.

Many tells are text: a substituted glyph in the logo (N0VALYNK for NOVALYNK), a capacity or
serial number in a format the brand never prints. A classifier has to have seen a tell to
learn it; a spelling check only needs genuine photos. OCR is rapidocr (its detection and
recognition models are ONNX files inside its wheel, run by onnxruntime: no torch, nothing
downloaded), optional extra ``ocr``.

The registry of a product holds what OCR read on its genuine reference photos:

* **words** without digits (logo, marks), exactly: a read word that misses every registered
  word by one or two characters is a misspelling;
* **formats** of texts with digits (serials, capacities, model numbers), as shapes (letters
  -> ``A``, digits -> ``9``, the rest kept: ``S/N AAA9A-9999-9999``), since the digits change
  from item to item: a read text whose shape is near a registered one but is none of them is a
  wrong format.

Anything far from every registered text (a label on the box behind, OCR noise) is not
evidence either way. The registry is JSON in the model's metadata (``longteng.text_registry``).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from longteng.errors import ConfigError

# OCR reads below this confidence are not evidence (blur, glare, occlusion).
MIN_CONFIDENCE = 0.95
# Glyphs OCR confuses with digits (and the reverse): in a format they match either class.
_AMBIGUOUS = frozenset("OBIlS")  # letters OCR reads as digits (and digits it reads as them)
MIN_LENGTH = 3
# A text must have been read on at least this share of a product's references to be registered.
MIN_SUPPORT = 0.05


@dataclass(frozen=True)
class TextRead:
    text: str
    confidence: float
    box: tuple[tuple[float, float], ...]  # corners in focus-crop pixels


@dataclass(frozen=True)
class TextMismatch:
    read: str
    expected: str
    kind: str  # "spelling" or "format"
    confidence: float
    box: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"detector": "text", "kind": self.kind, "read": self.read, "expected": self.expected,
                "ocr_confidence": round(self.confidence, 3), "box": [[round(x, 1), round(y, 1)] for x, y in self.box]}


@dataclass
class TextRegistry:
    products: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # product -> {"words": [...], "formats": [...]}

    def to_json(self) -> str:
        return json.dumps({"version": 1, "products": self.products}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TextRegistry":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("products"), dict):
            raise ConfigError("text registry: expected {'version': 1, 'products': {...}}")
        products = {}
        for product, entry in data["products"].items():
            if not isinstance(entry, dict) or not all(isinstance(entry.get(k, []), list) for k in ("words", "formats")):
                raise ConfigError(f"text registry: product {product!r} needs lists 'words' and 'formats'")
            products[str(product)] = {k: [str(v) for v in entry.get(k, [])] for k in ("words", "formats")}
        return cls(products)

    @classmethod
    def learn(cls, reads_by_product: dict[str, list[list[TextRead]]], min_support: float = MIN_SUPPORT) -> "TextRegistry":
        """From the OCR reads of genuine reference crops (a list of reads per photo) of each product."""
        products = {}
        for product, photos in reads_by_product.items():
            words, formats = Counter(), Counter()
            for reads in photos:
                seen_words = {r.text for r in _usable(reads) if not _has_digit(r.text)}
                seen_formats = {shape(r.text) for r in _usable(reads) if _has_digit(r.text)}
                words.update(seen_words)
                formats.update(seen_formats)
            needed = max(1, int(np.ceil(min_support * len(photos))))
            products[product] = {
                "words": sorted(w for w, n in words.items() if n >= needed),
                "formats": sorted(f for f, n in formats.items() if n >= needed),
            }
        return cls(products)

    def check(self, product: str, reads: Sequence[TextRead]) -> TextMismatch | None:
        """The most certain misspelling or wrong format among ``reads``, if any."""
        entry = self.products.get(product)
        if not entry:
            return None
        found = []
        for read in _usable(reads):
            text = read.text
            if text in entry["words"]:
                continue
            # A word one or two glyphs off (N0VALYNK: a digit for a letter is still a word);
            # a shorter read is a word cut off by an occlusion, not a misspelling.
            near_words = [(edit_distance(text, w), w) for w in entry["words"] if len(w) == len(text)]
            distance, nearest = min(near_words, default=(0, ""))
            if 0 < distance <= max(1, min(2, len(nearest) // 4)):
                found.append(TextMismatch(text, nearest, "spelling", read.confidence, read.box))
                continue
            if not _has_digit(text) or not entry["formats"]:
                continue
            key = shape(text)
            if key in entry["formats"]:
                continue
            # A format: anything closer to a registered format than to nothing (the formats
            # a counterfeiter prints differ by more than a character from the brand's).
            distance, nearest = min((edit_distance(key, f, wildcard="?"), f) for f in entry["formats"])
            if 0 < distance <= max(2, len(nearest) // 2):
                found.append(TextMismatch(text, f"format {nearest}", "format", read.confidence, read.box))
        return max(found, key=lambda m: m.confidence, default=None)


def shape(text: str) -> str:
    """A text's format: letters -> A (upper case) or a (lower case), digits -> 9, a glyph OCR
    confuses between the two -> ?, runs of digits -> one 9 (a capacity or serial has as many
    digits as it needs), spaces dropped (OCR inserts and loses them), the rest kept."""
    out: list[str] = []
    for c in text.replace(" ", ""):
        code = "?" if c in _AMBIGUOUS else ("A" if c.isupper() else "a") if c.isalpha() else "9" if c.isdigit() else c
        if code == "9" and out and out[-1] == "9":
            continue
        out.append(code)
    return "".join(out)


def edit_distance(a: str, b: str, wildcard: str | None = None) -> int:
    """Levenshtein distance; ``wildcard`` matches A, a, 9 and itself (format shapes)."""

    def differ(x: str, y: str) -> bool:
        if wildcard is not None and (x == wildcard or y == wildcard):
            return not ({x, y} - {wildcard} <= {"A", "a", "9"})
        return x != y

    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + differ(ca, cb)))
        previous = current
    return previous[-1]


def _has_digit(text: str) -> bool:
    return any(c.isdigit() for c in text)


def _usable(reads: Iterable[TextRead]) -> list[TextRead]:
    return [r for r in reads if r.confidence >= MIN_CONFIDENCE and len(r.text.strip()) >= MIN_LENGTH]


def ocr_available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def read_text(crop: np.ndarray) -> list[TextRead]:
    """OCR of one uint8 (S, S, 3) focus crop."""
    try:
        result, _ = _engine()(np.ascontiguousarray(crop))
    except ImportError:
        raise ConfigError("the text check needs the ocr extra: pip install 'longteng[ocr]'") from None
    reads = []
    for box, text, confidence in result or ():
        reads.append(TextRead(str(text).strip(), float(confidence), tuple((float(x), float(y)) for x, y in box)))
    return reads
