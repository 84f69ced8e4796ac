"""Does the heatmap point at the tell? Measured where a dataset marks its tells (`evidence`).

For every counterfeit photo with a box (`quad`) and an evidence mask, the counterfeit-minus-
genuine class map of the photo's true product (what an officer's heatmap shows for a
COUNTERFEIT or REFER verdict) is taken at its strongest cell; the photo is a hit when that
cell, mapped back through the focus crop onto the photo, covers part of a marked tell. The
chance level is the share of the item's cells that would be hits, averaged the same way: a
heatmap that knows nothing about the tells scores about that. Torch-free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from longteng.data.evidence import parse_evidence
from longteng.data.layout import Record, class_name
from longteng.focus import FocusSpec, OrientedBox, parse_quad
from longteng.training.focus_data import evidence_target


def pointing_report(
    records: Sequence[Record], class_maps: np.ndarray, boxes: Sequence[OrientedBox | None],
    sizes: Sequence[tuple[int, int]], class_names: Sequence[str], focus: FocusSpec,
) -> dict[str, Any] | None:
    """`boxes`: where each focus crop was cut, in pixels of a photo of `sizes[i]` (the frame the
    manifest's quad is read in). None when no photo has both a box and marked evidence."""
    index = {name: i for i, name in enumerate(class_names)}
    hits: list[bool] = []
    chances: list[float] = []
    by_tell: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for record, maps, box, size in zip(records, class_maps, boxes, sizes):
        if not record.is_counterfeit or box is None:
            continue
        try:
            mask = parse_evidence(record.extra.get("evidence", ""))
            quad = parse_quad(record.extra.get("quad", ""), size)
        except ValueError:
            continue
        fake, real = index.get(class_name(record.product, "counterfeit")), index.get(class_name(record.product, "genuine"))
        if mask is None or quad is None or fake is None or real is None:
            continue
        heat = maps[fake] - maps[real]
        on_tell = _cells_on_evidence(mask, quad, box, focus, heat.shape)
        on_item = _cells_on_evidence(np.ones_like(mask), quad, box, focus, heat.shape)
        if not on_item.any():
            continue
        peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
        hit = bool(on_tell[peak])
        chance = float(on_tell[on_item].mean())
        hits.append(hit)
        chances.append(chance)
        for tell in record.tells():
            by_tell[tell].append((hit, chance))
    if not hits:
        return None
    return {
        "n": len(hits),
        "peak_on_tell": float(np.mean(hits)),
        "chance": float(np.mean(chances)),
        "by_tell": {
            tell: {"n": len(rows), "peak_on_tell": float(np.mean([h for h, _ in rows])), "chance": float(np.mean([c for _, c in rows]))}
            for tell, rows in sorted(by_tell.items())
        },
    }


def _cells_on_evidence(mask: np.ndarray, quad: np.ndarray, box: OrientedBox, focus: FocusSpec,
                       grid: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: which cells of a class map over the focus crop cover marked evidence."""
    return evidence_target(mask, quad, box, focus, grid) > 0
