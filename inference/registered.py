"""Products registered from genuine photos alone, with no retraining (`longteng reference add`).

What customs holds of a right holder's product is genuine samples, not a catalogue of its
fakes. Registering a product measures what its genuine photos look like to the model:

* **what it is**: the mean of their focus embeddings, placed among the class means of the
  model's unknown-object detector and compared under the same shared covariance. A photo
  nearer to a registered product's mean than to any trained class is that product (and no
  longer "unknown");
* **its print**: the words and label formats read on them, added to the text check's registry;
* **its counterfeit score**: the network's counterfeit mass, i.e. the tells it learned on other
  products, transferred, set against the highest score among the product's own references.

Without counterfeit photos of the product, the share of its counterfeits that a GENUINE
verdict would let through cannot be measured, so a registered product gets COUNTERFEIT (a
text mismatch, or a score above every genuine reference) or REFER, never GENUINE
(``longteng.decision.registered_scores``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longteng.decision import counterfeit_score
from longteng.errors import CheckpointError, ConfigError

VERSION = 1
MIN_REFERENCE_PHOTOS = 5
# A product name becomes a class name ('<product>/genuine'), a folder and a CSV value.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class RegisteredProduct:
    name: str
    mean: np.ndarray  # (F,) float32: the mean focus embedding of its genuine reference photos
    photos: int  # reference photos it was registered from
    reference_max: float  # the highest counterfeit score among those photos
    # The farthest a reference photo lies from the mean of the others (the detector's
    # distance): an unseen product's photos spread wider than the trained classes' do, so
    # "looks like this product" is measured on its own spread, never tighter than the detector.
    radius: float

    def to_dict(self) -> dict:
        from longteng.inference.unknown import encode_array

        return {"name": self.name, "mean": encode_array(self.mean), "photos": self.photos,
                "reference_max": self.reference_max, "radius": self.radius}


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
            photos, reference_max, radius = int(entry["photos"]), float(entry["reference_max"]), float(entry["radius"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"a registered product is incomplete ({exc})") from None
        if mean.ndim != 1 or not np.isfinite(mean).all():
            raise ConfigError(f"registered product {name!r}: mean must be a finite vector, got shape {mean.shape}")
        if photos < MIN_REFERENCE_PHOTOS or not 0.0 <= reference_max <= 1.0 or not (np.isfinite(radius) and radius >= 0):
            raise ConfigError(
                f"registered product {name!r}: needs at least {MIN_REFERENCE_PHOTOS} photos, reference_max in [0, 1] "
                "and a finite, non-negative radius"
            )
        products.append(RegisteredProduct(name, mean, photos, reference_max, radius))
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
    raw_scores: np.ndarray  # (N,) the network's counterfeit mass
    unknown_score: np.ndarray  # (N,) distance to the nearest mean, trained or registered
    unknown: np.ndarray  # (N,) bool: beyond the detector's threshold, or a registered product's radius


def assign(embedding: np.ndarray, probabilities: np.ndarray, metadata) -> Assignment:
    """Which photos are registered products: nearest mean under the detector's covariance."""
    from longteng.inference.unknown import mahalanobis_distances

    products = metadata.registered_products
    distances = mahalanobis_distances(embedding, metadata.unknown.parameters, np.stack([p.mean for p in products]))
    trained = len(distances[0]) - len(products)
    nearest = distances.argmin(axis=1)
    product = np.where(nearest >= trained, nearest - trained, -1)
    distance = distances.min(axis=1)
    threshold = metadata.unknown.threshold
    limit = np.array([threshold if k < 0 else max(threshold, products[k].radius) for k in product])
    return Assignment(product, counterfeit_score(probabilities, metadata.class_names), distance, distance > limit)


def extend_probabilities(probabilities: np.ndarray, assignment: Assignment, metadata) -> np.ndarray:
    """(N, K) over the trained classes -> (N, K + 2R) over metadata.decision_classes: a photo
    of a registered product carries all its mass on that product's two classes."""
    from longteng.decision import registered_scores

    products = metadata.registered_products
    extended = np.zeros((len(probabilities), len(metadata.decision_classes)))
    extended[:, : probabilities.shape[1]] = probabilities
    for i, index in enumerate(assignment.product):
        if index < 0:
            continue
        product = products[index]
        score = registered_scores(assignment.raw_scores[i : i + 1], product.reference_max, metadata.operating_point)[0]
        extended[i, : probabilities.shape[1]] = 0.0
        column = probabilities.shape[1] + 2 * index
        extended[i, column], extended[i, column + 1] = score, 1.0 - score
    return extended


def register_product(model, name: str, photos: Sequence[Path], progress=None):
    """Measure `photos` (genuine, of one product) through the runtime's own path.

    Returns (the RegisteredProduct, the OCR reads per photo, the failures). Raises ConfigError
    when the model cannot register products or too few photos decode."""
    from longteng.inference.two_stage import outputs_for_paths

    metadata = model.metadata
    check_product_name(name)
    if not metadata.two_stage:
        raise ConfigError("registering a product needs a two-stage model (it measures the focus crop)")
    if metadata.unknown is None or metadata.unknown.method != "mahalanobis":
        raise ConfigError("registering a product needs a model exported with the mahalanobis unknown-object detector")
    trained = {n.split("/")[0] for n in metadata.class_names}
    if name in trained:
        raise ConfigError(f"product {name!r} is one the model was trained on; register a new product")
    result = outputs_for_paths(model, list(photos), ("probabilities", "embedding"), progress=progress, read_print=True)
    if len(result.kept) < MIN_REFERENCE_PHOTOS:
        raise ConfigError(
            f"{len(result.kept)} of {len(photos)} photos could be read; registering a product needs at least {MIN_REFERENCE_PHOTOS}"
        )
    from longteng.decision import calibrate_scores

    probabilities = calibrate_scores(result.outputs["probabilities"], metadata.score_calibration, metadata.class_names)
    scores = counterfeit_score(probabilities, metadata.class_names)
    embedding = np.asarray(result.outputs["embedding"], np.float64)
    product = RegisteredProduct(
        name, embedding.mean(axis=0).astype(np.float32), len(result.kept), float(scores.max()),
        _leave_one_out_radius(embedding, metadata.unknown.parameters),
    )
    return product, result.reads, result.failures


def _leave_one_out_radius(embedding: np.ndarray, parameters) -> float:
    from longteng.inference.unknown import mahalanobis_distances

    n = len(embedding)
    others = (embedding.sum(axis=0)[None, :] - embedding) / (n - 1)  # row i: the mean without photo i
    return float(max(mahalanobis_distances(embedding[i : i + 1], parameters, others[i : i + 1])[0, -1] for i in range(n)))


def with_product(metadata, product: RegisteredProduct, reads: list[list]):
    """The metadata with `product` registered (replacing an earlier registration of the name)
    and its print added to the text registry."""
    from dataclasses import replace

    from longteng.inference.text_check import TextRegistry

    learned = TextRegistry.learn({product.name: reads})
    registry = metadata.text_registry or TextRegistry()
    products = dict(registry.products)
    products[product.name] = learned.products[product.name]
    kept = tuple(p for p in metadata.registered_products if p.name != product.name)
    return replace(
        metadata, registered_products=kept + (product,),
        text_registry=TextRegistry(products, registry.mismatch_probability),
    )


def check_registered(metadata, embedding_size: int | None, source: str) -> None:
    """Graph-dependent checks of longteng.registered_products (the session calls it)."""
    field = f"{source}: metadata longteng.registered_products"
    if not metadata.registered_products:
        return
    if metadata.unknown is None or metadata.unknown.method != "mahalanobis":
        raise CheckpointError(f"{field} needs the mahalanobis unknown-object detector (longteng.unknown)")
    trained = {n.split("/")[0] for n in metadata.class_names}
    clashes = sorted(trained & {p.name for p in metadata.registered_products})
    if clashes:
        raise CheckpointError(f"{field} registers products the network was trained on: {', '.join(clashes)}")
    for product in metadata.registered_products:
        if embedding_size is not None and product.mean.shape != (embedding_size,):
            raise CheckpointError(
                f"{field}: {product.name!r} has a mean of {product.mean.shape[0]} features, the graph's embedding {embedding_size}"
            )
