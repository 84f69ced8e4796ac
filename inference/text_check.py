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

import json
import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from longteng.decision import product_probabilities, with_evidence
from longteng.errors import ConfigError

# OCR reads below this confidence are neither learnt nor evidence of a format (blur, glare,
# occlusion: OCR misreads digits as letters and the reverse more often than whole words).
MIN_CONFIDENCE = 0.95
# A misspelt logo is evidence from this confidence on: a logo is large print, and OCR reading a
# registered word of 4 or more glyphs as another word of the same length is rare on genuine
# photos (measured by bench/bench_text_check.py).
SPELLING_CONFIDENCE = 0.90
MIN_WORD_LENGTH = 4
# A read names a product from this OCR confidence on (`TextRegistry.named_product`): what the item
# is, not whether it is genuine, so a worn or glared logo still counts. Chosen on the registered
# power bank's seed 11 (README, Measured: registered products): 0.80 and 0.50 named the same
# photos, 0.90 one counterfeit fewer; seeds 12 and 13 measured it afterwards.
NAMING_CONFIDENCE = 0.80
# Glyphs OCR confuses with digits (and the reverse): in a format they match either class.
_AMBIGUOUS = frozenset("OBIlS")  # letters OCR reads as digits (and digits it reads as them)
MIN_LENGTH = 3
# A text must have been read on at least this share of a product's references to be registered.
MIN_SUPPORT = 0.05
# The probability that a photo the check flags shows a counterfeit (decision.with_evidence).
# bench/bench_text_check.py measured these rules on a seed they were not written on (seed 4, 400
# photos at 1600x1200, half of them counterfeit): 55 of the 56 photos flagged were counterfeits,
# and none of 300 further genuine training photos was flagged. 55 of 56 puts it above 0.90 (95%
# lower bound), and the other seeds measured agree (0 of 83 and 1 of 246 flagged were genuine):
# 0.95 is kept. At this value a flagged photo is COUNTERFEIT at any operating point below 0.95.
DEFAULT_MISMATCH_PROBABILITY = 0.95
# Genuine training photos per product that export reads to learn the print (OCR, about 0.4 s each).
DEFAULT_REFERENCES = 60
# OCR's text detector reads the crop with its shorter side scaled to this many pixels (rapidocr's
# det_limit_side_len). 384, the focus crop's own size: rapidocr's default of 736 upsamples
# the crop 1.9 times for the same logo reads (bench/bench_ocr.py on 780 crops of the medium
# 1600x1200 training seed, on a loaded machine: 305 against 476 ms per crop, glyph swaps
# caught 0.64 against 0.66, all counterfeits 0.193 against 0.203, no false alarm on 300 genuine
# photos at either side; label formats lose most, 0.16 against 0.21). A registry keeps the
# side it was learnt with, because the runtime must read as its references were read;
# registries from before this field read at 736.
DEFAULT_DETECTION_SIDE = 384
LEGACY_DETECTION_SIDE = 736


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
    box: tuple[tuple[float, float], ...]  # corners in focus-crop pixels
    photo_box: tuple[tuple[float, float], ...] | None = None  # the same corners in the stored photo's pixels

    def to_dict(self) -> dict[str, Any]:
        """What an expert checks: what was read, what the product prints, and where on the photo."""
        box = None if self.photo_box is None else [[round(x, 1), round(y, 1)] for x, y in self.photo_box]
        return {"detector": "text", "kind": self.kind, "read": self.read, "expected": self.expected,
                "ocr_confidence": round(self.confidence, 3), "box": box}

    def describe(self) -> str:
        """One line for a person: read N0VALYNK, registered NOVALYNK."""
        if self.kind == "spelling":
            return f"read {self.read}, registered {self.expected}"
        return f"read {self.read}, not a registered {self.expected}"


@dataclass
class TextRegistry:
    products: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # product -> {"words": [...], "formats": [...]}
    mismatch_probability: float = DEFAULT_MISMATCH_PROBABILITY  # P(counterfeit | the check fires)
    detection_side: int = DEFAULT_DETECTION_SIDE  # how OCR read the references, and must read photos

    def __post_init__(self) -> None:
        q = self.mismatch_probability
        # At or below one half a mismatch would not point to a counterfeit at all.
        if not (isinstance(q, (int, float)) and math.isfinite(q) and 0.5 < q < 1.0):
            raise ConfigError(f"text registry: mismatch_probability must be a number in (0.5, 1), got {q!r}")
        side = self.detection_side
        if isinstance(side, bool) or not isinstance(side, int) or not 64 <= side <= 4096:
            raise ConfigError(f"text registry: detection_side must be a whole number of pixels from 64 to 4096, got {side!r}")

    def to_json(self) -> str:
        return json.dumps({"version": 1, "products": self.products, "mismatch_probability": self.mismatch_probability,
                           "detection_side": self.detection_side}, sort_keys=True)

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
        return cls(products, data.get("mismatch_probability", DEFAULT_MISMATCH_PROBABILITY),
                   data.get("detection_side", LEGACY_DETECTION_SIDE))

    @classmethod
    def learn(
        cls, reads_by_product: dict[str, list[list[TextRead]]], min_support: float = MIN_SUPPORT,
        mismatch_probability: float = DEFAULT_MISMATCH_PROBABILITY, detection_side: int = DEFAULT_DETECTION_SIDE,
    ) -> "TextRegistry":
        """From the OCR reads of genuine reference crops (a list of reads per photo) of each
        product, read at ``detection_side``."""
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
        return cls(products, mismatch_probability, detection_side)

    def named_product(self, reads: Sequence[TextRead]) -> str | None:
        """The one product whose registered word the print names, if any: a read within a
        quarter of its glyphs (at least one) of the word, so a counterfeit's substituted glyph
        still names the brand it copies. A word registered for several products, or reads
        naming several, name none: the brand printed on an item says what it is, when it
        says it unambiguously."""
        owners: dict[str, set[str]] = {}
        for product, entry in self.products.items():
            for word in entry["words"]:
                if len(word) >= MIN_WORD_LENGTH:
                    owners.setdefault(word, set()).add(product)
        named = set()
        for read in reads:
            text = read.text.strip()
            if read.confidence < NAMING_CONFIDENCE or len(text) < MIN_WORD_LENGTH:
                continue
            for word, products in owners.items():
                if len(products) == 1 and edit_distance(text, word) <= max(1, len(word) // 4):
                    named |= products
        return named.pop() if len(named) == 1 else None

    def check(self, product: str, reads: Sequence[TextRead]) -> TextMismatch | None:
        """The most certain misspelling or wrong format among ``reads``, if any."""
        entry = self.products.get(product)
        if not entry:
            return None
        found = []
        for read in reads:
            text = read.text.strip()
            if text in entry["words"]:
                continue
            # A logo with glyphs substituted (N0VALYNK, 5KYRIOGF: digits for letters included):
            # the same length as a registered word, at most two thirds of its glyphs changed. A
            # shorter or longer read is a word cut off by an occlusion or run into its
            # neighbour, not a misspelling.
            if read.confidence >= SPELLING_CONFIDENCE and len(text) >= MIN_WORD_LENGTH:
                near_words = [(edit_distance(text, w), w) for w in entry["words"] if len(w) == len(text)]
                distance, nearest = min(near_words, default=(0, ""))
                # One glyph off is also what a misread of a worn or glared glyph looks like:
                # it needs the confidence a format needs.
                sure_enough = distance > 1 or read.confidence >= MIN_CONFIDENCE
                if 0 < distance <= 2 * len(nearest) // 3 and sure_enough:
                    found.append(TextMismatch(text, nearest, "spelling", read.confidence, read.box))
                    continue
            if read.confidence < MIN_CONFIDENCE or len(text) < MIN_LENGTH:
                continue
            if not _has_digit(text) or not entry["formats"]:
                continue
            key = shape(text)
            # A registered format, or a piece of one (OCR splits a label into fragments).
            if any(key in f for f in entry["formats"]):
                continue
            # A format one step from a registered one (64gb for 64GB, sr-4 for SR-4): further
            # away is more often a label OCR read in pieces than another format.
            # Or the brand's format set in the other case throughout (nx-7128gb).
            distance, nearest = min((edit_distance(key, f, wildcard="?"), f) for f in entry["formats"])
            recased = [f for f in entry["formats"] if key != key.upper() and edit_distance(key.upper(), f.upper(), wildcard="?") == 0]
            if distance > 0 and recased:
                distance, nearest = 1, recased[0]
            if distance == 1:
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


# Loaded OCR engines by (threads, detection side): importing rapidocr (OpenCV) and opening its
# three ONNX sessions takes about 0.8 s, so an officer's first photo should not wait for it twice.
_ENGINES: dict[tuple[int, int], Future] = {}
_ENGINES_LOCK = threading.Lock()


def prepare_ocr(threads: int = 0, detection_side: int = DEFAULT_DETECTION_SIDE) -> None:
    """Start loading the OCR engine in a background thread, so that it overlaps with decoding
    the photo and running the networks (both release the GIL); `read_text` waits for it.
    Not a daemon thread: the interpreter must never stop in the middle of an import."""
    _engine_future(threads, detection_side, background=True)


def _engine(threads: int, detection_side: int):
    return _engine_future(threads, detection_side, background=False).result()


def _engine_future(threads: int, detection_side: int, background: bool) -> Future:
    key = (threads, detection_side)
    with _ENGINES_LOCK:
        future = _ENGINES.get(key)
        loader_needed = future is None
        if loader_needed:
            future = _ENGINES[key] = Future()
    if loader_needed:
        if background:
            threading.Thread(target=_load_engine, args=(future, threads, detection_side), name="longteng-ocr-load").start()
        else:
            _load_engine(future, threads, detection_side)
    return future


def _load_engine(future: Future, threads: int, detection_side: int) -> None:
    try:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise ConfigError("the text check needs rapidocr_onnxruntime: pip install rapidocr_onnxruntime") from None
        # threads 0: onnxruntime's default (all cores); a score worker process reads with one.
        future.set_result(RapidOCR(det_limit_side_len=detection_side, **({"intra_op_num_threads": threads} if threads > 0 else {})))
    except BaseException as error:  # handed to whoever reads, in its own thread
        future.set_exception(error)


def read_text(crop: np.ndarray, threads: int = 0, detection_side: int = DEFAULT_DETECTION_SIDE) -> list[TextRead]:
    """OCR of one uint8 (S, S, 3) focus crop; ``detection_side``: the registry's."""
    result, _ = _engine(threads, detection_side)(np.ascontiguousarray(crop))
    reads = []
    for box, text, confidence in result or ():
        reads.append(TextRead(str(text).strip(), float(confidence), tuple((float(x), float(y)) for x, y in box)))
    return reads


def apply_text_check(
    registry: TextRegistry, reads: Sequence[Sequence[TextRead]], probabilities: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, list[TextMismatch | None]]:
    """Each photo's reads against the registry of its likeliest product -> the probabilities
    updated by the registry's mismatch probability where the print does not match, and the
    mismatches (None where it matches or nothing legible was read)."""
    products, per_product = product_probabilities(probabilities, class_names)
    if len(reads) != len(per_product):
        raise ConfigError(f"{len(reads)} photos' reads for {len(per_product)} photos")
    mismatches = [registry.check(products[int(row.argmax())], photo_reads) for row, photo_reads in zip(per_product, reads)]
    evidence = np.array([registry.mismatch_probability if m is not None else 0.0 for m in mismatches])
    return with_evidence(probabilities, class_names, evidence), mismatches
