"""The evaluation report on a six-photo example worked out by hand, its files and the comparison."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from longteng.decision import OperatingPoint
from longteng.training import plots
from longteng.training.report import (
    compare_reports,
    comparison,
    evaluation_report,
    format_report_text,
    strength_bin,
    summary_rows,
    write_report,
)

CLASSES = ["drone/counterfeit", "drone/genuine", "smartphone/counterfeit", "smartphone/genuine"]
# photo  label                   probabilities              score  argmax  verdict at [0.3, 0.7)
#   0    drone/counterfeit       [.9, .05, .03, .02]        0.93   0 ok    COUNTERFEIT
#   1    drone/counterfeit       [.3, .4, .2, .1]           0.50   1 bad   REFER
#   2    smartphone/counterfeit  [.05, .05, .1, .8]         0.15   3 bad   GENUINE (missed)
#   3    drone/genuine           [.1, .8, .05, .05]         0.15   1 ok    GENUINE
#   4    smartphone/genuine      [.05, .05, .7, .2]         0.75   2 bad   COUNTERFEIT (false alarm)
#   5    smartphone/genuine      [.02, .03, .05, .9]        0.07   3 ok    GENUINE
PROBABILITIES = np.array([
    [0.9, 0.05, 0.03, 0.02],
    [0.3, 0.4, 0.2, 0.1],
    [0.05, 0.05, 0.1, 0.8],
    [0.1, 0.8, 0.05, 0.05],
    [0.05, 0.05, 0.7, 0.2],
    [0.02, 0.03, 0.05, 0.9],
])
LABELS = np.array([0, 0, 2, 1, 3, 3])
TELLS = [{"glyph_swap": 0.8}, {"glyph_swap": 0.2, "hologram": 0.5}, {"hologram": 0.9}, {}, {}, {}]
POINT = OperatingPoint(0.3, 0.7, 0.02, 0.98)


@pytest.fixture(scope="module")
def report() -> dict:
    return evaluation_report(PROBABILITIES, LABELS, CLASSES, POINT, tells=TELLS, n_boot=50)


def test_report_numbers_by_hand(report):
    assert report["accuracy"] == pytest.approx(3 / 6)  # photos 0, 3, 5
    assert report["product"]["accuracy"] == 1.0  # every product marginal points the right way
    assert report["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]]
    # smartphone/counterfeit is predicted once (photo 4), wrongly -> precision 0.
    assert report["per_class"][2] == {"class": "smartphone/counterfeit", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    op = report["operating_point"]
    assert op["counterfeit_recall"] == pytest.approx(2 / 3)  # photo 0 flagged, photo 1 referred
    assert op["miss_rate"] == pytest.approx(1 / 3)  # photo 2
    assert op["false_alarm_rate"] == pytest.approx(1 / 3)  # photo 4
    assert op["refer_rate"] == pytest.approx(1 / 6)
    assert (op["refer_low"], op["refer_high"]) == (0.3, 0.7)
    # Counterfeit {0.93, 0.5, 0.15} vs genuine {0.15, 0.75, 0.07}: wins 3 + 2 + (0.5 tie + 1) = 6.5 of 9.
    assert report["counterfeit"]["roc_auc"] == pytest.approx(6.5 / 9)
    # Nothing can be flagged at FAR <= 1 % or 2 % without flagging 0.75 (1 of 3 genuine):
    # only 0.93 is above it -> recall 1/3.
    assert [r["recall"] for r in report["counterfeit"]["recall_at_false_alarm_rate"]] == pytest.approx([1 / 3] * 3)


def test_report_breaks_recall_down_by_tell(report):
    tells = report["tells"]
    # glyph_swap on photos 0 and 1, both caught; hologram on photo 1 (caught) and 2 (missed).
    assert tells["by_tell"]["glyph_swap"] == {"count": 2, "caught": 2, "recall": 1.0}
    assert tells["by_tell"]["hologram"] == {"count": 2, "caught": 1, "recall": 0.5}
    # Strongest tell: photo 0 -> 0.8, photo 1 -> 0.5, photo 2 -> 0.9.
    assert tells["by_strength"]["[0.66,1.00]"] == {"count": 2, "caught": 1, "recall": 0.5}
    assert tells["by_strength"]["[0.33,0.66)"] == {"count": 1, "caught": 1, "recall": 1.0}
    assert tells["by_tell_and_strength"]["glyph_swap [0.00,0.33)"]["count"] == 1


def test_report_is_plain_json(report):
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_report_with_cases_and_logits():
    logits = np.log(PROBABILITIES) * 3  # over-confident version of the same ranking
    result = evaluation_report(
        PROBABILITIES, LABELS, CLASSES, POINT, case_ids=["a", "a", "b", "c", "c", "d"], logits=logits, n_boot=20
    )
    assert result["n_cases"] == 4
    assert result["confidence_intervals"]["resampling_unit"] == "case"
    assert result["calibration"]["uncalibrated"]["nll"] > result["calibration"]["nll"]
    assert result["tells"] is None


def test_report_without_counterfeits_has_nulls_not_nans():
    genuine = LABELS == 1
    genuine |= LABELS == 3
    result = evaluation_report(PROBABILITIES[genuine], LABELS[genuine], CLASSES, POINT, n_boot=20)
    assert result["counterfeit"]["roc_auc"] is None
    assert result["operating_point"]["counterfeit_recall"] is None
    json.dumps(result, allow_nan=False)
    assert "n/a" in format_report_text(result)


@pytest.mark.parametrize(("strength", "label"), [
    (0.0, "[0.00,0.33)"), (0.329, "[0.00,0.33)"), (0.33, "[0.33,0.66)"), (0.66, "[0.66,1.00]"),
    (1.0, "[0.66,1.00]"), (1.3, "[0.66,1.00]"), (-0.1, "[0.00,0.33)"),
])
def test_strength_bin(strength, label):
    assert strength_bin(strength) == label


def test_write_report_files(report, tmp_path):
    written = write_report(report, tmp_path, plots=False)
    assert sorted(p.name for p in written) == ["confusion_matrix.csv", "report.json", "risk_coverage.csv"]
    assert json.loads((tmp_path / "report.json").read_text()) == report
    with open(tmp_path / "confusion_matrix.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["true \\ predicted", *CLASSES]
    assert rows[3] == ["smartphone/counterfeit", "0", "0", "0", "1"]
    with open(tmp_path / "risk_coverage.csv", newline="") as handle:
        coverage_rows = list(csv.DictReader(handle))
    assert {row["prediction"] for row in coverage_rows} == {"top_class", "authenticity"}
    # Keeping all six photos: three top-class errors.
    assert float(coverage_rows[0]["error_rate"]) == pytest.approx(0.5)


@pytest.mark.skipif(not plots.matplotlib_available(), reason="matplotlib not installed")
def test_write_report_draws_pngs(report, tmp_path):
    write_report(report, tmp_path, plots=True)
    for name in ("confusion_matrix.png", "reliability.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_summary_has_the_headline(report):
    text = format_report_text(report)
    assert "counterfeit recall (COUNTERFEIT or REFER)    0.6667" in text
    assert "glyph_swap" in text
    labels = [label for label, _ in summary_rows(report)]
    assert "false-alarm rate" in labels and "refer rate" in labels


def test_comparison_of_a_model_with_itself_shows_no_difference():
    result = comparison(PROBABILITIES, PROBABILITIES, LABELS, CLASSES, POINT, POINT, n_boot=50)
    for row in result["metrics"].values():
        assert row["delta"] in (0.0, None)
        assert row["better"] is None


def test_comparison_sees_a_clearly_better_challenger():
    # Ten copies of the six photos, in ten cases; the challenger puts 0.97 on the true class.
    probabilities = np.tile(PROBABILITIES, (10, 1))
    labels = np.tile(LABELS, 10)
    challenger = np.full_like(probabilities, 0.01)
    challenger[np.arange(len(labels)), labels] = 0.97
    cases = np.repeat([f"case{i}" for i in range(10)], 6)
    result = comparison(probabilities, challenger, labels, CLASSES, POINT, POINT, case_ids=cases, n_boot=200)
    accuracy = result["metrics"]["accuracy"]
    # Champion 3/6, challenger 6/6. Every case holds the same six photos, so every resample
    # gives exactly the same delta.
    assert accuracy["delta"] == pytest.approx(0.5)
    assert accuracy["ci_low"] == pytest.approx(0.5) and accuracy["better"] is True
    false_alarms = result["metrics"]["false_alarm_rate"]
    assert false_alarms["delta"] == pytest.approx(-1 / 3)  # champion 1/3 -> challenger 0
    assert false_alarms["better"] is True  # lower is better
    assert result["resampling_unit"] == "case"


def test_compare_reports_gives_headline_deltas(report):
    better = evaluation_report(PROBABILITIES, LABELS, CLASSES, OperatingPoint(0.1, 0.9, 0.02, 0.98), n_boot=20)
    rows = compare_reports(report, better)
    # The wider band [0.1, 0.9) refers photos 1, 2, 3 and 4 (0.5, 0.15, 0.15, 0.75): refer 4/6 vs 1/6.
    assert rows["refer rate"]["delta"] == pytest.approx(4 / 6 - 1 / 6)
    assert rows["accuracy"]["delta"] == 0.0
