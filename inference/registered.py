"""Products registered from genuine photos alone, with no retraining (`longteng reference add`).

What customs holds of a right holder's product is genuine samples, not a catalogue of its
fakes. Registering a product measures what its genuine photos look like to the model:

* **what it is**: the mean of their focus embeddings, placed among the class means of the
  model's unknown-object detector and compared under the same shared covariance. A photo
  nearer to a registered product's mean than to any trained class is that product (and no
  longer "unknown"), unless its print names another product (`assign`);
* **its print**: the words and label formats read on them, added to the text check's registry;
* **its novelty score**: how far a photo's embedding lies from the references' own spread
  (a probabilistic PCA of them: their top directions plus one variance for the rest), against
  the farthest any reference lies from the spread of the others (leave one out).

Measured on an unseen product (bench/bench_register.py, README: Measured), the novelty score
with the text check separated its counterfeits better than the network's counterfeit mass
transferred from the trained products (ROC-AUC 0.927 against 0.830), so the novelty score is
what a registered product is judged by, with the text check. Without counterfeit photos of the product, the share of its
counterfeits that a GENUINE verdict would let through cannot be measured, so a registered
product gets COUNTERFEIT (a text mismatch, or novelty beyond every genuine reference) or
REFER, never GENUINE (``longteng.decision.registered_scores``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longteng.errors import CheckpointError, ConfigError

VERSION = 1
MIN_REFERENCE_PHOTOS = 5
SPREAD_DIRECTIONS = 10  # principal directions of the references' spread (fewer with few photos)
# A product name becomes a class name ('<product>/genuine'), a folder and a CSV value.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class GenuineSpread:
    """A probabilistic PCA of reference embeddings: directions (r, F), their variances (r,),
    and one variance for everything outside them."""

    basis: np.ndarray
    variances: np.ndarray
    residual_variance: float

    def distances(self, centred: np.ndarray) -> np.ndarray:
        """(N, F) embeddings minus the mean -> (N,) squared distances per feature."""
        projected = centred @ self.basis.T
        residual = np.maximum(np.sum(centred**2, axis=1) - np.sum(projected**2, axis=1), 0.0)
        return (np.sum(projected**2 / self.variances, axis=1) + residual / self.residual_variance) / centred.shape[1]


def fit_spread(embedding: np.ndarray) -> GenuineSpread:
    centred = embedding - embedding.mean(axis=0)
    rank = max(1, min(SPREAD_DIRECTIONS, len(embedding) - 2))
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    variances = singular[:rank] ** 2 / (len(embedding) - 1)
    rest = (np.sum(singular**2) - np.sum(singular[:rank] ** 2)) / (len(embedding) - 1) / max(1, embedding.shape[1] - rank)
    floor = 1e-6 * max(float(variances.max()), 1e-12)  # identical photos would give zero variances
    return GenuineSpread(directions[:rank], np.maximum(variances, floor), float(max(rest, floor)))


@dataclass(frozen=True)
class RegisteredProduct:
    name: str
    mean: np.ndarray  # (F,) float32: the mean focus embedding of its genuine reference photos
    photos: int  # reference photos it was registered from
    # The farthest a reference photo lies from the mean of the others (the detector's
    # distance): an unseen product's photos spread wider than the trained classes' do, so
    # "looks like this product" is measured on its own spread, never tighter than the detector.
    radius: float
    spread: GenuineSpread
    novelty_threshold: float  # the largest leave-one-out novelty among the references

    def novelty(self, embedding: np.ndarray) -> np.ndarray:
        return self.spread.distances(np.asarray(embedding, np.float64) - self.mean)

    def to_dict(self) -> dict:
        from longteng.inference.unknown import encode_array

        return {
            "name": self.name, "mean": encode_array(self.mean), "photos": self.photos, "radius": self.radius,
            "spread": {"basis": encode_array(self.spread.basis), "variances": encode_array(self.spread.variances),
                       "residual_variance": self.spread.residual_variance},
            "novelty_threshold": self.novelty_threshold,
        }


def check_product_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"product name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def registered_to_json(products: Sequence[RegisteredProduct]) -> str:
    return json.dumps({"version": VERSION, "products": [p.to_dict() for p in products]}, sort_keys=True)


def registered_from_json(text: str) -> tuple[RegisteredProduct, ...]:
    """Raises ConfigError naming what is wrong (the metadata parser adds the field)."""
    from longteng.inference.unknown import decode_array

    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("products"), list):
        raise ConfigError(f"expected {{'version': {VERSION}, 'products': [...]}}")
    products = []
    for entry in data["products"]:
        try:
            name = check_product_name(entry["name"])
            mean = decode_array(entry["mean"])
            photos, radius, threshold = int(entry["photos"]), float(entry["radius"]), float(entry["novelty_threshold"])
            spread = GenuineSpread(
                decode_array(entry["spread"]["basis"]), decode_array(entry["spread"]["variances"]),
                float(entry["spread"]["residual_variance"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"a registered product is incomplete ({exc})") from None
        if mean.ndim != 1 or not np.isfinite(mean).all():
            raise ConfigError(f"registered product {name!r}: mean must be a finite vector, got shape {mean.shape}")
        if photos < MIN_REFERENCE_PHOTOS:
            raise ConfigError(f"registered product {name!r}: needs at least {MIN_REFERENCE_PHOTOS} photos, got {photos}")
        if not all(np.isfinite(v) and v >= 0 for v in (radius, threshold)):
            raise ConfigError(f"registered product {name!r}: radius and novelty_threshold must be finite and non-negative")
        basis, variances = spread.basis, spread.variances
        if basis.ndim != 2 or basis.shape[1] != mean.shape[0] or variances.shape != (basis.shape[0],):
            raise ConfigError(f"registered product {name!r}: spread shapes do not fit (basis {basis.shape}, mean {mean.shape})")
        if not (np.isfinite(basis).all() and np.all(variances > 0) and np.isfinite(variances).all()
                and np.isfinite(spread.residual_variance) and spread.residual_variance > 0):
            raise ConfigError(f"registered product {name!r}: spread variances must be finite and positive")
        products.append(RegisteredProduct(name, mean, photos, radius, spread, threshold))
    names = [p.name for p in products]
    if len(set(names)) != len(names):
        raise ConfigError(f"a product is registered twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    return tuple(products)


def registered_class_names(products: Sequence[RegisteredProduct]) -> list[str]:
    return [f"{p.name}/{authenticity}" for p in products for authenticity in ("counterfeit", "genuine")]


@dataclass(frozen=True)
class Assignment:
    """Per photo: the registered product it is (index into the products, -1: a trained class)."""

    product: np.ndarray  # (N,) int
    novelty: np.ndarray  # (N,) novelty against the assigned product's references (0 for the rest)
    unknown_score: np.ndarray  # (N,) distance to the nearest mean, trained or registered
    unknown: np.ndarray  # (N,) bool: beyond the detector's threshold, or a registered product's radius


def assign(embedding: np.ndarray, metadata, reads: Sequence[Sequence] | None = None) -> Assignment:
    """Which photos are registered products: nearest mean under the detector's covariance,
    unless the print names the product (``reads``: each photo's OCR, as the text check reads
    it). A counterfeit of a registered product lies off its genuine references by what makes
    it a counterfeit, and can lie nearer a trained class's mean (README, Measured: registered
    products), while its logo, misspelt or not, still names the brand it copies."""
    from longteng.inference.unknown import mahalanobis_distances

    products = metadata.registered_products
    distances = mahalanobis_distances(embedding, metadata.unknown.parameters, np.stack([p.mean for p in products]))
    trained = len(distances[0]) - len(products)
    nearest = distances.argmin(axis=1)
    registry = metadata.text_registry
    if reads is not None and registry is not None:
        index = {p.name: k for k, p in enumerate(products)}
        for row, photo_reads in enumerate(reads):
            named = registry.named_product(photo_reads) if photo_reads else None
            if named in index:
                nearest[row] = trained + index[named]
            elif named is not None and nearest[row] >= trained and named in metadata.trained_products:
                nearest[row] = int(distances[row, :trained].argmin())
    product = np.where(nearest >= trained, nearest - trained, -1)
    distance = distances[np.arange(len(nearest)), nearest]
    threshold = metadata.unknown.threshold
    limit = np.array([threshold if k < 0 else max(threshold, products[k].radius) for k in product])
    novelty = np.zeros(len(product))
    for k, registered in enumerate(products):
        rows = product == k
        if rows.any():
            novelty[rows] = registered.novelty(embedding[rows])
    return Assignment(product, novelty, distance, distance > limit)


@dataclass(frozen=True)
class NoveltyEvidence:
    """A registered product's photo that lies beyond every genuine reference of it."""

    product: str
    novelty: float
    threshold: float

    def to_dict(self) -> dict:
        return {"detector": "novelty", "product": self.product, "novelty": round(self.novelty, 4),
                "threshold": round(self.threshold, 4)}

    def describe(self) -> str:
        return f"novelty {self.novelty:.3g}, beyond every genuine {self.product} reference ({self.threshold:.3g})"


def novelty_evidence(assignment: Assignment, metadata) -> list[NoveltyEvidence | None]:
    products = metadata.registered_products
    return [
        NoveltyEvidence(products[k].name, float(n), products[k].novelty_threshold)
        if k >= 0 and n > products[k].novelty_threshold else None
        for k, n in zip(assignment.product, assignment.novelty)
    ]


def extend_probabilities(probabilities: np.ndarray, assignment: Assignment, metadata) -> np.ndarray:
    """(N, K) over the trained classes -> (N, K + 2R) over metadata.decision_classes: a photo
    of a registered product carries all its mass on that product's two classes."""
    from longteng.decision import registered_scores

    trained = probabilities.shape[1]
    extended = np.zeros((len(probabilities), len(metadata.decision_classes)))
    extended[:, :trained] = probabilities
    rows = np.flatnonzero(assignment.product >= 0)
    index = assignment.product[rows]
    thresholds = np.array([metadata.registered_products[k].novelty_threshold for k in index])
    scores = registered_scores(assignment.novelty[rows], thresholds, metadata.operating_point)
    extended[rows, :trained] = 0.0
    extended[rows, trained + 2 * index] = scores  # '<product>/counterfeit', then '<product>/genuine'
    extended[rows, trained + 2 * index + 1] = 1.0 - scores
    return extended


def registration_refusal(metadata, names) -> str | None:
    """Why `metadata`'s model cannot know products `names` from genuine photos, or None."""
    if not metadata.two_stage:
        return "registering a product needs a two-stage model (it measures the focus crop)"
    if metadata.unknown is None or metadata.unknown.method != "mahalanobis":
        return "registering a product needs a model exported with the mahalanobis unknown-object detector (longteng.unknown)"
    clashes = sorted(metadata.trained_products & set(names))
    if clashes:
        return f"product {', '.join(map(repr, clashes))} is one the model was trained on; register a new product"
    return None


def register_product(model, name: str, photos: Sequence[Path], progress=None):
    """Measure `photos` (genuine, of one product) through the runtime's own path.

    Returns (the RegisteredProduct, the OCR reads per photo, the failures, the photos as the
    aligned check's references, the photos as the artwork check's references: None when the
    model has no such check). Raises ConfigError when the model cannot register products or
    too few photos decode."""
    from longteng.inference.two_stage import outputs_for_paths

    metadata = model.metadata
    check_product_name(name)
    refusal = registration_refusal(metadata, [name])
    if refusal is not None:
        raise ConfigError(refusal)
    compares = metadata.aligned_check is not None
    measures = metadata.artwork_check is not None
    result = outputs_for_paths(model, list(photos), ("embedding",), progress=progress, read_print=True,
                               keep_crops=compares or measures)
    if len(result.kept) < MIN_REFERENCE_PHOTOS:
        raise ConfigError(
            f"{len(result.kept)} of {len(photos)} photos could be read; registering a product needs at least {MIN_REFERENCE_PHOTOS}"
        )
    embedding = np.asarray(result.outputs["embedding"], np.float64)
    product = RegisteredProduct(
        name, embedding.mean(axis=0).astype(np.float32), len(result.kept),
        _leave_one_out_radius(embedding, metadata.unknown.parameters), fit_spread(embedding), _leave_one_out_novelty(embedding),
    )
    references = None
    if compares:
        from longteng.inference.aligned_check import ProductReferences, shrink

        size = metadata.aligned_check.size
        aspects = [v.box.width / v.box.length if v.box is not None else 1.0 for v in result.views]
        references = ProductReferences.build(np.stack([shrink(c, size) for c in result.crops]), aspects)
    artwork = None
    if measures:
        artwork = list(zip(result.crops, result.reads))
    return product, result.reads, result.failures, references, artwork


def _leave_one_out_radius(embedding: np.ndarray, parameters) -> float:
    from longteng.inference.unknown import mahalanobis_distances

    n = len(embedding)
    others = (embedding.sum(axis=0)[None, :] - embedding) / (n - 1)  # row i: the mean without photo i
    return float(max(mahalanobis_distances(embedding[i : i + 1], parameters, others[i : i + 1])[0, -1] for i in range(n)))


def _leave_one_out_novelty(embedding: np.ndarray) -> float:
    """The largest novelty of a reference against the spread of the others: the threshold
    that no genuine reference would cross (a false-alarm rate of about 1 / photos)."""
    return float(leave_one_out_novelties(embedding).max())


def leave_one_out_novelties(embedding: np.ndarray) -> np.ndarray:
    """(N,) each reference's novelty against the spread of the others."""
    scores = []
    for i in range(len(embedding)):
        others = np.delete(embedding, i, axis=0)
        scores.append(fit_spread(others).distances(embedding[i : i + 1] - others.mean(axis=0))[0])
    return np.array(scores)


def with_product(metadata, product: RegisteredProduct, reads: list[list], references=None, artwork_references=None):
    """The metadata with `product` registered (replacing an earlier registration of the name),
    its print added to the text registry and its photos to the aligned and artwork checks'
    references."""
    from dataclasses import replace

    from longteng.inference.text_check import TextRegistry

    learned = TextRegistry.learn({product.name: reads})
    registry = metadata.text_registry or TextRegistry()
    products = dict(registry.products)
    products[product.name] = learned.products[product.name]
    kept = tuple(p for p in metadata.registered_products if p.name != product.name)
    aligned = metadata.aligned_check
    if aligned is not None and references is not None:
        aligned = aligned.with_product(product.name, references)
    artwork = metadata.artwork_check
    if artwork is not None and artwork_references is not None:
        artwork = artwork.with_product(product.name, artwork_references)
    return replace(
        metadata, registered_products=kept + (product,),
        text_registry=TextRegistry(products, registry.mismatch_probability, registry.detection_side), aligned_check=aligned,
        artwork_check=artwork,
    )


def check_registered(metadata, embedding_size: int | None, source: str) -> None:
    """Graph-dependent checks of longteng.registered_products (the session calls it)."""
    field = f"{source}: metadata longteng.registered_products"
    refusal = registration_refusal(metadata, [p.name for p in metadata.registered_products])
    if refusal is not None:
        raise CheckpointError(f"{field}: {refusal}")
    for product in metadata.registered_products:
        if embedding_size is not None and product.mean.shape != (embedding_size,):
            raise CheckpointError(
                f"{field}: {product.name!r} has a mean of {product.mean.shape[0]} features, the graph's embedding {embedding_size}"
            )
