"""Products registered from genuine photos alone: the score map, the verdict rule, the metadata."""

from __future__ import annotations

import numpy as np
import pytest

from longteng.decision import COUNTERFEIT, GENUINE, REFER, OperatingPoint, decide, registered_scores
from longteng.errors import ConfigError
from longteng.inference.registered import (
    RegisteredProduct, check_product_name, registered_class_names, registered_from_json, registered_to_json,
)
from longteng.inference.unknown import encode_array, mahalanobis_distances

POINT = OperatingPoint(refer_low=0.1, refer_high=0.8, max_false_alarm_rate=0.02, min_counterfeit_recall=0.98)


@pytest.mark.parametrize("reference_max", [0.05, 0.5, 0.97])
def test_scores_above_every_reference_land_in_the_counterfeit_band_and_the_order_is_kept(reference_max):
    raw = np.linspace(0, 1, 201)
    mapped = registered_scores(raw, reference_max, POINT)
    assert np.all(np.diff(mapped) >= 0) and mapped.min() >= 0 and mapped.max() <= 1
    assert np.all(mapped[raw > reference_max] >= POINT.refer_high)
    assert np.all(mapped[raw <= reference_max] < POINT.refer_high)


def test_a_registered_product_is_counterfeit_or_referred_never_genuine():
    classes = ["phone/counterfeit", "phone/genuine", "bank/counterfeit", "bank/genuine"]
    probabilities = np.array([[0, 0, 0.01, 0.99], [0, 0, 0.95, 0.05], [0.01, 0.99, 0, 0]])
    registered = np.array([True, True, False])
    decisions = decide(probabilities, classes, POINT, registered=registered)
    assert [d.verdict for d in decisions] == [REFER, COUNTERFEIT, GENUINE]
    assert [d.refer_reason for d in decisions] == ["registered", "", ""]
    assert [d.product for d in decisions] == ["bank", "bank", "phone"]


def test_the_registry_round_trips_through_its_json():
    products = (RegisteredProduct("power_bank", np.arange(6, dtype=np.float32), 50, 0.42, 3.0),
                RegisteredProduct("earbuds", -np.ones(6, np.float32), 12, 0.9, 1.5))
    again = registered_from_json(registered_to_json(products))
    assert [(p.name, p.photos, p.reference_max) for p in again] == [("power_bank", 50, 0.42), ("earbuds", 12, 0.9)]
    np.testing.assert_array_equal(again[0].mean, products[0].mean)
    assert registered_class_names(again) == ["power_bank/counterfeit", "power_bank/genuine", "earbuds/counterfeit", "earbuds/genuine"]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"photos": 2}, "at least 5 photos"),
        ({"reference_max": 1.5}, "reference_max"),
        ({"radius": float("nan")}, "radius"),
        ({"name": "Power Bank"}, "product name"),
        ({"mean": encode_array(np.array([np.nan, 1.0]))}, "finite"),
        ({"mean": None}, "incomplete"),
    ],
)
def test_a_malformed_registration_is_refused_saying_why(entry, fragment):
    product = {"name": "power_bank", "mean": encode_array(np.zeros(4)), "photos": 50, "reference_max": 0.5, "radius": 2.0, **entry}
    import json

    with pytest.raises(ConfigError, match=fragment):
        registered_from_json(json.dumps({"version": 1, "products": [product]}))


def test_a_name_registered_twice_is_refused():
    product = RegisteredProduct("power_bank", np.zeros(4, np.float32), 50, 0.5, 1.0)
    with pytest.raises(ConfigError, match="registered twice"):
        registered_from_json(registered_to_json((product, product)))


@pytest.mark.parametrize("name", ["power_bank", "earbuds-2", "x9"])
def test_product_names_that_can_be_class_names_folders_and_csv_values(name):
    assert check_product_name(name) == name


@pytest.mark.parametrize("name", ["", "Power", "a/b", "../x", "a b", "_lead", "x" * 65])
def test_product_names_that_cannot(name):
    with pytest.raises(ConfigError, match="product name"):
        check_product_name(name)


def test_registered_means_are_measured_under_the_detectors_covariance():
    """A registered mean is one more class mean: same metric, computed with the others."""
    rng = np.random.default_rng(0)
    means, basis = rng.normal(size=(3, 8)), np.linalg.qr(rng.normal(size=(8, 2)))[0]
    parameters = {"means": encode_array(means), "basis": encode_array(basis), "variances": encode_array(np.array([2.0, 0.5])),
                  "residual_variance": 0.1}
    embedding, extra = rng.normal(size=(5, 8)), rng.normal(size=(2, 8))
    together = mahalanobis_distances(embedding, parameters, extra)
    alone = mahalanobis_distances(embedding, {**parameters, "means": encode_array(np.vstack([means, extra]))})
    np.testing.assert_allclose(together, alone)
    assert together.shape == (5, 5)
