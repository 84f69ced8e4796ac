"""No global image statistic may give the synthetic label away.

A classifier that only sees whole-photo statistics (brightness, contrast, sharpness,
colour means, file size, JPEG quality) must do no better than chance on held-out cases;
otherwise a model trained on the synthetic data could learn the shortcut, not the tells.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from longteng.data.layout import scan_dataset
from longteng.data.synth import SynthConfig, synthesize
from longteng.data.synth.photo import make_photo
from longteng.data.synth.plan import plan_dataset

FEATURES = ("brightness", "contrast", "sharpness", "red", "green", "blue", "file_size", "jpeg_quality")


def global_statistics(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as image:
        # Mean of the luminance quantisation table: lower means higher JPEG quality.
        quantisation = float(np.mean(image.quantization[0]))
        pixels = np.asarray(image.convert("RGB"), np.float64)
    grey = pixels.mean(axis=2)
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return np.array(
        [
            grey.mean(),
            grey.std(),
            np.log(laplacian.var()),
            *pixels.reshape(-1, 3).mean(axis=0),
            np.log(len(jpeg)),
            quantisation,
        ]
    )


@pytest.mark.slow
def test_global_statistics_do_not_predict_the_label_on_held_out_cases(tmp_path: Path) -> None:
    # Easy: the strongest tells, the likeliest to leak. Four photos per case give enough
    # cases (100) that chance correlations between a case's scene and its label stay small.
    config = SynthConfig(images=400, seed=2024, difficulty="easy", size=(320, 240), images_per_case=4)
    synthesize(config, tmp_path, workers=2)
    records = scan_dataset(tmp_path)
    features = np.array([global_statistics((tmp_path / r.path).read_bytes()) for r in records])
    labels = np.array([r.is_counterfeit for r in records])
    cases = [r.case_id for r in records]

    aucs = []
    for train, test in GroupKFold(n_splits=5).split(features, labels, cases):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(features[train], labels[train])
        aucs.append(roc_auc_score(labels[test], model.predict_proba(features[test])[:, 1]))
    print(f"held-out ROC-AUC per fold: {np.round(aucs, 3)}, mean {np.mean(aucs):.3f}")
    assert float(np.mean(aucs)) < 0.6, f"held-out ROC-AUC per fold: {np.round(aucs, 3)}"


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_tells_barely_move_global_statistics(difficulty: str) -> None:
    """The same planned photo rendered genuine and counterfeit (same scene, same camera):
    on average the tells shift no statistic by more than a tenth of its spread."""
    config = SynthConfig(images=48, seed=5, difficulty=difficulty, size=(256, 192), images_per_case=4)
    counterfeits = [plan for plan in plan_dataset(config) if plan.counterfeit]
    assert len(counterfeits) >= 15
    fake = np.array([global_statistics(make_photo(config, plan).jpeg) for plan in counterfeits])
    genuine = np.array(
        [
            global_statistics(make_photo(config, dataclasses.replace(plan, counterfeit=False)).jpeg)
            for plan in counterfeits
        ]
    )
    shift = (fake - genuine).mean(axis=0) / genuine.std(axis=0)
    for name, value in zip(FEATURES, shift):
        assert abs(value) < 0.1, f"{name} moves by {value:.3f} standard deviations"
