"""The machine-readable rows of ``longteng predict`` (``--json``, ``--csv``), schema version 1.

JSON: one object per line (JSON Lines), one line per photo, item or failed input, in input
order. Every key is present in every row; ``null`` where it does not apply.

====================  ===========================  ==============================================
key                   type                         meaning
====================  ===========================  ==============================================
schema_version        int                          1; bumped on any incompatible change
kind                  "photo" | "item" | "error"   a photo's verdict, an item's verdict, a failure
path                  str | null                   the photo or input (photo, error); null for items
item                  str | null                   the item name (items; failures of an item's photos)
verdict               str | null                   "GENUINE", "COUNTERFEIT" or "REFER"; null on errors
refer_reason          str | null                   "" (decided), "uncertain", "unknown" or "registered"
product               str | null                   most probable product
confidence            float | null                 calibrated probability of the verdict (REFER: the
                                                   larger of counterfeit / genuine; do not act on it)
counterfeit_score     float | null                 calibrated probability of a counterfeit
product_confidence    float | null                 probability of the product
top_classes           list | null                  up to 3 {"class": str, "probability": float},
                                                   most probable first
unknown_score         float | null                 out-of-distribution score (higher = less like the
                                                   training photos); null if the model has no detector
unknown               bool | null                  unknown_score above the model's threshold
product_box           list | null                  two-stage models: where the glance found the item,
                                                   its corners [[x, y] x 4] in pixels of the upright
                                                   photo (top-left, top-right, bottom-right,
                                                   bottom-left of the item); null otherwise
evidence              list | null                  photos and items: what a detector other than the
                                                   classifier found, [] if nothing; the text check
                                                   gives {"detector": "text", "kind": "spelling" |
                                                   "format", "read": str, "expected": str,
                                                   "ocr_confidence": float, "box": [[x, y] x 4] |
                                                   null} (box: where it was read, photo pixels as
                                                   product_box); a registered product's novelty
                                                   score gives {"detector": "novelty", "product":
                                                   str, "novelty": float, "threshold": float}
                                                   when it lies beyond every genuine reference;
                                                   the aligned check gives {"detector":
                                                   "aligned", "product": str, "score": float,
                                                   "threshold": float, "box": [[x, y] x 4] |
                                                   null} (box: the most unusual place);
                                                   the artwork check gives {"detector":
                                                   "artwork", "measure": str (logo_across,
                                                   logo_along, logo_length, logo_thickness,
                                                   logo_turn, aspect or logo_ink), "value":
                                                   float, "expected": float, "deviation":
                                                   float (in the references' spreads), "box":
                                                   [[x, y] x 4] | null (the logo), "description":
                                                   str}; items add "path" to each
item_count            int | null                   photos, models that find several items in a photo
                                                   (trained on item boxes): how many it found; null
                                                   for models of one item per photo
items_in_photo        list | null                  photos, the same models: per item found, largest
                                                   first, {"box": [[x, y] x 4] (as product_box),
                                                   "verdict", "refer_reason", "product",
                                                   "confidence", "counterfeit_score", "evidence"};
                                                   the photo's own fields are its most suspicious
                                                   item's (the rule of inference/items.py)
photos                list | null                  items only: {"path": str, "verdict": str,
                                                   "counterfeit_score": float, "unknown": bool,
                                                   "explain": str | null} per photo, input order
decisive_photo        str | null                   items only: the photo whose score is the item's
explain               str | null                   heatmap overlay written for this photo (--explain)
error_reason          str | null                   failures: not_found, unreadable, empty,
                                                   not_an_image, truncated, corrupt, too_large,
                                                   unsupported_format, no_match, no_images,
                                                   symlink_loop, no_photos (item without any
                                                   readable photo), explain_failed
error_detail          str | null                   failures: human-readable detail
model_version         str                          the model file's version (from its metadata)
====================  ===========================  ==============================================

An item row's numbers (product, confidence, top classes) are its decisive photo's; see
``longteng.inference.items`` for how photos combine.

File names: paths are text as ``os.fsdecode`` gives them; bytes that are not UTF-8 become lone
surrogates U+DC80..U+DCFF (``surrogateescape``). JSON is written ASCII-only, so such a byte
appears as ``"\\udcff"`` and every other non-ASCII character as a ``\\uXXXX`` escape:
``os.fsencode(json.loads(line)["path"])`` gives back the exact bytes of the name. CSV (RFC 4180,
Python's csv module: fields with commas, quotes or newlines are quoted) is UTF-8 written with
``surrogateescape``, so a name's raw bytes appear unchanged; read it with
``open(..., encoding="utf-8", errors="surrogateescape", newline="")``. CSV columns are the keys
above with ``top_classes`` spread over ``top1_class, top1_probability, ... top3_probability``,
``photos``, ``product_box``, ``evidence`` and ``items_in_photo`` as JSON text, null as an empty cell and booleans as ``true``/``false``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from longteng.decision import Decision
from longteng.inference.items import ItemPrediction
from longteng.inference.predict import PhotoFailure, PhotoPrediction

SCHEMA_VERSION = 1
KINDS = ("photo", "item", "error")
FIELDS = (
    "schema_version", "kind", "path", "item", "verdict", "refer_reason", "product", "confidence",
    "counterfeit_score", "product_confidence", "top_classes", "unknown_score", "unknown", "product_box", "evidence",
    "item_count", "items_in_photo", "photos",
    "decisive_photo", "explain", "error_reason", "error_detail", "model_version",
)
TOP_K = 3
CSV_FIELDS = tuple(
    column
    for name in FIELDS
    for column in (
        [f"top{i}_{part}" for i in range(1, TOP_K + 1) for part in ("class", "probability")]
        if name == "top_classes" else [name]
    )
)


def photo_record(
    prediction: PhotoPrediction, model_version: str, explain: Path | None = None, *, counts_items: bool = False
) -> dict[str, Any]:
    """``counts_items``: the model finds several items per photo (ModelMetadata.finds_items)."""
    return _record("photo", model_version, {
        "path": _text(prediction.path),
        **decision_fields(prediction.decision),
        "top_classes": _top_classes(prediction),
        "unknown_score": finite_or_none(prediction.unknown_score),
        "unknown": prediction.unknown,
        "product_box": product_box(prediction),
        "evidence": photo_evidence(prediction),
        **({"item_count": len(prediction.items), "items_in_photo": items_in_photo(prediction)} if counts_items else {}),
        "explain": _text(explain),
    })


def items_in_photo(prediction: PhotoPrediction) -> list[dict[str, Any]]:
    """Each item the glance found in the photo, with its own verdict (schema above)."""
    return [
        {"box": product_box(item), **{k: v for k, v in decision_fields(item.decision).items() if k != "product_confidence"},
         "evidence": photo_evidence(item)}
        for item in prediction.items
    ]


def photo_evidence(prediction: PhotoPrediction) -> list[dict[str, Any]]:
    found = [prediction.text_mismatch, prediction.novelty, prediction.aligned, prediction.artwork]
    return [entry.to_dict() for entry in found if entry is not None]


def product_box(prediction: PhotoPrediction) -> list[list[float]] | None:
    box = prediction.view.box_in_original if prediction.view is not None else None
    return None if box is None else [[round(float(x), 1), round(float(y), 1)] for x, y in box.corners()]


def item_record(item: ItemPrediction, model_version: str, explained: Mapping[Path, Path] | None = None) -> dict[str, Any]:
    explained = explained or {}
    return _record("item", model_version, {
        "item": item.name,
        **decision_fields(item.decision),
        "top_classes": _top_classes(item.decisive),
        "unknown_score": finite_or_none(item.unknown_score),
        "unknown": item.unknown,
        "evidence": [{**entry, "path": _text(photo.path)} for photo in item.photos for entry in photo_evidence(photo)],
        "photos": [
            {
                "path": _text(photo.path),
                "verdict": photo.decision.verdict,
                "counterfeit_score": finite_or_none(photo.decision.counterfeit_score),
                "unknown": photo.unknown,
                "explain": _text(explained.get(photo.path)),
            }
            for photo in item.photos
        ],
        "decisive_photo": _text(item.decisive.path),
    })


def failure_record(failure: PhotoFailure, model_version: str, item: str | None = None) -> dict[str, Any]:
    return _record("error", model_version, {
        "path": _text(failure.path), "item": item, "error_reason": failure.reason, "error_detail": failure.detail,
    })


def item_failure_record(item: str, reason: str, detail: str, model_version: str) -> dict[str, Any]:
    return _record("error", model_version, {"item": item, "error_reason": reason, "error_detail": detail})


def to_json_line(record: Mapping[str, Any]) -> str:
    # ASCII-only: escapes keep lone surrogates (undecodable name bytes) and control
    # characters intact whatever the terminal's encoding.
    return json.dumps(record, ensure_ascii=True, allow_nan=False)


def to_csv_row(record: Mapping[str, Any]) -> list[str]:
    row: list[str] = []
    for name in FIELDS:
        value = record[name]
        if name == "top_classes":
            classes = list(value or [])
            for i in range(TOP_K):
                entry = classes[i] if i < len(classes) else None
                row += ["", ""] if entry is None else [entry["class"], repr(entry["probability"])]
        elif name in ("photos", "product_box", "evidence", "items_in_photo"):
            row.append("" if value is None else json.dumps(value, ensure_ascii=False))
        else:
            row.append(csv_cell(value))
    return row


def _record(kind: str, model_version: str, values: Mapping[str, Any]) -> dict[str, Any]:
    assert set(values) <= set(FIELDS), f"not in the predict schema: {sorted(set(values) - set(FIELDS))}"
    record: dict[str, Any] = dict.fromkeys(FIELDS)
    record.update(values)
    record.update(schema_version=SCHEMA_VERSION, kind=kind, model_version=model_version)
    return record


def decision_fields(decision: Decision) -> dict[str, Any]:
    return {
        "verdict": decision.verdict,
        "refer_reason": decision.refer_reason,
        "product": decision.product,
        "confidence": finite_or_none(decision.confidence),
        "counterfeit_score": finite_or_none(decision.counterfeit_score),
        "product_confidence": finite_or_none(decision.product_confidence),
    }


def _top_classes(prediction: PhotoPrediction) -> list[dict[str, Any]]:
    return [{"class": name, "probability": finite_or_none(p)} for name, p in prediction.top_classes[:TOP_K]]


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity; a broken model's non-finite number becomes null."""
    return None if value is None or not math.isfinite(value) else float(value)


def _text(path: Path | str | None) -> str | None:
    return None if path is None else os.fsdecode(path)
