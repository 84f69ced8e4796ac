"""Products registered from genuine photos alone: the score map, the verdict rule, the metadata."""

from __future__ import annotations

import numpy as np
import pytest

from longteng.decision import COUNTERFEIT, GENUINE, REFER, OperatingPoint, decide, registered_scores
from longteng.errors import ConfigError
from longteng.inference.registered import (
    RegisteredProduct, check_product_name, fit_spread, registered_class_names, registered_from_json, registered_to_json,
)
from longteng.inference.unknown import encode_array, mahalanobis_distances

POINT = OperatingPoint(refer_low=0.1, refer_high=0.8, max_false_alarm_rate=0.02, min_counterfeit_recall=0.98)


@pytest.mark.parametrize("threshold", [0.05, 1.0, 40.0])
def test_novelty_beyond_every_reference_lands_in_the_counterfeit_band_and_the_order_is_kept(threshold):
    novelty = np.linspace(0, 100, 2001)
    mapped = registered_scores(novelty, threshold, POINT)
    assert np.all(np.diff(mapped) >= 0) and mapped.min() >= 0 and mapped.max() < 1
    assert np.all(mapped[novelty > threshold] >= POINT.refer_high)
    assert np.all(mapped[novelty <= threshold] < POINT.refer_high)


def test_a_registered_product_is_counterfeit_or_referred_never_genuine():
    classes = ["phone/counterfeit", "phone/genuine", "bank/counterfeit", "bank/genuine"]
    probabilities = np.array([[0, 0, 0.01, 0.99], [0, 0, 0.95, 0.05], [0.01, 0.99, 0, 0]])
    registered = np.array([True, True, False])
    decisions = decide(probabilities, classes, POINT, registered=registered)
    assert [d.verdict for d in decisions] == [REFER, COUNTERFEIT, GENUINE]
    assert [d.refer_reason for d in decisions] == ["registered", "", ""]
    assert [d.product for d in decisions] == ["bank", "bank", "phone"]


def _product(name: str = "power_bank", photos: int = 50, features: int = 6, seed: int = 0) -> RegisteredProduct:
    embedding = np.random.default_rng(seed).normal(size=(photos, features))
    return RegisteredProduct(name, embedding.mean(axis=0).astype(np.float32), photos, 3.0, fit_spread(embedding), 2.5)


def test_the_registry_round_trips_through_its_json_and_scores_the_same():
    products = (_product(), _product("earbuds", 12, seed=1))
    again = registered_from_json(registered_to_json(products))
    assert [(p.name, p.photos, p.novelty_threshold) for p in again] == [("power_bank", 50, 2.5), ("earbuds", 12, 2.5)]
    probe = np.random.default_rng(2).normal(size=(4, 6))
    np.testing.assert_allclose(again[0].novelty(probe), products[0].novelty(probe), rtol=1e-5)
    assert registered_class_names(again) == ["power_bank/counterfeit", "power_bank/genuine", "earbuds/counterfeit", "earbuds/genuine"]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"photos": 2}, "at least 5 photos"),
        ({"novelty_threshold": -1.0}, "novelty_threshold"),
        ({"radius": float("nan")}, "radius"),
        ({"spread": {"basis": encode_array(np.zeros((2, 3))), "variances": encode_array(np.ones(2)), "residual_variance": 1.0}}, "shapes"),
        ({"spread": {"basis": encode_array(np.zeros((2, 4))), "variances": encode_array(np.zeros(2)), "residual_variance": 1.0}}, "positive"),
        ({"name": "Power Bank"}, "product name"),
        ({"mean": encode_array(np.array([np.nan, 1.0]))}, "finite"),
        ({"mean": None}, "incomplete"),
    ],
)
def test_a_malformed_registration_is_refused_saying_why(entry, fragment):
    import json

    product = {**json.loads(registered_to_json((_product(features=4),)))["products"][0], **entry}
    with pytest.raises(ConfigError, match=fragment):
        registered_from_json(json.dumps({"version": 1, "products": [product]}))


def test_a_name_registered_twice_is_refused():
    product = _product()
    with pytest.raises(ConfigError, match="registered twice"):
        registered_from_json(registered_to_json((product, product)))


@pytest.mark.parametrize("name", ["power_bank", "earbuds-2", "x9"])
def test_product_names_that_can_be_class_names_folders_and_csv_values(name):
    assert check_product_name(name) == name


@pytest.mark.parametrize("name", ["", "Power", "a/b", "../x", "a b", "_lead", "x" * 65])
def test_product_names_that_cannot(name):
    with pytest.raises(ConfigError, match="product name"):
        check_product_name(name)


def test_novelty_is_low_on_the_references_spread_and_high_off_it():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(3, 32))
    genuine = rng.normal(size=(60, 3)) @ directions + 0.05 * rng.normal(size=(60, 32))
    spread = fit_spread(genuine[:50])
    centred = genuine - genuine[:50].mean(axis=0)
    off = centred[50:] + 0.5 * rng.normal(size=(10, 32))  # a change no genuine photo shows
    assert spread.distances(off).min() > spread.distances(centred[50:]).max()


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


def test_novelty_is_evidence_only_beyond_the_products_threshold():
    from types import SimpleNamespace

    from longteng.inference.registered import Assignment, novelty_evidence

    metadata = SimpleNamespace(registered_products=(_product(),))  # novelty threshold 2.5
    assignment = Assignment(np.array([0, 0, -1]), np.array([3.0, 2.0, 9.0]), np.zeros(3), np.zeros(3, bool))
    found = novelty_evidence(assignment, metadata)
    assert found[1] is None and found[2] is None  # within the references; a trained product
    assert found[0].to_dict() == {"detector": "novelty", "product": "power_bank", "novelty": 3.0, "threshold": 2.5}
    assert "beyond every genuine power_bank reference" in found[0].describe()


def test_the_station_shows_each_detector_that_fired_escaped():
    from longteng.station.pages import _evidence

    text = _evidence({"detector": "text", "read": "KOPVEX", "expected": "KORVEX"})
    novelty = _evidence({"detector": "novelty", "product": "power_bank", "novelty": 6.2, "threshold": 4.53})
    assert "read KOPVEX, registered KORVEX" in text
    assert "unlike every genuine power_bank reference: novelty 6.2 (threshold 4.53)" in novelty
    assert "<b>" not in _evidence({"detector": "text", "read": "<b>", "expected": "x"})
    assert _evidence({"detector": "crystal_ball"}) == ""


def test_the_brand_read_on_an_item_decides_between_a_registered_and_a_trained_product():
    """An embedding nearer a trained class's mean is still the registered product when its
    print names it, and the reverse; without a read that names one, the nearest mean decides."""
    from types import SimpleNamespace

    from longteng.inference.registered import assign
    from longteng.inference.text_check import TextRead, TextRegistry

    rng = np.random.default_rng(0)
    means = np.array([[0.0] * 6, [5.0] + [0.0] * 5])  # phone/counterfeit, phone/genuine
    parameters = {"means": encode_array(means), "basis": encode_array(np.eye(6)[:, :2]),
                  "variances": encode_array(np.ones(2)), "residual_variance": 1.0}
    bank = _product()
    bank = RegisteredProduct(bank.name, np.array([0.0, 5.0, 0, 0, 0, 0], np.float32), bank.photos, 100.0, bank.spread, 2.5)
    registry = TextRegistry({"phone": {"words": ["NOVALYNK"], "formats": []}, "power_bank": {"words": ["VOLTARA"], "formats": []}})
    metadata = SimpleNamespace(registered_products=(bank,), unknown=SimpleNamespace(parameters=parameters, threshold=50.0),
                               text_registry=registry, trained_products={"phone"})
    near_phone, near_bank = [0.1, 0, 0, 0, 0, 0], [0, 4.9, 0, 0, 0, 0]
    embedding = np.array([near_phone, near_phone, near_bank, near_bank, near_phone]) + 0.01 * rng.normal(size=(5, 6))

    def read(text):
        return [TextRead(text, 0.95, ((0, 0), (1, 0), (1, 1), (0, 1)))]

    found = assign(embedding, metadata, [read("V0LTARA"), [], read("NOVALYNK"), None, read("SHIPPING")])
    assert found.product.tolist() == [0, -1, -1, 0, -1]
    distances = mahalanobis_distances(embedding, parameters, bank.mean[None])
    np.testing.assert_allclose(found.unknown_score, distances[np.arange(5), [2, 0, 0, 2, 0]])
    assert found.novelty[0] > 0 and found.novelty[2] == 0
    assert assign(embedding, metadata).product.tolist() == [-1, -1, 0, 0, -1]
