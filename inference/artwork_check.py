"""The artwork check: where, how large and in which ink the logo is printed, and the item's
proportions, against the product's genuine references.

A genuine item repeats its artwork within tight tolerances; a counterfeiter's copy drifts: the
logo shifted, turned or scaled, set in the wrong width, printed in an off-brand ink, on a shell
too wide or too narrow. The text check reads *what* is printed; this check measures *how* the
logo is printed, from the same OCR reads: OCR's box around the logo word, in the upright focus
crop, is a ruler for the artwork, and the pixels inside it are the logo's ink on its shell.

Per photo it measures (``MEASURES``):

* ``logo_across``, ``logo_along``: the logo's centre, as a share of the crop's side;
* ``logo_length``: the log of the logo's length as a share of the crop's side (so its spread
  is relative); ``logo_thickness``: its height over its length (a logo set wider or narrower,
  which a crop cut a little too large or too small does not change);
* ``logo_turn``: the angle of the logo's line, in degrees;
* ``aspect``: the log of the item's width over its length, from the glance's box;
* ``logo_ink``: the logo's ink against the shell around it, as per-channel log ratios
  (log ink - log shell, for red, green and blue): a lamp's colour multiplies both by the same
  gains, which the ratio cancels.

Each scalar measure is compared with the median of the product's genuine references in units of
their spread (1.4826 x the median absolute deviation, never below a floor that covers OCR's
box jitter); the ink, whose references cluster by colourway, by its distance to the nearest
reference in units of the references' own nearest-neighbour distances. The largest deviation
is the photo's artwork score; from ``fires_at`` on the check fires, and the finding says which
measure and by how much ("logo 23% longer than registered").

What it cannot see: a photo whose logo OCR cannot find (covered, glared, cut off), tells away
from the logo and the outline (parts, marks, fine print, finish: the classifier's and the
aligned check's), and drifts within the references' own spread. numpy and Pillow only; the
statistics are JSON in the model's metadata (``longteng.artwork_check``), a few KB.
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
from longteng.focus import FocusSpec
from longteng.inference.text_check import TextRead, edit_distance

SCALAR_MEASURES = ("logo_across", "logo_along", "logo_length", "logo_thickness", "logo_turn", "aspect")
INK = "logo_ink"
MEASURES = SCALAR_MEASURES + (INK,)
# The least spread a measure is credited with, whatever the references show: OCR's box moves by
# a pixel or two between photos of one item, and a box edge is 1/384 of the crop.
SPREAD_FLOORS = {
    "logo_across": 0.006, "logo_along": 0.008, "logo_length": 0.015, "logo_thickness": 0.012, "logo_turn": 1.5,
    "aspect": 0.015,
}
INK_FLOOR = 0.06
# A read is the logo when it has the registered logo's length, at most half of its glyphs
# changed (a logo with swapped glyphs is still measured) and at least this OCR confidence.
LOGO_CONFIDENCE = 0.80
# Fewer references than this, and a product's spread is a guess: it gets no artwork check.
MIN_REFERENCES = 8
# Deviation, in spreads, from which the check fires (tuned on the validation split of the
# medium 1600x1200 training seed; README, Measured).
DEFAULT_FIRES_AT = 6.0
# P(counterfeit | the check fires), for decision.with_evidence (README, Measured).
DEFAULT_MISMATCH_PROBABILITY = 0.90
# Export learns the check with the text check's references unless told not to (--no-artwork-check).
BY_DEFAULT = True
# The crop's side in item lengths (the crop rule's margin on both sides): turns a share of the
# crop into a share of the item for people.
_CROP_PER_ITEM = 1.0 + 2.0 * FocusSpec().margin
# Fewer ink or shell pixels than this inside the logo's box, and the ink is not measured.
_MIN_PIXELS = 12


@dataclass(frozen=True)
class ArtworkFinding:
    measure: str
    value: float
    expected: float  # the references' median (for the ink: the nearest reference's distance, 0)
    deviation: float  # in spreads
    box: tuple[tuple[float, float], ...] | None  # the logo's corners in focus-crop pixels (None: the whole item)
    photo_box: tuple[tuple[float, float], ...] | None = None  # the same corners in the stored photo's pixels

    def describe(self) -> str:
        """One line for a person: which part of the artwork differs from every genuine reference, and how."""
        if self.measure == INK:
            return f"logo ink unlike every genuine reference ({self.deviation:.0f} spreads off)"
        if self.measure == "logo_turn":
            return f"logo turned {self.value - self.expected:+.1f} degrees from registered"
        if self.measure in ("logo_across", "logo_along"):
            where = "across" if self.measure == "logo_across" else "along"
            shift = abs(self.value - self.expected) * _CROP_PER_ITEM
            return f"logo moved {shift * 100:.1f}% of the item's length {where} it from its registered place"
        if self.measure == "logo_thickness":
            change = self.value / self.expected - 1.0 if self.expected else float("inf")
        else:  # logs
            change = math.exp(self.value - self.expected) - 1.0
        what = {"logo_length": "logo", "logo_thickness": "logo's height to length", "aspect": "item's width to length"}[self.measure]
        word = {"logo_length": ("longer", "shorter"), "logo_thickness": ("larger", "smaller"),
                "aspect": ("larger", "smaller")}[self.measure][change < 0]
        return f"{what} {abs(change) * 100:.0f}% {word} than registered"

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


def find_logo(reads: Sequence[TextRead], logo: str) -> TextRead | None:
    candidates = []
    for read in reads:
        text = read.text.strip().upper()
        if read.confidence < LOGO_CONFIDENCE or len(text) != len(logo) or len(read.box) != 4:
            continue
        distance = edit_distance(text, logo.upper())
        if distance <= len(logo) // 2:
            candidates.append((distance, -read.confidence, read))
    return min(candidates, key=lambda c: c[:2])[2] if candidates else None


def measure(crop: np.ndarray, reads: Sequence[TextRead], aspect: float | None, logo: str) -> Measurement:
    """The artwork measures of one uint8 (S, S, 3) focus crop with its OCR reads."""
    scalars: dict[str, float] = {}
    if aspect is not None and math.isfinite(aspect) and aspect > 0:
        scalars["aspect"] = math.log(aspect)
    read = find_logo(reads, logo)
    if read is None:
        return Measurement(scalars, None, None)
    size = float(crop.shape[0])
    quad = np.asarray(read.box, dtype=np.float64)
    sides = [quad[1] - quad[0], quad[2] - quad[1]]
    long_side, short_side = sorted(sides, key=lambda v: -float(np.hypot(*v)))
    length, height = float(np.hypot(*long_side)), float(np.hypot(*short_side))
    if length < 1.0:
        return Measurement(scalars, None, None)
    centre = quad.mean(axis=0)
    # The line's direction, folded into [-90, 90) degrees from the crop's vertical: a box's
    # corner order does not say which end the text starts from.
    turn = math.degrees(math.atan2(float(long_side[0]), float(long_side[1])))
    turn = (turn + 90.0) % 180.0 - 90.0
    scalars.update({
        "logo_across": float(centre[0] / size), "logo_along": float(centre[1] / size),
        "logo_length": math.log(length / size), "logo_thickness": height / length, "logo_turn": turn,
    })
    return Measurement(scalars, ink_against_shell(crop, quad), tuple((float(x), float(y)) for x, y in quad))


def ink_against_shell(crop: np.ndarray, quad: np.ndarray) -> np.ndarray | None:
    """log(ink) - log(shell) per channel inside the logo's box: the box's pixels split in two by
    luminance (Otsu), the smaller part being the glyphs' ink."""
    mask = Image.new("L", (crop.shape[1], crop.shape[0]))
    ImageDraw.Draw(mask).polygon([(float(x), float(y)) for x, y in quad], fill=1)
    pixels = crop[np.asarray(mask, dtype=bool)].astype(np.float64)
    if len(pixels) < 2 * _MIN_PIXELS:
        return None
    luminance = pixels @ np.array([0.299, 0.587, 0.114])
    threshold = _otsu(luminance)
    dark = luminance < threshold
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
        return {"logo": self.logo, "references": self.references,
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
            artwork = cls(str(data["logo"]), medians, spreads, inks, float(data["ink_spread"]), int(data["references"]))
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
        cls, references: Mapping[str, Sequence[tuple[np.ndarray, Sequence[TextRead], float | None]]],
        fires_at: float = DEFAULT_FIRES_AT, mismatch_probability: float = DEFAULT_MISMATCH_PROBABILITY,
    ) -> "ArtworkCheck":
        """From each product's genuine reference crops with their reads and box aspects."""
        products = {}
        for product, photos in references.items():
            logo = logo_word([reads for _, reads, _ in photos])
            if logo is None:
                continue
            found = [measure(crop, reads, aspect, logo) for crop, reads, aspect in photos]
            medians, spreads = {}, {}
            for name in SCALAR_MEASURES:
                values = np.array([m.scalars[name] for m in found if name in m.scalars])
                if len(values) >= MIN_REFERENCES:
                    median = float(np.median(values))
                    medians[name] = median
                    spreads[name] = max(1.4826 * float(np.median(np.abs(values - median))), SPREAD_FLOORS[name])
            inks = np.array([m.ink for m in found if m.ink is not None]).reshape(-1, 3)
            if not medians and len(inks) < MIN_REFERENCES:
                continue
            ink_spread = INK_FLOOR
            if len(inks) >= MIN_REFERENCES:
                distances = np.sqrt(((inks[:, None, :] - inks[None, :, :]) ** 2).sum(axis=2))
                np.fill_diagonal(distances, np.inf)
                ink_spread = max(float(np.median(distances.min(axis=1))), INK_FLOOR)
            else:
                inks = np.zeros((0, 3))
            products[product] = ProductArtwork(logo, medians, spreads, inks, ink_spread, len(photos))
        return cls(products, fires_at, mismatch_probability)

    def with_product(self, product: str, references: Sequence[tuple[np.ndarray, Sequence[TextRead], float | None]]) -> "ArtworkCheck":
        """The check with ``product`` learnt from its genuine references (a product registered
        after training), replacing what it had for that name; unchanged when no logo was read."""
        learned = ArtworkCheck.learn({product: references}, self.fires_at, self.mismatch_probability).products
        products = {name: entry for name, entry in self.products.items() if name != product}
        products.update(learned)
        return ArtworkCheck(products, self.fires_at, self.mismatch_probability)

    def score(self, product: str, crop: np.ndarray, reads: Sequence[TextRead], aspect: float | None) -> tuple[float, ArtworkFinding | None]:
        """(the largest deviation in spreads, 0 when nothing was measured; the finding when it
        reaches ``fires_at``)."""
        artwork = self.products.get(product)
        if artwork is None:
            return 0.0, None
        found = measure(crop, reads, aspect, artwork.logo)
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
        box = None if name == "aspect" else found.logo_box
        return largest, ArtworkFinding(name, value, expected, largest, box)

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
    check: ArtworkCheck, crops: np.ndarray, reads: Sequence[Sequence[TextRead]], aspects: Sequence[float | None],
    probabilities: np.ndarray, class_names: Sequence[str],
) -> tuple[np.ndarray, list[ArtworkFinding | None], np.ndarray]:
    """Each photo's crop and reads against the artwork of its likeliest product -> (probabilities
    updated by the check's mismatch probability where it fires, the findings, the scores)."""
    if not len(crops) == len(reads) == len(aspects) == len(probabilities):
        raise ConfigError(f"{len(crops)} crops, {len(reads)} reads, {len(aspects)} boxes for {len(probabilities)} photos")
    products, per_product = product_probabilities(probabilities, class_names)
    results = [check.score(products[int(row.argmax())], crop, photo_reads, aspect)
               for row, crop, photo_reads, aspect in zip(per_product, crops, reads, aspects)]
    findings = [finding for _, finding in results]
    evidence = np.array([check.mismatch_probability if f is not None else 0.0 for f in findings])
    return with_evidence(probabilities, class_names, evidence), findings, np.array([s for s, _ in results])
