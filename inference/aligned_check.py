"""Compare the item with genuine references of its product, place by place.

A counterfeit is a copy of a design that every genuine item repeats within tight tolerances:
the logo at its place, the marks in their number, the print in its weight, the shell in its
proportions. So once the focus crop is registered onto the product's genuine references
(the glance's box is only roughly right), a tell is a place where the item differs from all of
them. The check:

1. **registers** the crop (shrunk to `size`) onto the product's template, the mean edge map of
   its aligned references, by ECC with an affine motion on gradient magnitude: edges do not
   depend on the colourway or on whether the print is darker or lighter than the shell. ECC
   starts from the likeliest turns of a coarse search every 15 degrees (the glance's "up" is
   off by any angle on a nearly square item);
2. **compares** it with its `neighbours` nearest references (nearest in colour: the same
   colourway) pixel by pixel, in colour after a per-channel gain and offset fitted where they
   agree, and in edges: each difference in units of the references' own spread at that pixel
   (PaDiM on pixels), so a serial number or a rotor's angle, which differ between genuine
   items, does not count;
3. **drops** every anomalous blob that reaches the item's outline: packing material, tape and
   shadows come in over an edge, while most tells sit inside (a blob touching the outline is
   still counted, by the share of the item it covers);
4. **scores** a handful of statistics of those maps with a logistic regression, learnt at export
   (export/aligned_fit.py) on the training photos of the trained products (generic statistics, so it applies to a
   registered product too).

What it cannot see: a tell below the resolution of `size` (a single glyph's weight in fine
print), or one that the references vary in as much. numpy and OpenCV only (OpenCV comes with
rapidocr); the bank is in the model's metadata (``longteng.aligned_check``).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# OpenCV (0.13 s to import) is imported where it is used: every command's start-up imports this
# module for its defaults, and `predict` loads OpenCV in the background with the OCR engine.
from longteng.decision import product_probabilities, stack_evidence
from longteng.errors import ConfigError
from longteng.focus import FocusSpec

DEFAULT_SIZE = 192
DEFAULT_NEIGHBOURS = 16
# Genuine training photos per product kept as references (uint8 at DEFAULT_SIZE: 110 KB each).
DEFAULT_REFERENCES = 48
# The crop's item fills 1 / (1 + 2 margin) of its long side (the crop rule's margin, which no
# option changes); statistics are taken inside this share of it, so the background seen
# through the margin never counts.
_ITEM_SHARE = 1.0 / (1.0 + 2.0 * FocusSpec().margin)
_INTERIOR = 0.92
# Floors of the references' spread (8-bit levels; edge-magnitude units): below them a
# difference is sensor noise and JPEG, however alike the references are.
_COLOUR_FLOOR = 6.0
_EDGE_FLOOR = 4.0
_ANOMALOUS = 2.5  # a pixel this many spreads away belongs to a blob
_CLOSING = 11  # pixels: anomalous pieces closer than this are one blob
_ECC_ITERATIONS, _ECC_EPSILON = 60, 1e-4
FEATURES = (
    "colour_p99", "colour_mean", "edge_p99", "edge_mean", "edge_top1", "edge_p999", "outline_share",
    "correlation", "aspect_change",
)
_VERSION = 2  # 2: the fusion weighs the evidence above fires_above, not the score


def shrink(crop: np.ndarray, size: int) -> np.ndarray:
    """A focus crop at the check's size (area averaging: the print is not aliased)."""
    import cv2
    if crop.shape[0] == size:
        return crop
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)


def edge_map(rgb: np.ndarray) -> np.ndarray:
    """float32 (S, S): smoothed gradient magnitude of the grey image."""
    import cv2
    gray = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(np.sqrt(gx * gx + gy * gy), (0, 0), 1.5)


@dataclass(frozen=True)
class Registration:
    pixels: np.ndarray  # uint8 (S, S, 3): the crop in the template's frame
    correlation: float  # ECC's enhanced correlation with the template (-1: it did not converge)
    warp: np.ndarray  # (2, 3): template pixel -> crop pixel


def _rotation(size: int, degrees: float) -> np.ndarray:
    """(2, 3) template pixel -> crop pixel: a turn about the centre."""
    import cv2
    centre = (size / 2 - 0.5, size / 2 - 0.5)
    return cv2.getRotationMatrix2D(centre, degrees, 1.0).astype(np.float32)


def _likely_rotations(image_edges: np.ndarray, template: np.ndarray, keep: int) -> list[float]:
    """Turns of the crop, likeliest first, by the correlation of coarse edge maps over every
    15 degrees: the glance's "up" is reliable to a half turn on an elongated item, but on a
    nearly square one (a drone) it can be off by any angle."""
    import cv2
    coarse_size = 48
    coarse_template = cv2.resize(template, (coarse_size, coarse_size), interpolation=cv2.INTER_AREA).ravel()
    coarse_template = (coarse_template - coarse_template.mean()) / (coarse_template.std() + 1e-6)
    coarse = cv2.resize(image_edges, (coarse_size, coarse_size), interpolation=cv2.INTER_AREA)
    angles = np.arange(0.0, 360.0, 15.0)
    scores = []
    for angle in angles:
        turned = cv2.warpAffine(coarse, _rotation(coarse_size, angle), (coarse_size, coarse_size),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE).ravel()
        scores.append(float((turned - turned.mean()) / (turned.std() + 1e-6) @ coarse_template))
    return [float(angles[k]) for k in np.argsort(scores)[::-1][:keep]]


def _ecc(template: np.ndarray, image_edges: np.ndarray, warp: np.ndarray) -> tuple[float, np.ndarray] | None:
    """Affine ECC from `warp`, coarse to fine: first at half size (a wider basin), then full."""
    import cv2
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, _ECC_ITERATIONS, _ECC_EPSILON)
    try:
        half = warp.copy()
        half[:, 2] /= 2.0
        _, half = cv2.findTransformECC(cv2.pyrDown(template), cv2.pyrDown(image_edges), half, cv2.MOTION_AFFINE, criteria, None, 3)
        half[:, 2] *= 2.0
        correlation, warp = cv2.findTransformECC(template, image_edges, half, cv2.MOTION_AFFINE, criteria, None, 1)
    except cv2.error:  # no convergence (a crop of nothing)
        return None
    return float(correlation), warp


def register(crop: np.ndarray, template: np.ndarray) -> Registration:
    """crop uint8 (S, S, 3) at the template's size -> registered onto it, from the two
    likeliest turns and the half turn of the likeliest (a drone's body is nearly symmetric)."""
    import cv2
    size = template.shape[0]
    image_edges = edge_map(crop)
    best = Registration(crop, -1.0, np.eye(2, 3, dtype=np.float32))
    first, second = _likely_rotations(image_edges, template, 2)
    for angle in dict.fromkeys((first, second, (first + 180.0) % 360.0)):
        found = _ecc(template, image_edges, _rotation(size, angle))
        if found is not None and found[0] > best.correlation:
            pixels = cv2.warpAffine(crop, found[1], (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_REPLICATE)
            best = Registration(pixels, found[0], found[1])
    return best


def _warp_aspect(warp: np.ndarray) -> float:
    return float(np.linalg.norm(warp[:, 0]) / max(np.linalg.norm(warp[:, 1]), 1e-6))


def _interior(size: int, aspect: float) -> np.ndarray:
    grid = np.abs(np.arange(size) + 0.5 - size / 2) / (size / 2)
    inside = _INTERIOR * _ITEM_SHARE
    return (grid[:, None] < inside) & (grid[None, :] < inside * min(aspect, 1.0))


def _match_photometry(image: np.ndarray, mean: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per channel gain and offset that bring `image` onto `mean` where the references agree,
    refitted twice without the fifth of pixels that disagree most (glare, a tell, packing)."""
    out = np.empty_like(image)
    for channel in range(3):
        x, m, base = image[..., channel].ravel(), mean[..., channel].ravel(), weight[..., channel].ravel()
        w = base
        for _ in range(3):
            total = w.sum()
            mx, mm = (w * x).sum() / total, (w * m).sum() / total
            variance = (w * (x - mx) ** 2).sum() / total
            gain = float(np.clip((w * (x - mx) * (m - mm)).sum() / total / max(variance, 1e-6), 0.5, 2.0))
            offset = mm - gain * mx
            residual = np.abs(gain * x + offset - m)
            w = np.where(residual > np.percentile(residual[base > 0], 80), 0.0, base)
        out[..., channel] = gain * image[..., channel] + offset
    return out


def _inside_blobs(anomaly: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """Interior pixels outside every anomalous blob that reaches the interior's outline."""
    import cv2
    anomalous = ((anomaly > _ANOMALOUS) & interior).astype(np.uint8)
    # Close the gaps first: a bubble sheet or a scatter of foam is one object of many pieces.
    anomalous = cv2.morphologyEx(anomalous, cv2.MORPH_CLOSE, np.ones((_CLOSING, _CLOSING), np.uint8)) & interior.astype(np.uint8)
    _, labels = cv2.connectedComponents(anomalous, connectivity=8)
    band = interior & ~cv2.erode(interior.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    touching = np.unique(labels[band & (anomalous > 0)])
    return interior & ~np.isin(labels, touching[touching > 0])


@dataclass(frozen=True)
class ProductReferences:
    """One product's genuine references, registered onto its template."""

    template: np.ndarray  # float32 (S, S): the mean edge map of the references
    pixels: np.ndarray  # uint8 (N, S, S, 3)
    aspect: float  # the item's width / length in its crop (median over the references)
    warp_aspect: float  # the median aspect of the references' own registrations

    def __post_init__(self) -> None:
        n, s = len(self.pixels), self.template.shape[0]
        if self.pixels.ndim != 4 or self.pixels.shape[1:] != (s, s, 3) or self.template.shape != (s, s) or n < 2:
            raise ConfigError(f"aligned check: references of shape {self.pixels.shape} do not fit a template of {self.template.shape}")
        if not (0.05 <= self.aspect <= 20 and 0.05 <= self.warp_aspect <= 20):
            raise ConfigError(f"aligned check: aspect {self.aspect!r} / {self.warp_aspect!r} out of range")

    # Derived from the pixels on first use, not at load: a photo needs one product's only, and
    # `predict` of one photo starts faster.
    @functools.cached_property
    def edges(self) -> np.ndarray:
        return np.stack([edge_map(p) for p in self.pixels])

    @functools.cached_property
    def thumbnails(self) -> np.ndarray:
        import cv2
        return np.stack([cv2.resize(p, (24, 24), interpolation=cv2.INTER_AREA) for p in self.pixels]).reshape(
            len(self.pixels), -1).astype(np.float32)

    @classmethod
    def build(cls, crops: np.ndarray, aspects: Sequence[float], iterations: int = 2) -> "ProductReferences":
        """crops uint8 (N, S, S, 3) of genuine photos of one product, at the check's size."""
        template = np.mean([edge_map(c) for c in crops], axis=0).astype(np.float32)
        for _ in range(iterations + 1):
            registered = [register(c, template) for c in crops]
            template = np.mean([edge_map(r.pixels) for r in registered], axis=0).astype(np.float32)
        return cls(template, np.stack([r.pixels for r in registered]), float(np.median(aspects)),
                   float(np.median([_warp_aspect(r.warp) for r in registered])))


@dataclass(frozen=True)
class Comparison:
    """What the check found on one crop: its statistics (FEATURES) and the most unusual
    place inside the item, in the pixels of the crop it was given (x0, y0, x1, y1)."""

    features: np.ndarray
    region: tuple[float, float, float, float] | None
    correlation: float


def compare(references: ProductReferences, crop: np.ndarray, neighbours: int = DEFAULT_NEIGHBOURS,
            exclude: np.ndarray | None = None) -> Comparison:
    """crop uint8 (S0, S0, 3), the focus crop at any size. ``exclude``: references not to use
    (the photo's own seizure case, when the check's weights are learnt)."""
    import cv2
    size = references.template.shape[0]
    scale = crop.shape[0] / size
    small = shrink(crop, size)
    registration = register(small, references.template)
    pixels = registration.pixels
    thumb = cv2.resize(pixels, (24, 24), interpolation=cv2.INTER_AREA).reshape(-1).astype(np.float32)
    distance = ((references.thumbnails - thumb) ** 2).sum(axis=1)
    if exclude is not None:
        distance = np.where(exclude, np.inf, distance)
    nearest = np.argsort(distance)[: min(neighbours, int(np.isfinite(distance).sum()))]
    ref_pixels = references.pixels[nearest].astype(np.float32)
    ref_edges = references.edges[nearest]
    interior = _interior(size, references.aspect)
    mean, spread = ref_pixels.mean(axis=0), ref_pixels.std(axis=0) + _COLOUR_FLOOR
    matched = _match_photometry(pixels.astype(np.float32), mean, interior[..., None] / spread**2)
    colour = cv2.GaussianBlur((np.abs(matched - mean) / spread).max(axis=2), (0, 0), 2.0)
    edges, mean_edges = edge_map(pixels), ref_edges.mean(axis=0)
    gain = mean_edges[interior].mean() / max(float(edges[interior].mean()), 1e-3)
    edge = cv2.GaussianBlur(np.abs(edges * gain - mean_edges) / (ref_edges.std(axis=0) + _EDGE_FLOOR), (0, 0), 2.0)
    kept = _inside_blobs(np.maximum(colour, edge), interior)
    if not kept.any():
        kept = interior
    kept_colour, kept_edge = colour[kept], np.sort(edge[kept])[::-1]
    features = np.array([
        np.percentile(kept_colour, 99), kept_colour.mean(), kept_edge[len(kept_edge) // 100], kept_edge.mean(),
        kept_edge[: max(1, len(kept_edge) // 100)].mean(), kept_edge[len(kept_edge) // 1000],
        1.0 - kept.sum() / interior.sum(), -registration.correlation,
        abs(math.log(_warp_aspect(registration.warp) / references.warp_aspect)),
    ], dtype=np.float64)
    return Comparison(features, _region(np.where(kept, np.maximum(colour, edge), 0.0), registration, scale),
                      registration.correlation)


def _region(anomaly: np.ndarray, registration: Registration, scale: float) -> tuple[float, float, float, float] | None:
    """The box of the most unusual place (the blob around the peak, down to half its height),
    mapped back into the crop's pixels."""
    import cv2
    peak = float(anomaly.max())
    if peak <= 0.0:
        return None
    _, labels = cv2.connectedComponents((anomaly >= peak / 2).astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(labels == labels[np.unravel_index(int(anomaly.argmax()), anomaly.shape)])
    corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.max() + 1, ys.max() + 1], [xs.min(), ys.max() + 1]], float)
    # Where the registration stretches the item beyond the crop, only the crop can hold evidence.
    mapped = np.clip(corners @ registration.warp[:, :2].T + registration.warp[:, 2], 0.0, anomaly.shape[0]) * scale
    return (float(mapped[:, 0].min()), float(mapped[:, 1].min()), float(mapped[:, 0].max()), float(mapped[:, 1].max()))


@dataclass(frozen=True)
class AlignedCheck:
    """The references of each product and the weights that turn a comparison into evidence."""

    products: dict[str, ProductReferences]
    weights: np.ndarray  # (F,) on standardised FEATURES
    bias: float
    feature_mean: np.ndarray
    feature_std: np.ndarray
    neighbours: int = DEFAULT_NEIGHBOURS
    # Fusion with the classifier (decision.stack_evidence): counterfeit log-odds =
    # fusion[0] * classifier log-odds + fusion[1] * evidence + fusion[2], where the evidence
    # is how far the check's score lies above `fires_above` (0 below it). Export fits
    # fusion[0] = 1: the check adds evidence where it fires and never dilutes the
    # classifier's say (a linear stacking did, and lost recall on another seed: README).
    fusion: tuple[float, float, float] = (1.0, 0.0, 0.0)
    # The score above which the check counts as having fired (evidence in reports, and the
    # knee of its evidence): what the top 2% of genuine validation photos reach.
    fires_above: float = 0.0

    def __post_init__(self) -> None:
        f = len(FEATURES)
        for name, array in (("weights", self.weights), ("feature_mean", self.feature_mean), ("feature_std", self.feature_std)):
            if np.shape(array) != (f,) or not np.all(np.isfinite(array)):
                raise ConfigError(f"aligned check: {name} must be {f} finite numbers")
        if not np.all(np.asarray(self.feature_std) > 0):
            raise ConfigError("aligned check: feature_std must be positive")
        if len(self.fusion) != 3 or not all(math.isfinite(v) for v in self.fusion) or self.fusion[0] <= 0:
            raise ConfigError(f"aligned check: fusion must be three finite numbers with a positive first, got {self.fusion!r}")
        if not math.isfinite(self.fires_above):
            raise ConfigError(f"aligned check: fires_above must be finite, got {self.fires_above!r}")
        if isinstance(self.neighbours, bool) or not isinstance(self.neighbours, int) or not 1 <= self.neighbours <= 256:
            raise ConfigError(f"aligned check: neighbours must be a whole number from 1 to 256, got {self.neighbours!r}")
        if not self.products:
            raise ConfigError("aligned check: no product references")
        sizes = {r.template.shape[0] for r in self.products.values()}
        if len(sizes) != 1 or not 32 <= sizes.pop() <= 1024:
            raise ConfigError("aligned check: every product's references must share one size from 32 to 1024 pixels")

    @property
    def size(self) -> int:
        return int(next(iter(self.products.values())).template.shape[0])

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N, F) comparisons' features -> (N,) log-odds that each shows a counterfeit."""
        return ((np.atleast_2d(features) - self.feature_mean) / self.feature_std) @ self.weights + self.bias

    def evidence(self, scores: np.ndarray) -> np.ndarray:
        """(N,) scores -> how far each lies above `fires_above` (0 below; NaN: no say)."""
        scores = np.asarray(scores, dtype=np.float64)
        return np.where(np.isnan(scores), np.nan, np.maximum(scores - self.fires_above, 0.0))

    def to_json(self) -> str:
        buffer = io.BytesIO()
        arrays = {}
        for index, references in enumerate(self.products.values()):
            arrays[f"template{index}"] = references.template.astype(np.float32)
            arrays[f"pixels{index}"] = references.pixels
        np.savez_compressed(buffer, **arrays)
        return json.dumps({
            "version": _VERSION, "features": list(FEATURES), "neighbours": self.neighbours,
            "products": [{"name": name, "aspect": r.aspect, "warp_aspect": r.warp_aspect} for name, r in self.products.items()],
            "weights": [float(v) for v in self.weights], "bias": float(self.bias),
            "feature_mean": [float(v) for v in self.feature_mean], "feature_std": [float(v) for v in self.feature_std],
            "fusion": [float(v) for v in self.fusion], "fires_above": float(self.fires_above),
            "arrays": base64.b64encode(buffer.getvalue()).decode("ascii"),
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AlignedCheck":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ConfigError(f"aligned check: expected version {_VERSION}")
        if data.get("features") != list(FEATURES):
            raise ConfigError(f"aligned check: features {data.get('features')!r} are not this runtime's {list(FEATURES)}")
        try:
            arrays = np.load(io.BytesIO(base64.b64decode(data["arrays"], validate=True)), allow_pickle=False)
            arrays = {name: arrays[name] for name in arrays.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"aligned check: reference arrays unreadable ({exc})") from None
        products = {}
        for index, entry in enumerate(data["products"]):
            if f"pixels{index}" not in arrays or arrays[f"pixels{index}"].dtype != np.uint8:
                raise ConfigError(f"aligned check: product {entry.get('name')!r} has no uint8 reference pixels")
            products[str(entry["name"])] = ProductReferences(
                arrays[f"template{index}"].astype(np.float32), arrays[f"pixels{index}"],
                float(entry["aspect"]), float(entry["warp_aspect"]),
            )
        return cls(products, np.array(data["weights"], float), float(data["bias"]), np.array(data["feature_mean"], float),
                   np.array(data["feature_std"], float), int(data["neighbours"]), tuple(float(v) for v in data["fusion"]),
                   float(data["fires_above"]))

    def with_product(self, name: str, references: ProductReferences) -> "AlignedCheck":
        return AlignedCheck({**self.products, name: references}, self.weights, self.bias, self.feature_mean,
                            self.feature_std, self.neighbours, self.fusion, self.fires_above)


# Below this correlation with its template the crop is not registered (the glance cut something
# else, or a wrong turn): the check then says nothing rather than calling the item strange.
MIN_CORRELATION = 0.5


@dataclass(frozen=True)
class AlignedFinding:
    """The check fired on a photo: its score lies beyond what genuine validation photos reach."""

    product: str
    score: float
    threshold: float
    box: tuple[float, float, float, float] | None  # the most unusual place, crop pixels
    photo_box: list[tuple[float, float]] | None = None  # the same place in the stored photo's pixels

    def to_dict(self) -> dict:
        return {"detector": "aligned", "product": self.product, "score": round(self.score, 3),
                "threshold": round(self.threshold, 3),
                "box": None if self.photo_box is None else [[round(x, 1), round(y, 1)] for x, y in self.photo_box]}

    def describe(self) -> str:
        return f"{self.product} differs from its genuine references (score {self.score:.2f}, threshold {self.threshold:.2f})"

    def corners(self) -> list[tuple[float, float]] | None:
        if self.box is None:
            return None
        x0, y0, x1, y1 = self.box
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def aligned_scores(check: AlignedCheck, products: Sequence[str], crops: np.ndarray) -> tuple[np.ndarray, list[Comparison | None]]:
    """(N,) log-odds per focus crop (NaN where the product has no references or the crop does
    not register) and each comparison."""
    scores = np.full(len(crops), np.nan)
    comparisons: list[Comparison | None] = [None] * len(crops)
    for row, (product, crop) in enumerate(zip(products, crops)):
        references = check.products.get(product)
        if references is None:
            continue
        comparison = compare(references, crop, check.neighbours)
        comparisons[row] = comparison
        if comparison.correlation >= MIN_CORRELATION:
            scores[row] = float(check.score(comparison.features)[0])
    return scores, comparisons


def apply_aligned_check(
    check: AlignedCheck, crops: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
) -> tuple[np.ndarray, list[AlignedFinding | None], np.ndarray]:
    """Stack the check's evidence on the classifier's probabilities (decision.stack_evidence),
    for the product the classifier sees -> (probabilities, the findings where it fired, the
    check's scores: NaN where it had no say)."""
    products, per_product = product_probabilities(probabilities, class_names)
    likeliest = [products[int(row.argmax())] for row in per_product]
    scores, comparisons = aligned_scores(check, likeliest, crops)
    findings: list[AlignedFinding | None] = [
        AlignedFinding(product, float(score), check.fires_above, comparison.region)
        if comparison is not None and np.isfinite(score) and score > check.fires_above else None
        for product, score, comparison in zip(likeliest, scores, comparisons)
    ]
    return stack_evidence(probabilities, class_names, check.evidence(scores), check.fusion), findings, scores


__all__ = ["AlignedCheck", "AlignedFinding", "Comparison", "aligned_scores", "apply_aligned_check", "FEATURES", "ProductReferences", "compare", "edge_map", "register", "shrink"]
