"""The evaluation report: every number an ML engineer needs, as a JSON-serialisable dict.

Undefined or unbounded values (a recall with no counterfeit in the set, a threshold of +inf)
are ``null``. Operating-point metrics follow longteng/decision.py: REFER catches a
counterfeit, GENUINE on a counterfeit is a miss, COUNTERFEIT on a genuine item is a false alarm.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from longteng.data.layout import split_class_name
from longteng.decision import (
    COUNTERFEIT,
    GENUINE,
    REFER,
    OperatingPoint,
    counterfeit_score,
    is_counterfeit_class,
    product_probabilities,
    softmax,
    verdicts_for_scores,
)
from longteng.errors import ConfigError
from longteng.training import metrics
from longteng.training.operating_point import operating_metrics

FALSE_ALARM_LEVELS = (0.01, 0.02, 0.05)
STRENGTH_EDGES = (0.0, 0.33, 0.66, 1.0)
NO_TELL = "(none recorded)"
DEFAULT_N_BOOT = 1000
CI_LEVEL = 0.95

# Per-photo columns the bootstrap metrics read, so one resampling serves every metric.
_LABEL, _IS_COUNTERFEIT = 0, 1
_SCORE, _VERDICT, _PREDICTED = 0, 1, 2
_VERDICT_CODE = {GENUINE: 0, COUNTERFEIT: 1, REFER: 2}


def evaluation_report(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    operating_point: OperatingPoint,
    *,
    tells: Sequence[Mapping[str, float]] | None = None,
    case_ids: Sequence[str] | None = None,
    logits: np.ndarray | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> dict:
    """Evaluate calibrated ``probabilities`` (N, C) against integer ``labels`` (N,).

    ``tells[i]`` are the counterfeit tells of photo i (name -> strength in [0, 1]); with them
    the report breaks counterfeit recall down per tell type and per strength of the
    strongest tell. ``case_ids`` make bootstrap confidence intervals resample whole cases
    (photos of one shipment are correlated). ``logits`` (uncalibrated) add the NLL and ECE
    before calibration, to show what calibration did.
    """
    probabilities, labels = _check_inputs(probabilities, labels, class_names)
    n_photos = len(labels)
    counterfeit_classes = np.array([is_counterfeit_class(name) for name in class_names])
    is_counterfeit = counterfeit_classes[labels]
    predicted = probabilities.argmax(axis=1)
    top_confidence = probabilities.max(axis=1)
    correct = predicted == labels
    scores = counterfeit_score(probabilities, class_names)
    verdicts = verdicts_for_scores(scores, operating_point)
    products, per_product = product_probabilities(probabilities, class_names)
    true_product = np.array([products.index(split_class_name(class_names[label])[0]) for label in labels])

    per_class = metrics.per_class_metrics(labels, predicted, len(class_names))
    top_class_calibration = metrics.expected_calibration_error(top_confidence, correct)
    score_calibration = metrics.expected_calibration_error(scores, is_counterfeit)
    # The authenticity call without a REFER band: counterfeit when the score is at least 0.5.
    authenticity_confidence = np.maximum(scores, 1.0 - scores)
    authenticity_correct = (scores >= 0.5) == is_counterfeit

    report: dict = {
        "n_photos": n_photos,
        "n_cases": len(set(case_ids)) if case_ids is not None else None,
        "class_names": list(class_names),
        "accuracy": metrics.accuracy(labels, predicted),
        "macro_f1": per_class.macro_f1,
        "per_class": [
            {
                "class": name,
                "precision": per_class.precision[i],
                "recall": per_class.recall[i],
                "f1": per_class.f1[i],
                "support": per_class.support[i],
            }
            for i, name in enumerate(class_names)
        ],
        "confusion_matrix": metrics.confusion_matrix(labels, predicted, len(class_names)),
        "product": {"names": products, "accuracy": metrics.accuracy(true_product, per_product.argmax(axis=1))},
        "operating_point": {**operating_point.to_dict(), **operating_metrics(scores, is_counterfeit, operating_point)},
        "counterfeit": {
            "roc_auc": metrics.roc_auc(scores, is_counterfeit),
            "average_precision": metrics.average_precision(scores, is_counterfeit),
            "recall_at_false_alarm_rate": [
                {
                    "max_false_alarm_rate": level,
                    **_fields(metrics.best_threshold_at_false_alarm_rate(scores, is_counterfeit, level)),
                }
                for level in FALSE_ALARM_LEVELS
            ],
        },
        "calibration": {
            "nll": metrics.log_loss(probabilities, labels),
            "ece_top_class": top_class_calibration.ece,
            "max_calibration_error_top_class": top_class_calibration.max_calibration_error,
            "reliability_top_class": [_fields(b) for b in top_class_calibration.bins],
            "ece_counterfeit_score": score_calibration.ece,
            "reliability_counterfeit_score": [_fields(b) for b in score_calibration.bins],
            "uncalibrated": _uncalibrated(logits, labels, n_photos),
        },
        "risk_coverage": {
            "top_class": [_fields(row) for row in metrics.risk_coverage(top_confidence, correct)],
            "authenticity": [_fields(row) for row in metrics.risk_coverage(authenticity_confidence, authenticity_correct)],
        },
        "tells": _tell_breakdown(
            tells, is_counterfeit, verdicts != GENUINE, verdicts == COUNTERFEIT,
            scores >= metrics.best_threshold_at_false_alarm_rate(scores, is_counterfeit, 0.02).threshold,
        ) if tells is not None else None,
        "confidence_intervals": _confidence_intervals(
            labels, is_counterfeit, scores, verdicts, predicted, case_ids, n_boot, seed
        ),
    }
    return _plain(report)


# --------------------------------------------------------------------------- bootstrap metrics
# Each takes y = [label, is_counterfeit] and outputs = [score, verdict code, predicted class].


def _accuracy(y: np.ndarray, outputs: np.ndarray) -> float:
    return float(np.mean(outputs[:, _PREDICTED] == y[:, _LABEL]))


def _counterfeit_recall(y: np.ndarray, outputs: np.ndarray) -> float:
    counterfeit = y[:, _IS_COUNTERFEIT] == 1
    if not counterfeit.any():
        return math.nan
    return float(np.mean(outputs[counterfeit, _VERDICT] != _VERDICT_CODE[GENUINE]))


def _false_alarm_rate(y: np.ndarray, outputs: np.ndarray) -> float:
    genuine = y[:, _IS_COUNTERFEIT] == 0
    if not genuine.any():
        return math.nan
    return float(np.mean(outputs[genuine, _VERDICT] == _VERDICT_CODE[COUNTERFEIT]))


def _refer_rate(y: np.ndarray, outputs: np.ndarray) -> float:
    return float(np.mean(outputs[:, _VERDICT] == _VERDICT_CODE[REFER]))


def _roc_auc(y: np.ndarray, outputs: np.ndarray) -> float:
    return metrics.roc_auc(outputs[:, _SCORE], y[:, _IS_COUNTERFEIT])


def _recall_at_two_percent(y: np.ndarray, outputs: np.ndarray) -> float:
    return metrics.recall_at_false_alarm_rate(outputs[:, _SCORE], y[:, _IS_COUNTERFEIT], 0.02)


# (name, metric, higher is better)
KEY_METRICS: tuple[tuple[str, Callable[[np.ndarray, np.ndarray], float], bool], ...] = (
    ("accuracy", _accuracy, True),
    ("counterfeit_recall", _counterfeit_recall, True),
    ("false_alarm_rate", _false_alarm_rate, False),
    ("refer_rate", _refer_rate, False),
    ("roc_auc", _roc_auc, True),
    ("recall_at_far_0.02", _recall_at_two_percent, True),
)


def _bootstrap_columns(
    labels: np.ndarray, is_counterfeit: np.ndarray, scores: np.ndarray, verdicts: np.ndarray, predicted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    y = np.column_stack([labels, is_counterfeit.astype(np.int64)])
    verdict_codes = np.array([_VERDICT_CODE[v] for v in verdicts])
    return y, np.column_stack([scores, verdict_codes, predicted])


def _confidence_intervals(
    labels: np.ndarray,
    is_counterfeit: np.ndarray,
    scores: np.ndarray,
    verdicts: np.ndarray,
    predicted: np.ndarray,
    case_ids: Sequence[str] | None,
    n_boot: int,
    seed: int,
) -> dict:
    y, outputs = _bootstrap_columns(labels, is_counterfeit, scores, verdicts, predicted)
    intervals = {}
    for name, metric, _ in KEY_METRICS:
        _, low, high = metrics.bootstrap_ci(metric, y, outputs, groups=case_ids, n_boot=n_boot, seed=seed, confidence=CI_LEVEL)
        intervals[name] = [low, high]
    return {
        "level": CI_LEVEL,
        "n_boot": n_boot,
        "resampling_unit": "case" if case_ids is not None else "photo",
        "intervals": intervals,
    }


# --------------------------------------------------------------------------- champion vs challenger


def comparison(
    champion_probabilities: np.ndarray,
    challenger_probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    champion_operating_point: OperatingPoint,
    challenger_operating_point: OperatingPoint,
    *,
    case_ids: Sequence[str] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> dict:
    """Challenger minus champion on the same photos, with paired bootstrap CIs per key metric.

    Each model is judged at its own operating point. ``better`` is True when the whole CI
    lies on the good side of zero, False when on the bad side, None when it contains zero.
    """
    columns = []
    for probabilities, operating_point in (
        (champion_probabilities, champion_operating_point),
        (challenger_probabilities, challenger_operating_point),
    ):
        probabilities, labels = _check_inputs(probabilities, labels, class_names)
        scores = counterfeit_score(probabilities, class_names)
        is_counterfeit = np.array([is_counterfeit_class(class_names[label]) for label in labels])
        verdicts = verdicts_for_scores(scores, operating_point)
        columns.append(_bootstrap_columns(labels, is_counterfeit, scores, verdicts, probabilities.argmax(axis=1)))
    (y, champion), (_, challenger) = columns

    rows = {}
    for name, metric, higher_is_better in KEY_METRICS:
        delta, low, high = metrics.bootstrap_delta(
            metric, y, champion, challenger, groups=case_ids, n_boot=n_boot, seed=seed, confidence=CI_LEVEL
        )
        better = None
        if low > 0 or high < 0:
            better = (low > 0) == higher_is_better
        rows[name] = {
            "champion": metric(y, champion),
            "challenger": metric(y, challenger),
            "delta": delta,
            "ci_low": low,
            "ci_high": high,
            "higher_is_better": higher_is_better,
            "better": better,
        }
    return _plain(
        {
            "n_photos": len(y),
            "level": CI_LEVEL,
            "n_boot": n_boot,
            "resampling_unit": "case" if case_ids is not None else "photo",
            "metrics": rows,
        }
    )


# (label, path into the report) of the headline numbers, shared by the text summary and compare_reports.
HEADLINE = (
    ("accuracy", ("accuracy",)),
    ("product accuracy", ("product", "accuracy")),
    ("counterfeit recall (COUNTERFEIT or REFER)", ("operating_point", "counterfeit_recall")),
    ("missed counterfeits (declared GENUINE)", ("operating_point", "miss_rate")),
    ("false-alarm rate", ("operating_point", "false_alarm_rate")),
    ("refer rate", ("operating_point", "refer_rate")),
    ("right verdict without an expert", ("operating_point", "right_decision_rate")),
    ("ROC-AUC (counterfeit vs genuine)", ("counterfeit", "roc_auc")),
    ("PR-AUC / average precision", ("counterfeit", "average_precision")),
    ("ECE (top class)", ("calibration", "ece_top_class")),
    ("ECE (counterfeit score)", ("calibration", "ece_counterfeit_score")),
)


def compare_reports(champion: Mapping, challenger: Mapping) -> dict:
    """Headline numbers of two reports side by side with challenger - champion (no CIs:
    use :func:`comparison` on the models' outputs for those)."""
    rows = {}
    for label, path in HEADLINE:
        a, b = _lookup(champion, path), _lookup(challenger, path)
        rows[label] = {"champion": a, "challenger": b, "delta": (b - a) if a is not None and b is not None else None}
    return rows


# --------------------------------------------------------------------------- output


def write_report(report: Mapping, out_dir: Path | str, *, plots: bool | None = None) -> list[Path]:
    """Write report.json, confusion_matrix.csv, risk_coverage.csv and, with matplotlib,
    confusion_matrix.png and reliability.png. ``plots=None`` draws them when matplotlib is
    installed; True requires it. Returns the files written."""
    from longteng.training import plots as plotting

    if plots is None:
        plots = plotting.matplotlib_available()
    elif plots and not plotting.matplotlib_available():
        raise ConfigError("plots need matplotlib: install longteng[train] or write the report without plots")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json", out_dir / "confusion_matrix.csv", out_dir / "risk_coverage.csv"]
    written[0].write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    names = report["class_names"]
    with open(written[1], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *names])
        for name, row in zip(names, report["confusion_matrix"], strict=True):
            writer.writerow([name, *row])

    with open(written[2], "w", newline="", encoding="utf-8") as handle:
        columns = ["requested_coverage", "coverage", "referred_fraction", "error_rate", "threshold", "kept"]
        writer = csv.writer(handle)
        writer.writerow(["prediction", *columns])
        for prediction, rows in report["risk_coverage"].items():
            for row in rows:
                writer.writerow([prediction, *(row[column] for column in columns)])

    if plots:
        written.append(plotting.plot_confusion_matrix(report["confusion_matrix"], names, out_dir / "confusion_matrix.png"))
        calibration = report["calibration"]
        written.append(
            plotting.plot_reliability(
                {
                    f"top class (ECE {calibration['ece_top_class']:.3f})": calibration["reliability_top_class"],
                    f"counterfeit score (ECE {calibration['ece_counterfeit_score']:.3f})": calibration[
                        "reliability_counterfeit_score"
                    ],
                },
                out_dir / "reliability.png",
            )
        )
    return written


def write_comparison(result: Mapping, out_dir: Path | str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "comparison.json"
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def summary_rows(report: Mapping) -> list[tuple[str, str]]:
    """(label, value) pairs of the headline numbers, for a two-column table."""
    intervals = report["confidence_intervals"]["intervals"]
    interval_of = {
        ("accuracy",): intervals.get("accuracy"),
        ("operating_point", "counterfeit_recall"): intervals.get("counterfeit_recall"),
        ("operating_point", "false_alarm_rate"): intervals.get("false_alarm_rate"),
        ("operating_point", "refer_rate"): intervals.get("refer_rate"),
        ("counterfeit", "roc_auc"): intervals.get("roc_auc"),
    }
    photos = f"{report['n_photos']}" + (f" in {report['n_cases']} cases" if report.get("n_cases") else "")
    op = report["operating_point"]
    band = (
        f"[{op['refer_low']:.4f}, {op['refer_high']:.4f})"
        if op["refer_low"] < op["refer_high"]
        else f"none (single threshold {op['refer_high']:.4f})"
    )
    rows = [("photos", photos), ("REFER band on the counterfeit score", band)]
    for label, path in HEADLINE:
        value = _format_number(_lookup(report, path))
        interval = interval_of.get(path)
        if interval and None not in interval:
            value += f"  [{interval[0]:.3f}, {interval[1]:.3f}]"
        rows.append((label, value))
    for entry in report["counterfeit"]["recall_at_false_alarm_rate"]:
        label = f"recall at false-alarm rate <= {entry['max_false_alarm_rate']:.0%} (no REFER)"
        rows.append((label, _format_number(entry["recall"])))
    return rows


def format_report_text(report: Mapping) -> str:
    """A plain-text summary: headline numbers, per-class table, risk-coverage and tells."""
    level = report["confidence_intervals"]
    lines = [f"Headline ({level['level']:.0%} bootstrap CI over {level['resampling_unit']}s in brackets)"]
    rows = summary_rows(report)
    width = max(len(label) for label, _ in rows)
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]

    lines += ["", "Per class", f"  {'class':<32} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for row in report["per_class"]:
        lines.append(
            f"  {row['class']:<32} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>7.3f} {row['support']:>8d}"
        )

    lines += ["", "Risk-coverage (keep the most confident photos, refer the rest)",
              f"  {'prediction':<13} {'coverage':>8} {'referred':>8} {'error':>7} {'threshold':>9}"]
    for prediction, coverage_rows in report["risk_coverage"].items():
        for row in coverage_rows:
            lines.append(
                f"  {prediction:<13} {row['coverage']:>8.3f} {row['referred_fraction']:>8.3f} "
                f"{row['error_rate']:>7.3f} {row['threshold']:>9.4f}"
            )

    if report.get("tells"):
        for title, key in (("tell type", "by_tell"), ("strongest tell strength", "by_strength")):
            lines += ["", f"Counterfeit recall at the operating point by {title}"]
            for group, tally in report["tells"][key].items():
                lines.append(f"  {group:<32} {tally['recall']:.3f}  ({tally['caught']}/{tally['count']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _tell_breakdown(
    tells: Sequence[Mapping[str, float]], is_counterfeit: np.ndarray, caught: np.ndarray,
    decided: np.ndarray | None = None, at_far: np.ndarray | None = None,
) -> dict:
    """Counterfeit recall per tell: ``caught`` counts REFER as caught (the operating point's
    promise), ``decided`` only COUNTERFEIT verdicts (what the officer is told), ``at_far`` the
    test ROC's threshold at a false-alarm rate of 0.02 (the detector itself)."""
    if len(tells) != len(is_counterfeit):
        raise ConfigError(f"{len(tells)} tell records for {len(is_counterfeit)} photos")
    counterfeit_rows = np.flatnonzero(is_counterfeit)
    by_tell, by_strength, by_both = [], [], []
    for row in counterfeit_rows:
        photo_tells = tells[row]
        by_tell.append(list(photo_tells) or [NO_TELL])
        by_strength.append([strength_bin(max(photo_tells.values()))] if photo_tells else [])
        by_both.append([f"{name} {strength_bin(value)}" for name, value in photo_tells.items()])
    def table(keys: list[list[str]], hits: np.ndarray | None = None) -> dict:
        chosen = (caught if hits is None else hits)[counterfeit_rows]
        return {key: {**_fields(group), "recall": group.recall} for key, group in metrics.recall_by_group(keys, chosen).items()}

    extra = {}
    if decided is not None:
        extra["by_tell_decided"] = table(by_tell, decided)
    if at_far is not None:
        extra["by_tell_at_far_0.02"] = table(by_tell, at_far)
    return {
        **extra,
        "strength_edges": list(STRENGTH_EDGES),
        "by_tell": table(by_tell),
        "by_strength": table(by_strength),
        "by_tell_and_strength": table(by_both),
    }


def strength_bin(strength: float, edges: Sequence[float] = STRENGTH_EDGES) -> str:
    """'[0.33,0.66)'-style label of the bin holding ``strength``; the last bin is closed, and
    values outside the edges go to the nearest end bin."""
    last = len(edges) - 2
    index = min(max(int(np.searchsorted(edges, strength, side="right")) - 1, 0), last)
    closing = "]" if index == last else ")"
    return f"[{edges[index]:.2f},{edges[index + 1]:.2f}{closing}"


def _uncalibrated(logits: np.ndarray | None, labels: np.ndarray, n_photos: int) -> dict | None:
    if logits is None:
        return None
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[0] != n_photos:
        raise ConfigError(f"logits have {logits.shape[0]} rows for {n_photos} photos")
    raw = softmax(logits)
    return {
        "nll": metrics.log_loss(raw, labels),
        "ece_top_class": metrics.expected_calibration_error(raw.max(axis=1), raw.argmax(axis=1) == labels).ece,
    }


def _check_inputs(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names) or labels.shape != (len(probabilities),):
        raise ConfigError(
            f"need (N, {len(class_names)}) probabilities and (N,) labels, got {probabilities.shape} and {labels.shape}"
        )
    if len(labels) == 0:
        raise ConfigError("nothing to evaluate: no photos")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(class_names):
        raise ConfigError(f"labels must be class indices in [0, {len(class_names)})")
    return probabilities, labels.astype(np.int64)


def _fields(instance: object) -> dict:
    return dataclasses.asdict(instance)  # type: ignore[call-overload]


def _lookup(report: Mapping, path: Sequence[str]) -> float | None:
    value: object = report
    for key in path:
        value = value[key]  # type: ignore[index]
    return value  # type: ignore[return-value]


def _format_number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _plain(value: object) -> object:
    """Plain JSON types: numpy scalars and arrays to Python, NaN and infinities to None."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
