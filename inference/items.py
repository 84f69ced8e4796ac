"""One verdict for one item from several photos (front, back, label): ``--item`` and ``--group-by``.

How photos combine: **the item is as suspicious as its most suspicious photo.** The item's
counterfeit score is the maximum over its photos, and the item row reports that photo's
numbers (product, confidence, top classes): the *decisive photo*. The verdict is the model's
operating point applied to that score, with one addition: a photo flagged *unknown* (it does
not look like anything the model was trained on) cannot be cleared, so an item that would be
GENUINE becomes REFER (reason ``unknown``) when any of its photos is unknown, and unknown
photos do not take part in the maximum while the item has known ones (their scores are not
trustworthy). An item whose photos are all unknown is REFER (``unknown``).

Why the maximum: counterfeit tells are local (a misprinted label, a missing certification
mark, the wrong screw) and often show on one side only. Averaging (mean probability or mean
log-odds) lets two clean photos of the front and back dilute a clear tell on the label into
REFER or GENUINE: a missed counterfeit, the costly error in customs.

What it costs: false alarms grow with the number of photos. The operating point was chosen
per photo; if each genuine photo crosses the COUNTERFEIT threshold with probability p
independently, an item of k photos does with 1 - (1 - p)^k, about k*p (three photos at a 2%
per-photo false-alarm rate: about 6%). Photos of one item share the object, light and camera,
so they are positively correlated and the real rise is smaller, but it is a rise: the item
confidence is the decisive photo's calibrated probability, not a calibrated item probability.
An item-level operating point chosen on validation cases would remove the drift (not done).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longteng.decision import GENUINE, REFER, Decision, OperatingPoint, verdict_confidence, verdicts_for_scores
from longteng.errors import ConfigError
from longteng.inference.predict import PhotoPrediction

GROUP_RULES = ("parent",)


@dataclass(frozen=True)
class ItemPrediction:
    name: str
    decision: Decision
    decisive: PhotoPrediction  # the photo whose counterfeit score is the item's
    photos: tuple[PhotoPrediction, ...]
    unknown_score: float | None  # the highest over the photos (the most unusual one)
    unknown: bool  # any photo unknown


def item_key(rule: str) -> Callable[[Path], str]:
    """Photo path -> item name for a ``--group-by`` rule (``parent``: each folder is an item)."""
    if rule == "parent":
        return lambda path: str(path.parent)
    raise ConfigError(f"grouping rule {rule!r} unknown; allowed: {', '.join(GROUP_RULES)}")


def group(photos: Iterable[PhotoPrediction], key: Callable[[Path], str]) -> dict[str, list[PhotoPrediction]]:
    """Photos by item name, items in order of first appearance, photos in input order."""
    items: dict[str, list[PhotoPrediction]] = {}
    for photo in photos:
        items.setdefault(key(photo.path), []).append(photo)
    return items


def combine(name: str, photos: Sequence[PhotoPrediction], operating_point: OperatingPoint) -> ItemPrediction:
    """The item's decision from its photos' decisions (rule in the module docstring)."""
    if not photos:
        raise ConfigError(f"item {name!r} has no predicted photos to combine")
    known = [photo for photo in photos if not photo.unknown]
    candidates = known or list(photos)
    decisive = max(candidates, key=lambda photo: photo.decision.counterfeit_score)  # first wins ties
    score = decisive.decision.counterfeit_score
    any_unknown = len(known) < len(photos)
    verdict = str(verdicts_for_scores(np.array([score]), operating_point)[0])
    if not known or (verdict == GENUINE and any_unknown):
        verdict = REFER
        reason = "unknown"
    else:
        reason = "uncertain" if verdict == REFER else ""
    confidence = verdict_confidence(verdict, score)
    decision = Decision(
        verdict=verdict,
        product=decisive.decision.product,
        confidence=float(confidence),
        counterfeit_score=float(score),
        product_confidence=decisive.decision.product_confidence,
        refer_reason=reason,
    )
    unknown_scores = [photo.unknown_score for photo in photos if photo.unknown_score is not None]
    return ItemPrediction(
        name=name,
        decision=decision,
        decisive=decisive,
        photos=tuple(photos),
        unknown_score=max(unknown_scores) if unknown_scores else None,
        unknown=any_unknown,
    )
