"""Probe: does an aligned comparison with genuine references see the tells?

Crops each photo at its box (the generator's quad), registers the crop onto its product's
genuine template (ECC on gradient magnitude, so colourways of either polarity align), and
compares the aligned crop with its K nearest genuine references of other cases, pixel by
pixel (per-pixel mean and spread over the neighbours: PaDiM on pixels, the spread learnt per
place so a serial number or a rotor's angle does not count). Prints each difference
statistic's ROC-AUC on the test seed, and a logistic regression of them fitted on the
training seed.

    python bench/aligned_probe.py --train /tmp/dev/train --test /tmp/dev/test --cache /tmp/aligned
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from longteng.data.layout import parse_tells, scan_dataset
from longteng.focus import FocusSpec, OrientedBox, decode_for_focus, focus_crop, parse_quad
from longteng.training.metrics import recall_at_false_alarm_rate, roc_auc


def crop_of(root: Path, record, spec: FocusSpec) -> tuple[np.ndarray, float]:
    photo = decode_for_focus(root / record.path, spec)
    box = OrientedBox.from_quad(parse_quad(record.extra["quad"], photo.original_size) * photo.scale)
    return focus_crop(photo.image, box, spec, (0, 0, 0)), box.width / box.length


def edges(gray: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(np.sqrt(gx * gx + gy * gy), (0, 0), 1.5)


def gray_edges(rgb: np.ndarray) -> np.ndarray:
    return edges(cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32))


def register(moving: np.ndarray, template_edges: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """moving (S, S, 3) uint8 -> warped onto the template frame, ECC correlation, warp."""
    best = (moving, -1.0, np.eye(2, 3, dtype=np.float32))
    for flip in (False, True):  # the glance's "up" may point the other way
        image = moving[::-1, ::-1].copy() if flip else moving
        try:
            cc, warp = cv2.findTransformECC(
                template_edges, gray_edges(image), np.eye(2, 3, dtype=np.float32), cv2.MOTION_AFFINE,
                (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-4), None, 1,
            )
        except cv2.error:
            continue
        if cc > best[1]:
            size = template_edges.shape[::-1]
            warped = cv2.warpAffine(image, warp, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            best = (warped, float(cc), warp)
    return best


def align_all(args, spec: FocusSpec) -> dict:
    """Aligned crops of every photo of both seeds, cached: the slow part."""
    cache = args.cache / f"aligned-{args.size}.npz"
    if cache.is_file():
        return dict(np.load(cache, allow_pickle=True))
    started = time.perf_counter()
    rows = [("train", r) for r in scan_dataset(args.train)] + [("test", r) for r in scan_dataset(args.test)]
    crops, aspects = [], []
    for seed, record in rows:
        crop, aspect = crop_of(args.train if seed == "train" else args.test, record, spec)
        crops.append(crop)
        aspects.append(aspect)
    print(f"{len(crops)} crops in {time.perf_counter() - started:.0f} s", flush=True)
    products = np.array([r.product for _, r in rows])
    is_reference = np.array([s == "train" and r.split == "train" and r.authenticity == "genuine" for s, r in rows])
    aligned = np.zeros((len(rows), args.size, args.size, 3), np.uint8)
    cc = np.zeros(len(rows), np.float32)
    warps = np.zeros((len(rows), 2, 3), np.float32)
    templates = {}
    for product in sorted(set(products)):
        refs = np.flatnonzero((products == product) & is_reference)
        template = np.mean([gray_edges(crops[i]) for i in refs], axis=0)
        for _ in range(2):
            template = np.mean([gray_edges(register(crops[i], template)[0]) for i in refs], axis=0)
        templates[product] = template
        for i in np.flatnonzero(products == product):
            aligned[i], cc[i], warps[i] = register(crops[i], template)
    print(f"aligned in {time.perf_counter() - started:.0f} s", flush=True)
    data = {
        "aligned": aligned, "cc": cc, "warps": warps, "aspect": np.array(aspects, np.float32),
        "products": products, "seeds": np.array([s for s, _ in rows]), "splits": np.array([r.split for _, r in rows]),
        "cases": np.array([f"{s}/{r.case_id}" for s, r in rows]),
        "counterfeit": np.array([r.authenticity == "counterfeit" for _, r in rows]),
        "tells": np.array([r.extra.get("tells", "") for _, r in rows]), "is_reference": is_reference,
    }
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def match_photometry(image: np.ndarray, mean: np.ndarray, weight0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel gain and offset that bring `image` onto `mean` where the references agree,
    refitted without the pixels that disagree most (glare, a tell, packing)."""
    out, gains = np.empty_like(image), np.ones(3)
    for c in range(3):
        x, m = image[..., c].ravel(), mean[..., c].ravel()
        weight = weight0[..., c].ravel()
        for _ in range(3):
            sw = weight.sum()
            mx, mm = (weight * x).sum() / sw, (weight * m).sum() / sw
            var = (weight * (x - mx) ** 2).sum() / sw
            gain = float(np.clip((weight * (x - mx) * (m - mm)).sum() / sw / max(var, 1e-6), 0.5, 2.0))
            offset = mm - gain * mx
            residual = np.abs(gain * x + offset - m)
            weight = np.where(residual > np.percentile(residual[weight > 0], 80), 0.0, weight0[..., c].ravel())
        out[..., c] = gain * image[..., c] + offset
        gains[c] = gain
    return out, gains


FEATURES = (
    "z_median", "z_mean", "z_p99", "z_p999", "frac_z3", "frac_z6", "content_p99", "content_mean",
    "edge_p99", "edge_mean", "cc", "aspect_change", "gain_rg", "gain_bg", "raw_colour",
    "kept_z_p99", "kept_z_mean", "kept_edge_p99", "kept_edge_mean", "dropped_frac",
    "norm_edge_p99", "norm_edge_top1", "norm_kept_p99", "norm_kept_top1", "norm_kept_p999",
)


def inner_anomalies(z: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """Interior pixels outside every anomalous blob that reaches the item's outline: packing
    material and shadows come in over an edge, most tells sit inside."""
    anomalous = ((z > 2.5) & interior).astype(np.uint8)
    count, labels = cv2.connectedComponents(anomalous, connectivity=8)
    band = interior & ~cv2.erode(interior.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    touching = np.unique(labels[band & (anomalous > 0)])
    dropped = np.isin(labels, touching[touching > 0])
    return interior & ~dropped


def features_of(data: dict, args) -> np.ndarray:
    size = args.size
    grid = (np.arange(size) + 0.5 - size / 2) / (size / 2)
    out = np.zeros((len(data["aligned"]), len(FEATURES)), np.float32)
    small = np.stack([cv2.resize(a, (24, 24), interpolation=cv2.INTER_AREA) for a in data["aligned"]]).reshape(len(out), -1).astype(np.float32)
    for product in sorted(set(data["products"])):
        refs = np.flatnonzero((data["products"] == product) & data["is_reference"])
        aspect = float(np.median(data["aspect"][refs]))
        interior = (np.abs(grid)[:, None] < 0.92 / 1.24) & (np.abs(grid)[None, :] < 0.92 * aspect / 1.24)
        ref_edges = np.stack([gray_edges(data["aligned"][i]) for i in refs])
        ref_pixels = data["aligned"][refs].astype(np.float32)
        template_edges = ref_edges.mean(axis=0)
        content = interior & (template_edges > np.percentile(template_edges[interior], 80))
        ref_aspect = np.array([np.linalg.norm(data["warps"][i][:, 0]) / np.linalg.norm(data["warps"][i][:, 1]) for i in refs])
        for i in np.flatnonzero(data["products"] == product):
            allowed = refs[data["cases"][refs] != data["cases"][i]]
            distance = ((small[allowed] - small[i]) ** 2).sum(axis=1)
            nearest_pos = np.argsort(distance)[: args.neighbours]
            nearest = allowed[nearest_pos]
            index = np.searchsorted(refs, nearest)
            mean, spread = ref_pixels[index].mean(axis=0), ref_pixels[index].std(axis=0)
            weight0 = interior[..., None] / (spread + 6.0) ** 2
            pixels, gains = match_photometry(data["aligned"][i].astype(np.float32), mean, weight0)
            z = cv2.GaussianBlur((np.abs(pixels - mean) / (spread + 6.0)).max(axis=2), (0, 0), 2.0)
            e = gray_edges(data["aligned"][i])
            ez = cv2.GaussianBlur(np.abs(e - ref_edges[index].mean(axis=0)) / (ref_edges[index].std(axis=0) + 4.0), (0, 0), 2.0)
            zi, ei = z[interior], ez[interior]
            warp = data["warps"][i]
            change = np.linalg.norm(warp[:, 0]) / np.linalg.norm(warp[:, 1]) / np.median(ref_aspect)
            raw = np.abs(data["aligned"][i].astype(np.float32) - mean)[interior].mean()
            ref_mean_edges = ref_edges[index].mean(axis=0)
            e_norm = e * (ref_mean_edges[interior].mean() / max(e[interior].mean(), 1e-3))
            nz = cv2.GaussianBlur(np.abs(e_norm - ref_mean_edges) / (ref_edges[index].std(axis=0) + 4.0), (0, 0), 2.0)
            kept = inner_anomalies(np.maximum(z, ez), interior)
            nk = np.sort(nz[kept])[::-1]
            ni = np.sort(nz[interior])[::-1]
            kz, ke = z[kept], ez[kept]
            out[i] = (
                np.median(zi), zi.mean(), np.percentile(zi, 99), np.percentile(zi, 99.9), (zi > 3).mean(), (zi > 6).mean(),
                np.percentile(z[content], 99), z[content].mean(), np.percentile(ei, 99), ei.mean(), -data["cc"][i],
                abs(np.log(change)), abs(np.log(gains[0] / gains[1])), abs(np.log(gains[2] / gains[1])), raw,
                np.percentile(kz, 99), kz.mean(), np.percentile(ke, 99), ke.mean(), 1 - kept.sum() / interior.sum(),
                ni[len(ni) // 100], ni[: len(ni) // 100].mean(), nk[len(nk) // 100], nk[: len(nk) // 100].mean(), nk[len(nk) // 1000],
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--neighbours", type=int, default=16)
    args = parser.parse_args()
    spec = FocusSpec(input_size=args.size)
    data = align_all(args, spec)
    started = time.perf_counter()
    x = features_of(data, args)
    print(f"features in {time.perf_counter() - started:.0f} s", flush=True)
    np.save(args.cache / f"features-{args.size}.npy", x)
    test = data["seeds"] == "test"
    fit = (data["seeds"] == "train") & (data["splits"] != "test")
    y = data["counterfeit"]
    report = {name: round(roc_auc(x[test, k], y[test]), 3) for k, name in enumerate(FEATURES)}
    mu, sd = x[fit].mean(axis=0), x[fit].std(axis=0) + 1e-6
    xs = (x - mu) / sd
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(3000):  # plain logistic regression by gradient descent, L2 0.01
        p = 1 / (1 + np.exp(-(xs[fit] @ w + b)))
        w -= 0.1 * (xs[fit].T @ (p - y[fit]) / fit.sum() + 0.01 * w)
        b -= 0.1 * (p - y[fit]).mean()
    score = xs @ w + b
    report["logistic"] = {
        "roc_auc": round(roc_auc(score[test], y[test]), 3),
        "recall_at_fa_0.02": round(recall_at_false_alarm_rate(score[test], y[test], 0.02), 3),
        "weights": {name: round(float(v), 2) for name, v in zip(FEATURES, w)},
    }
    genuine_scores = np.sort(score[test & ~y])[::-1]
    threshold = genuine_scores[int(0.02 * len(genuine_scores))]
    per_tell = defaultdict(list)
    for s, tells in zip(score[test & y], data["tells"][test & y]):
        for tell in parse_tells(str(tells)):
            per_tell[tell].append(s > threshold)
    report["per_tell"] = {t: round(float(np.mean(v)), 3) for t, v in sorted(per_tell.items())}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
