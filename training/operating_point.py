"""Choose the REFER band on validation data, and measure what it does.

Semantics (see longteng/decision.py): ``score < refer_low`` -> GENUINE, ``score >= refer_high``
-> COUNTERFEIT, in between -> REFER. A counterfeit sent to REFER is caught by the expert; a
missed counterfeit is one declared GENUINE; a false alarm is a genuine item declared COUNTERFEIT.
"""

from __future__ import annotations

import math

import numpy as np

from longteng.decision import COUNTERFEIT, GENUINE, REFER, OperatingPoint, verdicts_for_scores
from longteng.errors import ConfigError
from longteng.training.metrics import allowed_count


def choose_operating_point(
    scores: np.ndarray,
    is_counterfeit: np.ndarray,
    max_false_alarm_rate: float = 0.02,
    min_counterfeit_recall: float = 0.98,
) -> OperatingPoint:
    """The narrowest REFER band that meets both targets on these (validation) photos.

    * ``refer_high`` is the smallest threshold at which at most ``max_false_alarm_rate`` of
      the genuine photos score ``>= refer_high``.
    * ``refer_low`` is the largest threshold at which at most ``1 - min_counterfeit_recall``
      of the counterfeits score ``< refer_low``.
    * If ``refer_low >= refer_high`` one threshold meets both targets; both are set to the
      midpoint and nothing is referred. Otherwise ``[refer_low, refer_high)`` is referred.

    Conservative on small and tied data: a rate allows ``floor(rate * n)`` photos, so with
    fewer than 50 genuine photos a 2 % false-alarm target allows none; and tied scores fall
    on the same side of a threshold, so a threshold never splits a tie to meet a target.
    Raises ConfigError when the photos hold no genuine or no counterfeit item.
    """
    for name, rate in (("max_false_alarm_rate", max_false_alarm_rate), ("min_counterfeit_recall", min_counterfeit_recall)):
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"{name} must be within [0, 1], got {rate}")
    scores, is_counterfeit = _check_inputs(scores, is_counterfeit)
    genuine_descending = np.sort(scores[~is_counterfeit])[::-1]
    counterfeit_ascending = np.sort(scores[is_counterfeit])
    if len(genuine_descending) == 0 or len(counterfeit_ascending) == 0:
        raise ConfigError(
            "cannot choose an operating point: the validation photos need both genuine and counterfeit items "
            f"(got {len(genuine_descending)} genuine, {len(counterfeit_ascending)} counterfeit)"
        )

    allowed_false_alarms = allowed_count(max_false_alarm_rate, len(genuine_descending))
    if allowed_false_alarms >= len(genuine_descending):
        refer_high = float(scores.min())
    else:
        # Flag only scores strictly above the first genuine score that must stay unflagged.
        refer_high = float(np.nextafter(genuine_descending[allowed_false_alarms], np.inf))

    allowed_misses = allowed_count(1.0 - min_counterfeit_recall, len(counterfeit_ascending))
    if allowed_misses >= len(counterfeit_ascending):
        refer_low = float(np.nextafter(scores.max(), np.inf))
    else:
        # Clear only scores strictly below the first counterfeit score that must be caught.
        refer_low = float(counterfeit_ascending[allowed_misses])

    if refer_low >= refer_high:
        # Any threshold in [refer_high, refer_low] meets both targets; the middle leaves the
        # most room on either side for photos the model has not seen.
        refer_low = refer_high = refer_high / 2 + refer_low / 2
    return OperatingPoint(refer_low, refer_high, max_false_alarm_rate, min_counterfeit_recall)


def operating_metrics(scores: np.ndarray, is_counterfeit: np.ndarray, operating_point: OperatingPoint) -> dict:
    """What the operating point does on these photos. Rates with an empty denominator are NaN.

    * ``counterfeit_recall``: counterfeits declared COUNTERFEIT or REFER (caught), over counterfeits.
    * ``miss_rate``: counterfeits declared GENUINE, over counterfeits (``1 - counterfeit_recall``).
    * ``false_alarm_rate``: genuine declared COUNTERFEIT, over genuine.
    * ``refer_rate``: photos declared REFER, over all photos (the expert's workload);
      ``counterfeit_refer_rate`` and ``genuine_refer_rate`` split it by truth.
    * ``decided_recall``: counterfeits declared COUNTERFEIT among counterfeits that got a
      verdict, i.e. how good the automatic verdicts alone are.
    * ``decided_accuracy``: correct verdicts among photos that got one.
    * ``right_decision_rate``: photos that got a verdict, and the right one, over all photos:
      what an officer gets without calling an expert.
    """
    scores, is_counterfeit = _check_inputs(scores, is_counterfeit)
    verdicts = verdicts_for_scores(scores, operating_point)
    counts = {
        verdict: {
            "counterfeit": int(np.sum((verdicts == verdict) & is_counterfeit)),
            "genuine": int(np.sum((verdicts == verdict) & ~is_counterfeit)),
        }
        for verdict in (GENUINE, COUNTERFEIT, REFER)
    }
    n_counterfeit = int(is_counterfeit.sum())
    n_genuine = len(scores) - n_counterfeit
    missed = counts[GENUINE]["counterfeit"]
    flagged = counts[COUNTERFEIT]["counterfeit"]
    referred = counts[REFER]["counterfeit"] + counts[REFER]["genuine"]
    decided = len(scores) - referred
    return {
        "n_photos": len(scores),
        "n_counterfeit": n_counterfeit,
        "n_genuine": n_genuine,
        "counterfeit_recall": _ratio(n_counterfeit - missed, n_counterfeit),
        "miss_rate": _ratio(missed, n_counterfeit),
        "false_alarm_rate": _ratio(counts[COUNTERFEIT]["genuine"], n_genuine),
        "refer_rate": _ratio(referred, len(scores)),
        "counterfeit_refer_rate": _ratio(counts[REFER]["counterfeit"], n_counterfeit),
        "genuine_refer_rate": _ratio(counts[REFER]["genuine"], n_genuine),
        "decided_recall": _ratio(flagged, flagged + missed),
        "decided_accuracy": _ratio(flagged + counts[GENUINE]["genuine"], decided),
        "right_decision_rate": _ratio(flagged + counts[GENUINE]["genuine"], len(scores)),
        "verdict_counts": counts,
    }


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _check_inputs(scores: np.ndarray, is_counterfeit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    is_counterfeit = np.asarray(is_counterfeit, dtype=bool)
    if scores.ndim != 1 or scores.shape != is_counterfeit.shape:
        raise ConfigError(f"scores and is_counterfeit must be 1-D of equal length, got {scores.shape} and {is_counterfeit.shape}")
    if len(scores) == 0:
        raise ConfigError("no photos to choose or measure an operating point on")
    if not np.all(np.isfinite(scores)):
        raise ConfigError("counterfeit scores must be finite")
    return scores, is_counterfeit
