"""From a stream of photo results to the rows `longteng predict` prints (schema in
longteng.inference.records), writing heatmap overlays on the way when asked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longteng.errors import ConfigError, ImageLoadError
from longteng.inference.items import combine, group, item_key
from longteng.inference.metadata import ModelMetadata
from longteng.inference.predict import PhotoFailure, PhotoPrediction, PhotoResult
from longteng.inference.records import failure_record, item_failure_record, item_record, photo_record

if TYPE_CHECKING:  # heatmap code loads only when --explain asks for it
    from longteng.inference.explain import ExplainOptions

EXPLAIN_FAILED = "explain_failed"
NO_PHOTOS = "no_photos"


def photo_rows(
    results: Iterable[PhotoResult], metadata: ModelMetadata, explain: ExplainOptions | None = None
) -> Iterator[dict[str, Any]]:
    """One row per result, as the results come (streams); a failed overlay adds an error row."""
    for result in results:
        if isinstance(result, PhotoFailure):
            yield failure_record(result, metadata.model_version)
            continue
        overlay, problem = _explain(result, metadata, explain)
        yield photo_record(result, metadata.model_version, overlay, counts_items=metadata.finds_items)
        if problem is not None:
            yield failure_record(problem, metadata.model_version)


def item_rows(
    results: Iterable[PhotoResult],
    metadata: ModelMetadata,
    explain: ExplainOptions | None = None,
    *,
    item_name: str | None = None,
    group_rule: str | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per item (``item_name``: all photos are one item; else ``group_rule``), each
    followed by the error rows of its photos; items in order of their first input."""
    if (item_name is None) == (group_rule is None):
        raise ConfigError("give exactly one of an item name and a grouping rule")
    key = (lambda path: item_name) if item_name is not None else item_key(group_rule)
    predictions: list[PhotoPrediction] = []
    failures: dict[str, list[PhotoFailure]] = {}
    order: dict[str, None] = {}
    overlays: dict[Path, Path] = {}
    for result in results:
        name = key(result.path)
        order.setdefault(name)
        if isinstance(result, PhotoFailure):
            failures.setdefault(name, []).append(result)
            continue
        predictions.append(result)
        overlay, problem = _explain(result, metadata, explain)
        if overlay is not None:
            overlays[result.path] = overlay
        if problem is not None:
            failures.setdefault(name, []).append(problem)
    photos_by_item = group(predictions, key)
    for name in order:
        photos = photos_by_item.get(name)
        if photos:
            yield item_record(combine(name, photos, metadata.operating_point), metadata.model_version, overlays)
        else:
            yield item_failure_record(name, NO_PHOTOS, "none of this item's photos could be read", metadata.model_version)
        for failure in failures.get(name, []):
            yield failure_record(failure, metadata.model_version, item=name)


def _explain(
    prediction: PhotoPrediction, metadata: ModelMetadata, options: ExplainOptions | None
) -> tuple[Path | None, PhotoFailure | None]:
    if options is None:
        return None, None
    if prediction.class_maps is None:
        return None, PhotoFailure(prediction.path, EXPLAIN_FAILED, "the model gave no class maps")
    from longteng.inference.explain import item_outlines, write_overlay

    try:
        overlay = write_overlay(
            prediction.path, prediction.decision, prediction.class_maps, metadata.class_names,
            metadata.preprocess, options, view=prediction.view, focus=metadata.focus,
            text_box=prediction.text_box, aligned_box=prediction.aligned_box, artwork_box=prediction.artwork_box,
            items=item_outlines(prediction),
        )
    except ImageLoadError as exc:
        return None, PhotoFailure(prediction.path, EXPLAIN_FAILED, f"cannot reload the photo ({exc.reason}: {exc.detail})")
    except (OSError, ConfigError) as exc:
        return None, PhotoFailure(prediction.path, EXPLAIN_FAILED, f"cannot write the heatmap ({exc})")
    return overlay, None
