"""Which detector catches what: recall at a false-alarm budget per detector and per tell.

A model that reads print decides with two detectors fused (inference/text_check.py): the
supervised classifier and the text check. The model's unknown-object detector also gives
every photo a novelty score: the distance of its focus embedding to the genuine class mean of
its likeliest product (inference/unknown.py, the Mahalanobis score). Reported side by side, on
the same photos and the same genuine photos as the budget's denominator:

* ``supervised``: the counterfeit score of the calibrated classifier, before the text check;
* ``text``: the text check alone (flagged or not: a score of 1 or 0);
* ``novelty``: the Mahalanobis distance to the genuine mean (not fused into verdicts: it did
  not pay on tells the classifier was trained on, README "Novelty from genuine photos");
* ``aligned``, ``artwork``: the aligned and artwork checks' own scores, where the model has them;
* ``fused``: what verdicts use, the supervised score with the checks fused in.

The leave-one-tell-out benchmark (bench/quality_bar.py --scenarios loto) reads this section
for models trained without the tell they are tested on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from longteng.data.layout import class_name
from longteng.decision import counterfeit_score, product_probabilities
from longteng.training.metrics import best_threshold_at_false_alarm_rate

MAX_FALSE_ALARM_RATE = 0.02


def novelty_scores(embedding: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str], parameters: Mapping) -> np.ndarray:
    """(N,) distance of each embedding to the genuine class mean of its likeliest product."""
    from longteng.inference.unknown import mahalanobis_distances

    distances = mahalanobis_distances(embedding, parameters)
    products, per_product = product_probabilities(probabilities, class_names)
    column = {name: i for i, name in enumerate(class_names)}
    genuine_column = np.array([column[class_name(products[int(row.argmax())], "genuine")] for row in per_product])
    return distances[np.arange(len(distances)), genuine_column]


def detector_report(
    scores: Mapping[str, np.ndarray], is_counterfeit: np.ndarray, tells: Sequence[Mapping[str, float]],
    max_false_alarm_rate: float = MAX_FALSE_ALARM_RATE,
) -> dict:
    """Per detector: recall at FA <= the budget over all counterfeits and per tell (the
    counterfeits carrying the tell against every genuine photo), with the false-alarm rate
    the threshold reached."""
    is_counterfeit = np.asarray(is_counterfeit, dtype=bool)
    names = sorted({tell for photo in tells for tell in photo})
    report: dict = {"max_false_alarm_rate": max_false_alarm_rate, "n_genuine": int((~is_counterfeit).sum()), "detectors": {}}
    for detector, score in scores.items():
        score = np.asarray(score, dtype=np.float64)
        best = best_threshold_at_false_alarm_rate(score, is_counterfeit, max_false_alarm_rate)
        per_tell = {}
        for tell in names:
            carrying = is_counterfeit & np.array([tell in photo for photo in tells], dtype=bool)
            if carrying.any():
                subset = carrying | ~is_counterfeit
                per_tell[tell] = {
                    "n": int(carrying.sum()),
                    "recall": _finite(best_threshold_at_false_alarm_rate(score[subset], is_counterfeit[subset], max_false_alarm_rate).recall),
                }
        report["detectors"][detector] = {
            "recall": _finite(best.recall), "false_alarm_rate": _finite(best.false_alarm_rate), "per_tell": per_tell,
        }
    return report


def detector_scores(
    supervised: np.ndarray, fused: np.ndarray, flagged: np.ndarray | None, novelty: np.ndarray | None, class_names: Sequence[str],
    aligned: np.ndarray | None = None, artwork: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The scores detector_report compares, from calibrated probabilities before and after fusion.
    ``aligned``: the aligned check's log-odds (NaN where it had no say: ranked lowest);
    ``artwork``: the artwork check's largest deviation in spreads (0 where it measured nothing)."""
    scores = {"supervised": counterfeit_score(supervised, class_names)}
    if flagged is not None:
        scores["text"] = np.asarray(flagged, dtype=np.float64)
    if novelty is not None:
        scores["novelty"] = np.asarray(novelty, dtype=np.float64)
    if aligned is not None:
        aligned = np.asarray(aligned, dtype=np.float64)
        scores["aligned"] = np.where(np.isfinite(aligned), aligned, np.nanmin(aligned, initial=0.0) - 1.0)
    if artwork is not None:
        scores["artwork"] = np.asarray(artwork, dtype=np.float64)
    scores["fused"] = counterfeit_score(fused, class_names)
    return scores


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)
