"""From class probabilities to what the officer sees: a verdict, the product and a confidence.

Shared by the runtime (ONNX) and by training evaluation, so it imports numpy only.

Operational semantics, which every metric in this project follows:

* The counterfeit score of a photo is the calibrated probability that it shows a counterfeit:
  the sum of the probabilities of the ``<product>/counterfeit`` classes.
* Calibration has two steps, both fitted on validation photos: a temperature over all classes,
  then a :class:`ScoreCalibration` of the counterfeit-vs-genuine log-odds (Platt scaling), which
  moves probability mass between the genuine and the counterfeit classes (for a photo whose
  product is clear: between that product's two classes). The officer's confidence is about
  authenticity, and a temperature alone, fitted to all classes at once, leaves that number
  miscalibrated (README, Measured).
* An :class:`OperatingPoint` splits the score range in three:
  ``score < refer_low`` -> GENUINE, ``score >= refer_high`` -> COUNTERFEIT, anything in
  between -> REFER (the photo goes to an expert).
* Evidence from another detector (a misspelt logo read by the text check) enters through
  :func:`with_evidence` as the probability q that a photo it fires on shows a counterfeit, and
  the counterfeit score becomes 1 - (1 - s)(1 - q) (a noisy OR): the photo is a counterfeit if
  either the classifier's tells or the detector's are there. The verdict still follows from the
  operating point and the confidence stays a probability. Not Bayes' rule on s: the classifier
  knows nothing of the print it cannot read, and its confident "genuine" on a misspelt logo it
  never saw (a trick new to it) is no evidence against the misspelling (README, Measured).
* The aligned comparison with genuine references (inference/aligned_check.py) is not a flag
  but a score of its own, good in both directions: an item that matches its references place
  by place is evidence of a genuine one too. It enters through :func:`stack_evidence`, before
  the text check: the counterfeit log-odds become a * logit(s) + b * score + c, a logistic
  regression fitted at export on validation photos (stacking), and the model's operating point
  is chosen again on the stacked validation scores.
* A counterfeit sent to REFER is **not** missed: the expert catches it. A *missed* counterfeit
  is one declared GENUINE. A *false alarm* is a genuine item declared COUNTERFEIT. Referring
  costs expert time, so the band should be as narrow as the targets allow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from longteng.data.layout import AUTHENTICITIES, split_class_name
from longteng.errors import ConfigError

GENUINE = "GENUINE"
COUNTERFEIT = "COUNTERFEIT"
REFER = "REFER"
VERDICTS = (GENUINE, COUNTERFEIT, REFER)

_COUNTERFEIT_AUTHENTICITY = "counterfeit"


@dataclass(frozen=True)
class OperatingPoint:
    """Thresholds on the counterfeit score, chosen on validation data.

    ``score < refer_low`` -> GENUINE; ``score >= refer_high`` -> COUNTERFEIT; otherwise REFER.
    ``refer_low == refer_high`` means there is no REFER band. The two targets record what the
    thresholds were chosen for (provenance); they do not change how a score is decided.
    """

    refer_low: float
    refer_high: float
    max_false_alarm_rate: float
    min_counterfeit_recall: float

    def __post_init__(self) -> None:
        for name in ("refer_low", "refer_high", "max_false_alarm_rate", "min_counterfeit_recall"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"operating point {name} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise ConfigError(f"operating point {name} must be finite, got {value!r}")
            # Plain floats keep the dataclass JSON-serialisable whatever numpy type came in.
            object.__setattr__(self, name, number)
        if self.refer_low > self.refer_high:
            raise ConfigError(
                f"operating point refer_low {self.refer_low} must not exceed refer_high {self.refer_high}"
            )
        for name in ("max_false_alarm_rate", "min_counterfeit_recall"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"operating point {name} must be within [0, 1], got {getattr(self, name)}")

    @property
    def has_refer_band(self) -> bool:
        return self.refer_low < self.refer_high

    def to_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> OperatingPoint:
        fields = ("refer_low", "refer_high", "max_false_alarm_rate", "min_counterfeit_recall")
        missing = [name for name in fields if name not in data]
        if missing:
            raise ConfigError(f"operating point is missing {', '.join(missing)}")
        return cls(**{name: data[name] for name in fields})  # type: ignore[arg-type]


@dataclass(frozen=True)
class ScoreCalibration:
    """s -> sigmoid(slope * logit(s) + bias) for the counterfeit score s; (1, 0) is the identity."""

    slope: float = 1.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        for name in ("slope", "bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"score calibration {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        # A non-positive slope would reverse or flatten the ranking the operating point relies on.
        if not 0.0 < self.slope <= MAX_CALIBRATION_SLOPE or abs(self.bias) > MAX_CALIBRATION_BIAS:
            raise ConfigError(
                f"score calibration needs 0 < slope <= {MAX_CALIBRATION_SLOPE} and |bias| <= {MAX_CALIBRATION_BIAS}, "
                f"got slope {self.slope}, bias {self.bias}"
            )

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.bias == 0.0

    def to_dict(self) -> dict[str, float]:
        return {"slope": self.slope, "bias": self.bias}

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> "ScoreCalibration":
        if data is None:
            return cls()  # files written before score calibration existed
        unknown = set(data) - {"slope", "bias"}
        if unknown:
            raise ConfigError(f"score calibration has unknown keys: {', '.join(sorted(unknown))}")
        return cls(**data)  # type: ignore[arg-type]


MAX_CALIBRATION_SLOPE = 100.0
MAX_CALIBRATION_BIAS = 50.0


def calibrate_scores(probabilities: np.ndarray, calibration: ScoreCalibration, class_names: Sequence[str]) -> np.ndarray:
    """Temperature-scaled (N, C) probabilities -> calibrated ones: each row's counterfeit mass
    becomes sigmoid(slope * logit(s) + bias), shared among its counterfeit classes in the same
    proportions as before, and the genuine classes share the rest likewise."""
    probabilities = _check_probabilities(probabilities, class_names)
    if calibration.is_identity:
        return probabilities
    is_counterfeit = np.array([_authenticity(name) == _COUNTERFEIT_AUTHENTICITY for name in class_names])
    tiny = np.finfo(np.float64).tiny
    mass = counterfeit_score(probabilities, class_names)
    log_odds = np.log(np.maximum(mass, tiny)) - np.log(np.maximum(1.0 - mass, tiny))
    calibrated = 1.0 / (1.0 + np.exp(-(calibration.slope * log_odds + calibration.bias)))
    counterfeit_factor = calibrated / np.maximum(mass, tiny)
    genuine_factor = (1.0 - calibrated) / np.maximum(1.0 - mass, tiny)
    out = probabilities * np.where(is_counterfeit[None, :], counterfeit_factor[:, None], genuine_factor[:, None])
    return out / out.sum(axis=1, keepdims=True)


def calibrated_probabilities(
    logits: np.ndarray, temperature: float, calibration: ScoreCalibration, class_names: Sequence[str]
) -> np.ndarray:
    """The model's logits -> the probabilities every verdict and metric is computed from."""
    return calibrate_scores(softmax(logits, temperature), calibration, class_names)


def with_evidence(probabilities: np.ndarray, class_names: Sequence[str], evidence: np.ndarray) -> np.ndarray:
    """(N, C) probabilities and (N,) probabilities q that another detector's finding on each
    photo means a counterfeit (0: nothing found) -> probabilities whose counterfeit score is
    1 - (1 - s)(1 - q). q = 0 leaves a row unchanged."""
    probabilities = _check_probabilities(probabilities, class_names)
    q = np.asarray(evidence, dtype=np.float64)
    if q.shape != (len(probabilities),):
        raise ConfigError(f"evidence has shape {q.shape}, expected ({len(probabilities)},)")
    if not np.all(np.isfinite(q) & (q >= 0) & (q < 1)):
        raise ConfigError("evidence probabilities must lie in [0, 1)")
    mass = counterfeit_score(probabilities, class_names)
    return with_counterfeit_score(probabilities, class_names, 1.0 - (1.0 - mass) * (1.0 - q))


def stack_evidence(
    probabilities: np.ndarray, class_names: Sequence[str], scores: np.ndarray, fusion: Sequence[float],
) -> np.ndarray:
    """(N, C) probabilities and (N,) log-odds scores of a detector (NaN: it had nothing to
    say, the row stays) -> probabilities whose counterfeit score is
    sigmoid(a * logit(s) + b * score + c), with (a, b, c) = ``fusion``."""
    probabilities = _check_probabilities(probabilities, class_names)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(probabilities),):
        raise ConfigError(f"detector scores have shape {scores.shape}, expected ({len(probabilities)},)")
    a, b, c = (float(v) for v in fusion)
    mass = counterfeit_score(probabilities, class_names)
    clipped = np.clip(mass, 1e-9, 1 - 1e-9)
    logit = a * np.log(clipped / (1 - clipped)) + b * np.nan_to_num(scores) + c
    stacked = 1.0 / (1.0 + np.exp(-np.clip(logit, -40, 40)))
    return with_counterfeit_score(probabilities, class_names, np.where(np.isnan(scores), mass, stacked))


def with_counterfeit_score(probabilities: np.ndarray, class_names: Sequence[str], target: np.ndarray) -> np.ndarray:
    """Probabilities whose counterfeit score is ``target`` per row. Where it falls, every class
    keeps its share within its side; where it rises, the genuine classes shrink in proportion
    and the added mass goes to the counterfeit class of the likeliest product: the finding is
    about the product the photo shows (spread over all counterfeit classes, a photo whose s was
    near 0 would change product)."""
    is_counterfeit = np.array([_authenticity(name) == _COUNTERFEIT_AUTHENTICITY for name in class_names])
    mass = counterfeit_score(probabilities, class_names)
    target = np.asarray(target, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    genuine_factor = (1.0 - target) / np.maximum(1.0 - mass, tiny)
    counterfeit_factor = np.where(target < mass, target / np.maximum(mass, tiny), 1.0)
    out = probabilities * np.where(is_counterfeit[None, :], counterfeit_factor[:, None], genuine_factor[:, None])
    products, per_product = product_probabilities(probabilities, class_names)
    counterfeit_class = {_product(name): i for i, name in enumerate(class_names) if is_counterfeit[i]}
    genuine_class = {_product(name): i for i, name in enumerate(class_names) if not is_counterfeit[i]}
    for row, product in enumerate(per_product.argmax(axis=1)):
        if target[row] < mass[row] and out[row, ~is_counterfeit].sum() < 1.0 - target[row] - 1e-12:
            # No genuine mass to grow (s was 1 to float precision): it goes to the product's genuine class.
            destination = genuine_class.get(products[product], int(np.flatnonzero(~is_counterfeit)[0]))
            out[row, destination] += 1.0 - target[row] - out[row, ~is_counterfeit].sum()
        if target[row] <= mass[row]:
            continue
        destination = counterfeit_class.get(products[product])
        if destination is None:  # a product without a counterfeit class: share the mass as the others do
            destination = int(np.flatnonzero(is_counterfeit)[0])
        out[row, destination] += target[row] - mass[row]
    return out / out.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Decision:
    """What the officer is told about one photo.

    ``confidence`` is the calibrated probability of the verdict: the counterfeit score for
    COUNTERFEIT, one minus it for GENUINE, and for REFER the larger of the two (how sure the
    model leans either way; the officer should not act on it). ``refer_reason`` says why a
    photo was referred: ``"uncertain"`` (score inside the band), ``"unknown"`` (the photo
    does not look like anything the model was trained on) or ``"registered"`` (a product
    registered from genuine photos alone, which never gets GENUINE); empty for decided photos.
    """

    verdict: str
    product: str
    confidence: float
    counterfeit_score: float
    product_confidence: float
    refer_reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of ``logits / temperature``, stable for any finite logits."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature must be a positive number, got {temperature}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    # Subtracting the row maximum keeps exp() from overflowing; the result is unchanged.
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def is_counterfeit_class(name: str) -> bool:
    """'<product>/counterfeit' -> True: the one place that reads a class name's authenticity."""
    return _authenticity(name) == _COUNTERFEIT_AUTHENTICITY


def counterfeit_score(probabilities: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """(N, C) class probabilities -> (N,) probability that each photo shows a counterfeit."""
    probabilities = _check_probabilities(probabilities, class_names)
    is_counterfeit = np.array([_authenticity(name) == _COUNTERFEIT_AUTHENTICITY for name in class_names])
    if not is_counterfeit.any():
        raise ConfigError(f"no '<product>/counterfeit' class among {list(class_names)}; cannot score counterfeits")
    # Clipped because float32 probabilities can sum to a hair above 1.
    return np.clip(probabilities[:, is_counterfeit].sum(axis=1), 0.0, 1.0)


def product_probabilities(probabilities: np.ndarray, class_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(N, C) class probabilities -> (sorted product names, (N, P) marginal probability per product)."""
    probabilities = _check_probabilities(probabilities, class_names)
    products = sorted({_product(name) for name in class_names})
    column_of_product = {product: column for column, product in enumerate(products)}
    membership = np.zeros((len(class_names), len(products)))
    for row, name in enumerate(class_names):
        membership[row, column_of_product[_product(name)]] = 1.0
    return products, probabilities @ membership


def verdicts_for_scores(scores: np.ndarray, operating_point: OperatingPoint) -> np.ndarray:
    """Vectorised verdict per counterfeit score (strings from VERDICTS), without the unknown flag."""
    scores = np.asarray(scores, dtype=np.float64)
    verdicts = np.full(scores.shape, REFER, dtype=object)
    verdicts[scores < operating_point.refer_low] = GENUINE
    verdicts[scores >= operating_point.refer_high] = COUNTERFEIT
    return verdicts


def verdict_confidence(verdict: str, counterfeit_score: float) -> float:
    """The confidence reported with a verdict: the calibrated probability that it is right
    (for REFER, of the likelier side). The one rule, for photos and items alike."""
    if verdict == COUNTERFEIT:
        return counterfeit_score
    if verdict == GENUINE:
        return 1.0 - counterfeit_score
    return max(counterfeit_score, 1.0 - counterfeit_score)


def registered_scores(novelty: np.ndarray, threshold: float | np.ndarray, operating_point: OperatingPoint) -> np.ndarray:
    """A registered product's novelty (>= 0) as a counterfeit score on the model's scale, by a
    monotone map: beyond ``threshold`` (the farthest a genuine reference lay; one per row or one
    for all) a score lands in
    the COUNTERFEIT band (at or above refer_high), within it under refer_high. The score is
    ranked, not calibrated: no counterfeit of the product was ever seen to calibrate it on.
    """
    novelty = np.maximum(np.asarray(novelty, dtype=np.float64), 0.0)
    high = operating_point.refer_high
    threshold = np.maximum(np.asarray(threshold, dtype=np.float64), 1e-12)
    beyond = high + (1.0 - high) * (1.0 - threshold / np.maximum(novelty, threshold))
    within = high * novelty / threshold * (1.0 - 1e-9)
    return np.where(novelty > threshold, beyond, within)


def decide(
    probabilities: np.ndarray,
    class_names: Sequence[str],
    operating_point: OperatingPoint,
    unknown: np.ndarray | None = None,
    registered: np.ndarray | None = None,
) -> list[Decision]:
    """One :class:`Decision` per row of calibrated ``probabilities``.

    ``unknown[i]`` True forces REFER: an out-of-distribution photo gets no automatic verdict,
    however confident the classifier is about it. ``registered[i]`` True (a product
    registered from genuine photos alone) turns GENUINE into REFER: with no counterfeit of
    the product ever seen, the share of its fakes a GENUINE verdict would pass is unknown.
    """
    scores = counterfeit_score(probabilities, class_names)
    products, per_product = product_probabilities(probabilities, class_names)
    if unknown is None:
        unknown = np.zeros(len(scores), dtype=bool)
    unknown = np.asarray(unknown, dtype=bool)
    if unknown.shape != scores.shape:
        raise ConfigError(f"unknown has shape {unknown.shape}, expected ({len(scores)},)")
    registered = np.zeros(len(scores), dtype=bool) if registered is None else np.asarray(registered, dtype=bool)
    verdicts = verdicts_for_scores(scores, operating_point)
    best_product = per_product.argmax(axis=1)

    decisions = []
    for i, score in enumerate(scores):
        verdict, reason = verdicts[i], "uncertain" if verdicts[i] == REFER else ""
        if unknown[i]:
            verdict, reason = REFER, "unknown"
        elif registered[i] and verdict == GENUINE:
            verdict, reason = REFER, "registered"
        confidence = verdict_confidence(str(verdict), float(score))
        decisions.append(
            Decision(
                verdict=str(verdict),
                product=products[best_product[i]],
                confidence=float(confidence),
                counterfeit_score=float(score),
                product_confidence=float(per_product[i, best_product[i]]),
                refer_reason=reason,
            )
        )
    return decisions


def _check_probabilities(probabilities: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise ConfigError(
            f"probabilities have shape {probabilities.shape}, expected (N, {len(class_names)}) for classes {list(class_names)}"
        )
    for name in class_names:
        if _authenticity(name) not in AUTHENTICITIES or not _product(name):
            raise ConfigError(f"class name {name!r} is not '<product>/<genuine|counterfeit>'")
    return probabilities


def _product(name: str) -> str:
    return split_class_name(name)[0]


def _authenticity(name: str) -> str:
    return split_class_name(name)[1]
