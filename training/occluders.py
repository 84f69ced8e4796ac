"""Training crops with packing over part of the item, as an opened box shows it.

On the test seed the genuine photos the model suspected most were nearly all items partly
covered by packing (bubble sheet, kraft paper, tape: README, "Packing over the item"): a
covered logo or mark looks to the classifier like one that is missing. This view teaches it
that a layer over the item is not a tell. The layer is cut from the same photo outside the
item (the box's own lining and packing, so nothing about the generator's occluders is
assumed), enters the item from one of its edges, and is either opaque or a translucent film.

On a counterfeit the layer never touches the marked evidence (the manifest's optional
`evidence` column), so the label stays true: the tell is still in view. Without evidence
the layer is placed anyway; it covers at most `COVERAGE[1]` of the item, from an edge, and
most tells leave some of themselves in view.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from longteng.focus import FocusSpec, OrientedBox

# Share of the item's area the layer covers: drawn uniformly in this range.
COVERAGE = (0.04, 0.18)
# Share of layers that are a translucent film (plastic, bubble wrap) rather than opaque.
TRANSLUCENT = 0.4
_ATTEMPTS = 24


def _photo_pixels_per_crop_pixel(box: OrientedBox, spec: FocusSpec) -> float:
    grown = box.grown(spec.margin)
    return max(grown.length, grown.width, 1e-6) / spec.input_size


def item_rectangle(box: OrientedBox, spec: FocusSpec) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the item itself in the focus crop cut at ``box``."""
    step = _photo_pixels_per_crop_pixel(box, spec)
    half_w, half_l = box.width / 2 / step, box.length / 2 / step
    centre = spec.input_size / 2
    return centre - half_w, centre - half_l, centre + half_w, centre + half_l


def _unit_polygon(rng: np.random.Generator) -> np.ndarray:
    """(n, 2): an irregular piece of radius at most 1 about the origin."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(5, 12))))
    radii = rng.uniform(0.6, 1.0, len(angles))
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _layer(shape: np.ndarray, centre: np.ndarray, radius: float, size: int) -> Image.Image:
    mask = Image.new("L", (size, size))
    ImageDraw.Draw(mask).polygon([tuple(p) for p in (centre + radius * shape).tolist()], fill=255)
    return mask


def _texture(image: Image.Image, box: OrientedBox, spec: FocusSpec, side: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (side, side, 3): a piece of the photo beside the item, at the crop's scale; a
    muted shade with noise when the photo has no room beside the item."""
    grown = box.grown(spec.margin)
    extent = max(4, int(side * _photo_pixels_per_crop_pixel(box, spec)))  # the piece's side in photo pixels
    corners = grown.corners()
    x_min, y_min = corners.min(axis=0)
    x_max, y_max = corners.max(axis=0)
    for _ in range(_ATTEMPTS):
        x0 = int(rng.integers(0, max(1, image.width - extent)))
        y0 = int(rng.integers(0, max(1, image.height - extent)))
        x1, y1 = x0 + extent, y0 + extent
        beside = x1 < x_min or x0 > x_max or y1 < y_min or y0 > y_max
        if beside and x1 <= image.width and y1 <= image.height:
            piece = image.crop((x0, y0, x1, y1)).resize((side, side), Image.Resampling.BILINEAR)
            return np.rot90(np.asarray(piece.convert("RGB")), int(rng.integers(4))).astype(np.uint8)
    shade = rng.uniform(90, 220) * rng.uniform(0.85, 1.15, 3)
    return np.clip(shade + rng.normal(0, 6, (side, side, 3)), 0, 255).astype(np.uint8)


def occluded_view(
    crop: np.ndarray, image: Image.Image, box: OrientedBox, spec: FocusSpec, evidence: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """uint8 (S, S, 3): ``crop`` (cut at ``box`` from ``image``) with a layer over part of the
    item; ``evidence`` is a (S, S) bool mask of the crop that the layer must not touch (None:
    nothing marked). The crop unchanged when no placement keeps clear of the evidence."""
    size = crop.shape[0]
    left, top, right, bottom = item_rectangle(box, spec)
    item = np.zeros((size, size), dtype=bool)
    item[max(0, int(top)) : min(size, int(bottom)), max(0, int(left)) : min(size, int(right))] = True
    item_area = max(1, int(item.sum()))
    corners = np.array([(left, top), (right, top), (right, bottom), (left, bottom)])
    centre_of_item = corners.mean(axis=0)
    for _ in range(_ATTEMPTS):
        target = rng.uniform(*COVERAGE)
        edge = int(rng.integers(4))
        anchor = corners[edge] + (corners[(edge + 1) % 4] - corners[edge]) * rng.uniform(0.1, 0.9)
        outward = anchor - centre_of_item
        outward /= max(1e-6, float(np.linalg.norm(outward)))
        shape, depth = _unit_polygon(rng), rng.uniform(-0.5, 0.2)  # how far in from the edge
        radius = math.sqrt(target * item_area / math.pi)
        for step in range(3):  # grow or shrink the piece towards the target coverage
            if step:
                radius *= math.sqrt(target / max(coverage, 0.2 * target))
            centre = anchor + outward * radius * depth
            mask_image = _layer(shape, centre, radius, size)
            layer = np.asarray(mask_image) > 0
            coverage = float((layer & item).sum()) / item_area
        if not 0.6 * target <= coverage <= 1.4 * target:
            continue
        if evidence is not None and (layer & evidence).any():
            continue
        alpha = np.asarray(mask_image.filter(ImageFilter.GaussianBlur(1.0)), np.float32)[..., None] / 255
        x0, y0 = (int(max(0, math.floor(centre[i] - radius))) for i in (0, 1))
        x1, y1 = (int(min(size, math.ceil(centre[i] + radius))) for i in (0, 1))
        texture = crop.astype(np.float32)
        if x1 > x0 and y1 > y0:
            side = max(x1 - x0, y1 - y0)
            texture[y0:y1, x0:x1] = _texture(image, box, spec, side, rng)[: y1 - y0, : x1 - x0]
        if rng.random() < TRANSLUCENT:
            film = rng.uniform(200, 245)
            texture = 0.5 * texture + 0.5 * film
            alpha *= rng.uniform(0.35, 0.65)
        mixed = crop.astype(np.float32) * (1 - alpha) + texture * alpha
        return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return crop
