"""The checks beside the classifier, fused into its probabilities in one order.

The aligned check stacks its log-odds where it fires, then the text check and the artwork check
each add their evidence as a noisy OR (decision.with_evidence). `Predictor.predict_pixels`
(predict, score, the station) and `longteng evaluate` on an exported model both call
`apply_checks`, so the probabilities a report measures are the ones officers get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from longteng.inference.aligned_check import AlignedFinding, apply_aligned_check
from longteng.inference.artwork_check import ArtworkFinding, apply_artwork_check
from longteng.inference.metadata import ModelMetadata
from longteng.inference.text_check import TextMismatch, TextRead, apply_text_check


@dataclass(frozen=True)
class CheckResults:
    probabilities: np.ndarray  # after every check the model carries
    aligned: list[AlignedFinding | None]
    aligned_scores: np.ndarray | None  # the aligned check's log-odds (NaN: no say); None without the check
    mismatches: list[TextMismatch | None]
    artwork: list[ArtworkFinding | None]
    artwork_scores: np.ndarray | None  # the artwork check's largest deviations; None without the check


def apply_checks(
    metadata: ModelMetadata, crops: np.ndarray, reads: Sequence[Sequence[TextRead]] | None, probabilities: np.ndarray,
    class_names: Sequence[str],
) -> CheckResults:
    """uint8 focus crops and their OCR reads (None: the model reads no print) -> the probabilities
    with the model's checks fused in, and what each check found (crop coordinates)."""
    count = len(probabilities)
    aligned: list[AlignedFinding | None] = [None] * count
    aligned_scores = None
    if metadata.aligned_check is not None:
        probabilities, aligned, aligned_scores = apply_aligned_check(metadata.aligned_check, crops, probabilities, class_names)
    mismatches: list[TextMismatch | None] = [None] * count
    artwork: list[ArtworkFinding | None] = [None] * count
    artwork_scores = None
    if metadata.text_registry is not None and reads is not None:
        probabilities, mismatches = apply_text_check(metadata.text_registry, reads, probabilities, class_names)
        if metadata.artwork_check is not None:
            probabilities, artwork, artwork_scores = apply_artwork_check(
                metadata.artwork_check, crops, reads, probabilities, class_names)
    return CheckResults(probabilities, aligned, aligned_scores, mismatches, artwork, artwork_scores)
