"""The artwork check: how the logo is printed (its size, its proportions, its place beside the
product's other print, its ink) against the product's genuine references.

A genuine item repeats its artwork within tight tolerances; a counterfeiter's copy drifts: the
logo shifted or scaled, set in the wrong width, printed in an off-brand ink. The text check reads
*what* is printed; this check measures *how* the logo is printed, from the same OCR reads: OCR's
box around the logo word is a ruler, and the pixels inside it are the logo's ink on its shell.

Per photo it measures (``MEASURES``):

* ``logo_length``: the log of the logo's length as a share of the focus crop's side (a logo
  scaled or set wider; the crop's own scale varies with the glance's box by a few percent);
* ``logo_thickness``: the logo's height over its length (a logo set wider or narrower, which no
  crop changes);
* ``anchor_along``: how far the product's *anchor*, the print other than the logo that most
  references show (a conformity mark, a capacity label), sits from the logo's centre along the
  logo's line, in logo lengths: a logo moved or scaled on the item moves against the rest of the
  print, while the glance's box, which shifts, scales and turns the whole crop, moves neither
  (the place in the crop did not pay: the glance's box is off by more than a misplaced logo
  moves; nor did the offset across the line, whose references' spread depends on which
  references);
* ``logo_ink``: the logo's ink against the shell around it, as per-channel log ratios
  (log ink - log shell, for red, green and blue): a lamp's colour multiplies both by the same
  gains, which the ratio cancels.

Each scalar measure is compared with the median of the product's genuine references in units of
their spread (1.4826 x the median absolute deviation, never below a floor that covers OCR's
box jitter); the ink, whose references cluster by colourway, by its distance to the nearest
reference in units of the references' own nearest-neighbour distances. The largest deviation
is the photo's artwork score; from ``fires_at`` on the check fires, and the finding says which
measure and by how much ("logo 23% longer than registered").

What it cannot see: a photo whose logo OCR does not read exactly and surely (covered, glared, cut
off, misspelt: that last is the text check's evidence), tells away
from the logo (parts, marks, fine print, finish, the shell's proportions: the classifier's and
the aligned check's), and drifts within the references' own spread. numpy and Pillow only; the
statistics are JSON in the model's metadata (``longteng.artwork_check``): 12.5 KB for three products.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from longteng.decision import product_probabilities, with_evidence
from longteng.errors import ConfigError
from longteng.inference.text_check import TextRead, shape

SCALAR_MEASURES = ("logo_length", "logo_thickness", "anchor_along")
INK = "logo_ink"
MEASURES = SCALAR_MEASURES + (INK,)
# The least spread a measure is credited with, whatever the references show: OCR's box moves by
# a pixel or two between photos of one item, and a box edge is 1/384 of the crop.
SPREAD_FLOORS = {"logo_length": 0.015, "logo_thickness": 0.012, "anchor_along": 0.012}
# A product's anchor is the print (other than the logo) read on at least this share of its references.
MIN_ANCHOR_SUPPORT = 0.3
INK_FLOOR = 0.06
# Reads from this OCR confidence on count when the references' logo and anchor are learnt.
LOGO_CONFIDENCE = 0.80
# The logo is measured only where OCR read it exactly, at least this sure: a logo read wrong or
# unsure is more often one that glare or packing covers in part, whose box and ink then mislead
# (README, Measured); a misspelt logo is the text check's evidence.
MEASURE_CONFIDENCE = 0.90
# The ink is measured on this many stretches of the logo and the median taken: glare or a
# shadow over part of it does not shift the median.
_INK_SEGMENTS = 5
# Genuine training photos per product the check learns from at export: with 60, the spreads and
# the nearest inks depended on which 60, and the check fired on 1.4% of the genuine validation
# photos at 8 spreads (2.3% at 6), with 150 on 0.46% (README, Measured: bench/bench_artwork.py
# --subsets 5). Read in the text check's OCR pass.
DEFAULT_REFERENCES = 150
# Fewer references than this, and a product's spreads are a guess: it gets no artwork check.
MIN_REFERENCES = 40
# Deviation, in spreads, from which the check fires: the least of 5, 6, 8 and 10 that fired on at
# most 1% of the genuine validation photos of the medium 1600x1200 training seed, with 150
# references per product (8: 0.46%; 6: 1.4%; README, Measured: bench/bench_artwork.py).
DEFAULT_FIRES_AT = 8.0
# P(counterfeit | the check fires), for decision.with_evidence: on those validation photos it
# fired on 37 counterfeits and 1 genuine photo (0.97; 0.86 at the lower end of its 95% interval),
# on the test seed, which chose nothing, on 72 and 3 (0.96): 0.90 stays below both.
DEFAULT_MISMATCH_PROBABILITY = 0.90
# Fewer ink or shell pixels than this inside the logo's box, and the ink is not measured.
_MIN_PIXELS = 12


@dataclass(frozen=True)
class ArtworkFinding:
    measure: str
    value: float
    expected: float  # the references' median (for the ink: 0, the distance to the nearest reference)
    deviation: float  # in spreads
    box: tuple[tuple[float, float], ...] | None  # the logo's corners in focus-crop pixels
    photo_box: tuple[tuple[float, float], ...] | None = None  # the same corners in the stored photo's pixels

    def describe(self) -> str:
        """One line for a person: which part of the artwork differs from every genuine reference, and how."""
        if self.measure == INK:
            return f"logo ink unlike every genuine reference ({self.deviation:.0f} spreads off)"
        if self.measure == "anchor_along":
            return (f"logo moved {abs(self.value - self.expected) * 100:.0f}% of its length along its line "
                    "against the rest of the print")
        if self.measure == "logo_thickness":
            change = self.value / self.expected - 1.0 if self.expected else float("inf")
            return f"logo's height to length {abs(change) * 100:.0f}% {'smaller' if change < 0 else 'larger'} than registered"
        change = math.exp(self.value - self.expected) - 1.0
        return f"logo {abs(change) * 100:.0f}% {'shorter' if change < 0 else 'longer'} than registered"

    def to_dict(self) -> dict[str, Any]:
        box = None if self.photo_box is None else [[round(x, 1), round(y, 1)] for x, y in self.photo_box]
        return {"detector": "artwork", "measure": self.measure, "value": round(self.value, 4),
                "expected": round(self.expected, 4), "deviation": round(self.deviation, 2), "box": box,
                "description": self.describe()}


@dataclass(frozen=True)
class Measurement:
    """What one photo's crop shows of the artwork (absent: not measurable on this photo)."""

    scalars: dict[str, float]
    ink: np.ndarray | None  # (3,) log ink - log shell
    logo_box: tuple[tuple[float, float], ...] | None


def print_key(text: str) -> str:
    """A read as registered print: a word as it is, a text with digits by its format (the digits
    change from item to item)."""
    text = text.strip()
    return shape(text) if any(c.isdigit() for c in text) else text


def logo_word(reads_per_photo: Sequence[Sequence[TextRead]]) -> str | None:
    """The product's logo: the word of four or more letters read on most of its references."""
    counts: Counter[str] = Counter()
    for reads in reads_per_photo:
        counts.update({r.text.strip() for r in reads if r.confidence >= LOGO_CONFIDENCE and len(r.text.strip()) >= 4
                       and r.text.strip().isalpha()})
    if not counts:
        return None
    word, seen = counts.most_common(1)[0]
    return word if seen >= max(2, len(reads_per_photo) // 4) else None


def find_logo(reads: Sequence[TextRead], logo: str, min_confidence: float = MEASURE_CONFIDENCE) -> TextRead | None:
    """The surest read of exactly the registered logo, if OCR is at least ``min_confidence`` sure of it."""
    candidates = [read for read in reads if read.text.strip().upper() == logo.upper()
                  and read.confidence >= min_confidence and len(read.box) == 4]
    return max(candidates, key=lambda read: read.confidence, default=None)


def anchor_key(reads_per_photo: Sequence[Sequence[TextRead]], logo: str) -> str | None:
    """The product's anchor: the print other than its logo that most references show, if at
    least MIN_ANCHOR_SUPPORT of them do."""
    counts: Counter[str] = Counter()
    for reads in reads_per_photo:
        counts.update({print_key(r.text) for r in reads if r.confidence >= LOGO_CONFIDENCE
                       and r.text.strip().upper() != logo.upper() and r.text.strip()})
    if not counts:
        return None
    key, seen = counts.most_common(1)[0]
    return key if seen >= max(2, MIN_ANCHOR_SUPPORT * len(reads_per_photo)) else None


def _frame(quad: np.ndarray) -> tuple[np.ndarray, float, float, np.ndarray]:
    """(centre, length, height, unit vector along the box's longer side)."""
    sides = [quad[1] - quad[0], quad[2] - quad[1]]
    long_side, short_side = sorted(sides, key=lambda v: -float(np.hypot(*v)))
    length = float(np.hypot(*long_side))
    return quad.mean(axis=0), length, float(np.hypot(*short_side)), long_side / max(length, 1e-9)


def measure(crop: np.ndarray, reads: Sequence[TextRead], logo: str, anchor: str | None) -> Measurement:
    """The artwork measures of one uint8 (S, S, 3) focus crop with its OCR reads."""
    read = find_logo(reads, logo)
    if read is None:
        return Measurement({}, None, None)
    quad = np.asarray(read.box, dtype=np.float64)
    centre, length, height, along = _frame(quad)
    if length < 1.0:
        return Measurement({}, None, None)
    scalars = {"logo_length": math.log(length / float(crop.shape[0])), "logo_thickness": height / length}
    anchors = [r for r in reads if r is not read and r.confidence >= LOGO_CONFIDENCE and len(r.box) == 4
               and anchor is not None and print_key(r.text) == anchor]
    if anchors:
        best = max(anchors, key=lambda r: r.confidence)
        offset = np.asarray(best.box, dtype=np.float64).mean(axis=0) - centre
        # A box's corner order does not say which end of the line the text starts from, and the
        # glance may have turned the crop half round: the distance along the line, either way.
        scalars["anchor_along"] = abs(float(offset @ along)) / length
    return Measurement(scalars, ink_against_shell(crop, quad), tuple((float(x), float(y)) for x, y in quad))


def ink_against_shell(crop: np.ndarray, quad: np.ndarray) -> np.ndarray | None:
    """log(ink) - log(shell) per channel inside the logo's box: on each of _INK_SEGMENTS stretches
    along the logo, its pixels split in two by luminance (Otsu), the smaller part being the
    glyphs' ink; the median over the stretches."""
    quad = np.asarray(quad, dtype=np.float64)
    # Corners in order around the box: the two long sides, each cut into equal stretches.
    if np.hypot(*(quad[1] - quad[0])) >= np.hypot(*(quad[2] - quad[1])):
        first, second = (quad[0], quad[1]), (quad[3], quad[2])
    else:
        first, second = (quad[1], quad[2]), (quad[0], quad[3])
    ratios = []
    for k in range(_INK_SEGMENTS):
        t0, t1 = k / _INK_SEGMENTS, (k + 1) / _INK_SEGMENTS
        piece = [first[0] + (first[1] - first[0]) * t0, first[0] + (first[1] - first[0]) * t1,
                 second[0] + (second[1] - second[0]) * t1, second[0] + (second[1] - second[0]) * t0]
        ratio = _ink_ratio(crop, np.array(piece))
        if ratio is not None:
            ratios.append(ratio)
    if 2 * len(ratios) <= _INK_SEGMENTS:
        return None
    return np.median(np.array(ratios), axis=0)


def _ink_ratio(crop: np.ndarray, quad: np.ndarray) -> np.ndarray | None:
    mask = Image.new("L", (crop.shape[1], crop.shape[0]))
    ImageDraw.Draw(mask).polygon([(float(x), float(y)) for x, y in quad], fill=1)
    pixels = crop[np.asarray(mask, dtype=bool)].astype(np.float64)
    if len(pixels) < 2 * _MIN_PIXELS:
        return None
    luminance = pixels @ np.array([0.299, 0.587, 0.114])
    dark = luminance < _otsu(luminance)
    ink, shell = (pixels[dark], pixels[~dark]) if dark.mean() < 0.5 else (pixels[~dark], pixels[dark])
    if len(ink) < _MIN_PIXELS or len(shell) < _MIN_PIXELS:
        return None
    return np.log(np.median(ink, axis=0) + 4.0) - np.log(np.median(shell, axis=0) + 4.0)


def _otsu(values: np.ndarray) -> float:
    histogram, edges = np.histogram(values, bins=64, range=(0.0, 256.0))
    weight = np.cumsum(histogram).astype(np.float64)
    total = weight[-1]
    moment = np.cumsum(histogram * (edges[:-1] + 2.0))
    below, above = weight[:-1], total - weight[:-1]
    valid = (below > 0) & (above > 0)
    mean_below = np.divide(moment[:-1], below, out=np.zeros_like(below), where=valid)
    mean_above = np.divide(moment[-1] - moment[:-1], above, out=np.zeros_like(above), where=valid)
    between = np.where(valid, below * above * (mean_below - mean_above) ** 2, -1.0)
    return float(edges[int(np.argmax(between)) + 1])


@dataclass
class ProductArtwork:
    """One product's genuine artwork, as its references show it."""

    logo: str
    anchor: str | None  # print_key of the product's anchor print (None: no print besides the logo is read often)
    medians: dict[str, float]
    spreads: dict[str, float]
    inks: np.ndarray  # (k, 3) the references' ink log ratios
    ink_spread: float
    references: int

    def deviations(self, found: Measurement) -> dict[str, float]:
        out = {name: abs(value - self.medians[name]) / self.spreads[name]
               for name, value in found.scalars.items() if name in self.medians}
        if found.ink is not None and len(self.inks):
            out[INK] = float(np.sqrt(((self.inks - found.ink) ** 2).sum(axis=1)).min()) / self.ink_spread
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"logo": self.logo, "anchor": self.anchor, "references": self.references,
                "measures": {name: [round(self.medians[name], 5), round(self.spreads[name], 5)] for name in self.medians},
                "inks": np.round(self.inks, 4).tolist(), "ink_spread": round(self.ink_spread, 5)}

    @classmethod
    def from_dict(cls, product: str, data: Mapping[str, Any]) -> "ProductArtwork":
        try:
            measures = data["measures"]
            unknown = set(measures) - set(SCALAR_MEASURES)
            if unknown:
                raise ConfigError(f"artwork check: product {product!r} has unknown measures {sorted(unknown)}")
            medians = {name: float(pair[0]) for name, pair in measures.items()}
            spreads = {name: float(pair[1]) for name, pair in measures.items()}
            inks = np.asarray(data["inks"], dtype=np.float64).reshape(-1, 3)
            anchor = data.get("anchor")
            artwork = cls(str(data["logo"]), None if anchor is None else str(anchor), medians, spreads, inks,
                          float(data["ink_spread"]), int(data["references"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"artwork check: product {product!r} is malformed ({exc})") from exc
        values = [*medians.values(), *spreads.values(), artwork.ink_spread, *inks.ravel()]
        if not artwork.logo or not all(math.isfinite(v) for v in values) or min([*spreads.values(), artwork.ink_spread]) <= 0:
            raise ConfigError(f"artwork check: product {product!r} needs a logo, finite medians and positive spreads")
        return artwork


@dataclass
class ArtworkCheck:
    products: dict[str, ProductArtwork] = field(default_factory=dict)
    fires_at: float = DEFAULT_FIRES_AT
    mismatch_probability: float = DEFAULT_MISMATCH_PROBABILITY

    def __post_init__(self) -> None:
        q = self.mismatch_probability
        if not (isinstance(q, (int, float)) and math.isfinite(q) and 0.5 < q < 1.0):
            raise ConfigError(f"artwork check: mismatch_probability must be a number in (0.5, 1), got {q!r}")
        if not (isinstance(self.fires_at, (int, float)) and math.isfinite(self.fires_at) and self.fires_at > 0):
            raise ConfigError(f"artwork check: fires_at must be a positive number, got {self.fires_at!r}")

    @classmethod
    def learn(
        cls, references: Mapping[str, Sequence[tuple[np.ndarray, Sequence[TextRead]]]],
        fires_at: float = DEFAULT_FIRES_AT, mismatch_probability: float = DEFAULT_MISMATCH_PROBABILITY,
        min_references: int = MIN_REFERENCES,
    ) -> "ArtworkCheck":
        """From each product's genuine reference crops with their OCR reads; a product with fewer
        than ``min_references`` of them gets no check."""
        products = {}
        for product, photos in references.items():
            if len(photos) < min_references:
                continue
            logo = logo_word([reads for _, reads in photos])
            if logo is None:
                continue
            anchor = anchor_key([reads for _, reads in photos], logo)
            found = [measure(crop, reads, logo, anchor) for crop, reads in photos]
            medians, spreads = {}, {}
            for name in SCALAR_MEASURES:
                values = np.array([m.scalars[name] for m in found if name in m.scalars])
                if 2 * len(values) >= min_references:
                    median = float(np.median(values))
                    medians[name] = median
                    spreads[name] = max(1.4826 * float(np.median(np.abs(values - median))), SPREAD_FLOORS[name])
            inks = np.array([m.ink for m in found if m.ink is not None]).reshape(-1, 3)
            if not medians and 2 * len(inks) < min_references:
                continue
            ink_spread = INK_FLOOR
            if 2 * len(inks) >= min_references:
                distances = np.sqrt(((inks[:, None, :] - inks[None, :, :]) ** 2).sum(axis=2))
                np.fill_diagonal(distances, np.inf)
                ink_spread = max(float(np.median(distances.min(axis=1))), INK_FLOOR)
            else:
                inks = np.zeros((0, 3))
            products[product] = ProductArtwork(logo, anchor, medians, spreads, inks, ink_spread, len(photos))
        return cls(products, fires_at, mismatch_probability)

    def with_product(self, product: str, references: Sequence[tuple[np.ndarray, Sequence[TextRead]]],
                     min_references: int = MIN_REFERENCES) -> "ArtworkCheck":
        """The check with ``product`` learnt from its genuine references (a product registered
        after training), replacing what it had for that name; without it when too few photos or
        no logo were read."""
        learned = ArtworkCheck.learn({product: references}, self.fires_at, self.mismatch_probability, min_references).products
        products = {name: entry for name, entry in self.products.items() if name != product}
        products.update(learned)
        return ArtworkCheck(products, self.fires_at, self.mismatch_probability)

    def score(self, product: str, crop: np.ndarray, reads: Sequence[TextRead]) -> tuple[float, ArtworkFinding | None]:
        """(the largest deviation in spreads, 0 when nothing was measured; the finding when it
        reaches ``fires_at``)."""
        artwork = self.products.get(product)
        if artwork is None:
            return 0.0, None
        found = measure(crop, reads, artwork.logo, artwork.anchor)
        deviations = artwork.deviations(found)
        if not deviations:
            return 0.0, None
        name = max(deviations, key=deviations.get)  # type: ignore[arg-type]
        largest = deviations[name]
        if largest < self.fires_at:
            return largest, None
        if name == INK:
            value, expected = largest * artwork.ink_spread, 0.0
        else:
            value, expected = found.scalars[name], artwork.medians[name]
        return largest, ArtworkFinding(name, value, expected, largest, found.logo_box)

    def to_json(self) -> str:
        return json.dumps({"version": 1, "fires_at": self.fires_at, "mismatch_probability": self.mismatch_probability,
                           "products": {p: a.to_dict() for p, a in self.products.items()}}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ArtworkCheck":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"artwork check: not JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("products"), dict):
            raise ConfigError("artwork check: expected {'version': 1, 'products': {...}}")
        products = {str(p): ProductArtwork.from_dict(str(p), entry) for p, entry in data["products"].items()}
        return cls(products, data.get("fires_at", DEFAULT_FIRES_AT), data.get("mismatch_probability", DEFAULT_MISMATCH_PROBABILITY))


def apply_artwork_check(
    check: ArtworkCheck, crops: np.ndarray, reads: Sequence[Sequence[TextRead]], probabilities: np.ndarray,
    class_names: Sequence[str],
) -> tuple[np.ndarray, list[ArtworkFinding | None], np.ndarray]:
    """Each photo's crop and reads against the artwork of its likeliest product -> (probabilities
    updated by the check's mismatch probability where it fires, the findings, the scores)."""
    if not len(crops) == len(reads) == len(probabilities):
        raise ConfigError(f"{len(crops)} crops and {len(reads)} photos' reads for {len(probabilities)} photos")
    products, per_product = product_probabilities(probabilities, class_names)
    results = [check.score(products[int(row.argmax())], crop, photo_reads)
               for row, crop, photo_reads in zip(per_product, crops, reads)]
    findings = [finding for _, finding in results]
    evidence = np.array([check.mismatch_probability if f is not None else 0.0 for f in findings])
    return with_evidence(probabilities, class_names, evidence), findings, np.array([s for s, _ in results])
