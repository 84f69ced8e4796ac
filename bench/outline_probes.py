"""Two probes of checks on the item's outline against genuine references, both negative (README,
Measured: why the classifier plateaus). Not a test, and neither check is shipped.

    .venv/bin/python bench/outline_probes.py --model bench/results/quality_bar/medium-1600-run/model.onnx \\
        --test bench/results/quality_bar/medium-1600-test

* ``interior``: the aligned check alone (its shipped weights) at FA 0.02 on the test seed, with
  the share of the item it compares (aligned_check._INTERIOR) at the shipped 0.92 and widened to
  1.02, so that print and parts at the item's ends (a USB drive's contacts) no longer touch the
  edge of what is compared, where the check drops every anomaly as packing coming in.
* ``silhouette``: the share of the outline's 16 sectors where the photo's shell colour reaches
  beyond the references' outline (the filled outline of their mean edge map, after the aligned
  check's registration) or falls short of it; per product, the 98th percentile over genuine
  photos against the counterfeits that carry proportions alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from longteng.data.layout import scan_dataset
from longteng.inference import aligned_check
from longteng.inference.session import OnnxModel, RuntimeOptions
from longteng.inference.two_stage import outputs_for_paths
from longteng.training.metrics import recall_at_false_alarm_rate

FAR = 0.02
_SECTORS = 16


def aligned_alone(check, products: list[str], crops: np.ndarray, interior: float) -> np.ndarray:
    shipped = aligned_check._INTERIOR
    aligned_check._INTERIOR = interior  # a probe of the constant, restored below
    try:
        scores, _ = aligned_check.aligned_scores(check, products, crops)
    finally:
        aligned_check._INTERIOR = shipped
    # No say (the crop did not register) ranks below every score.
    return np.where(np.isnan(scores), np.nanmin(scores) - 1.0, scores)


def silhouette_change(check, product: str, crop: np.ndarray) -> float | None:
    """The median over the outline's sectors of the share of its band whose shell membership
    differs from the references' outline (grown beyond it or fallen short of it)."""
    import cv2

    references = check.products[product]
    size = check.size
    registered = aligned_check.register(aligned_check.shrink(crop, size), references.template)
    pixels = registered.pixels.astype(np.float32)
    template = references.template
    ring = (template > 0.3 * template.max()).astype(np.uint8)
    contours, _ = cv2.findContours(ring, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    filled = np.zeros((size, size), np.uint8)
    cv2.drawContours(filled, [max(contours, key=cv2.contourArea)], -1, 1, -1)
    item = cv2.erode(filled, np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    inner = cv2.erode(item.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    if inner.sum() < 50:
        return None
    shell = np.median(pixels[inner], axis=0)
    tolerance = max(18.0, float(np.percentile(np.abs(pixels[inner] - shell).max(axis=-1), 75)) * 1.5)
    shell_like = np.abs(cv2.GaussianBlur(pixels, (0, 0), 1.0) - shell).max(axis=-1) < tolerance
    outside = cv2.distanceTransform((~item).astype(np.uint8), cv2.DIST_L2, 3)
    inside = cv2.distanceTransform(item.astype(np.uint8), cv2.DIST_L2, 3)
    band_out, band_in = (outside > 2.5) & (outside < 9), (inside > 2.5) & (inside < 9)
    changed = (band_out & shell_like) | (band_in & ~shell_like)
    rows, cols = np.mgrid[:size, :size]
    sector = ((np.arctan2(rows - size / 2, cols - size / 2) + np.pi) / (2 * np.pi) * _SECTORS).astype(int) % _SECTORS
    band = band_out | band_in
    shares = [changed[(sector == k) & band].mean() for k in range(_SECTORS) if ((sector == k) & band).any()]
    return float(np.median(shares)) if shares else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench/results/outline_probes.json"))
    args = parser.parse_args()

    model = OnnxModel(args.model, RuntimeOptions(device="cpu"))
    check = model.metadata.aligned_check
    records = scan_dataset(args.test)
    found = outputs_for_paths(model, [args.test / r.path for r in records], ("probabilities",), keep_crops=True)
    records = [records[k] for k in found.kept]
    crops = np.stack(found.crops)
    products = [r.product for r in records]  # the true product: a probe of the check, not of the classifier
    counterfeit = np.array([r.authenticity == "counterfeit" for r in records])
    result: dict = {"model": str(args.model), "test": str(args.test), "interior": {}, "silhouette": {}}
    for interior in (0.92, 1.02):
        scores = aligned_alone(check, products, crops, interior)
        result["interior"][str(interior)] = {"recall_at_far_0.02": recall_at_false_alarm_rate(scores, counterfeit, FAR)}
        print(f"aligned check alone, interior {interior}: recall at FA 0.02 {result['interior'][str(interior)]['recall_at_far_0.02']:.3f}")
    change = np.array([np.nan if (c := silhouette_change(check, p, crop)) is None else c for p, crop in zip(products, crops)])
    for product in sorted(set(products)):
        mine = np.array([p == product for p in products]) & np.isfinite(change)
        genuine = change[mine & ~counterfeit]
        proportions = change[mine & np.array([r.extra.get("tells", "").split(":")[0] == "proportions" and ";" not in r.extra.get("tells", "")
                                              for r in records])]
        limit = float(np.percentile(genuine, 100 * (1 - FAR)))
        entry = {"genuine": len(genuine), "genuine_p98": limit, "proportions_alone": len(proportions),
                 "proportions_above": float((proportions > limit).mean()) if len(proportions) else None}
        result["silhouette"][product] = entry
        print(f"silhouette, {product}: {json.dumps(entry)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
