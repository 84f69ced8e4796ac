"""Glance, then focus: where the product is, and the upright crop the focus stage classifies.

The glance stage sees the whole photo small and answers where the product is as a map on
its feature grid: an objectness per cell (the share of the cell the product covers) and
the product's "up" direction (towards its connector, camera or front). `box_from_maps`
turns that into an :class:`OrientedBox` by moments: centre = mean of the covered cells,
length and width from the variances along "up" and across it (a rectangle of length L has
variance L**2 / 12 along it), rescaled to the covered area. `focus_crop` then cuts the
box, grown by a margin, out of the decoded photo at the resolution it needs and turns it
upright, so print is legible and always reads the same way.

Torch-free: training, export's parity gate and the runtime all call these functions, so
the crop the model was trained on is the crop it sees in the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from longteng.errors import ConfigError, ImageLoadError
from longteng.imageio import DEFAULT_MAX_PIXELS, load_decoded
from longteng.preprocess import INTERPOLATIONS, PreprocessSpec, content_box, resize_to_input

# Cells whose objectness is below this are background noise, not a thin edge of the product.
_MIN_OBJECTNESS = 0.2
# Variance ratio above which the moments' long axis gives the angle (a 1:1.6 rectangle has 2.6).
_ELONGATED = 1.8
# The most items one photo's glance may report (data synth draws up to 12).
MAX_ITEMS = 12
# A connected region of the glance map smaller than this many cells' worth is noise, not an item.
_MIN_ITEM_CELLS = 1.0
# Cells at least this share of the map's surest are an item's core (relative, since how sure a
# glance gets depends on its training); tuned on the validation split of the opened-box
# training set of README, Opened boxes.
_ITEM_CORE = 0.8
_MIN_ITEM_SHARE = 0.25


@dataclass(frozen=True)
class FocusSpec:
    """The crop rule: everything that turns (photo, box) into the focus input."""

    input_size: int = 384  # the crop's side; the box's longer side (with margin) fills it
    margin: float = 0.12  # the box grows by this fraction of its size on each side
    # Photos are decoded once, at the smallest JPEG draft scale that keeps this short side,
    # so a product filling 40% of the frame still reaches `input_size` pixels undecimated.
    decode_short_side: int = 1200
    interpolation: str = "bicubic"
    # How many items the glance may find in one photo: 1 for a model trained on photos of one
    # item (the glance's whole map is that item), more for one trained on item boxes (each
    # connected region of the map is an item: an opened box of several).
    max_items: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.max_items, bool) or not isinstance(self.max_items, int) or not 1 <= self.max_items <= MAX_ITEMS:
            raise ConfigError(f"focus max_items must be a whole number from 1 to {MAX_ITEMS}, got {self.max_items!r}")
        if not 64 <= self.input_size <= 1024:
            raise ConfigError(f"focus input_size must be between 64 and 1024, got {self.input_size}")
        if not 0.0 <= self.margin <= 0.5:
            raise ConfigError(f"focus margin must lie in [0, 0.5], got {self.margin}")
        if self.decode_short_side < 64:
            raise ConfigError(f"focus decode_short_side must be at least 64, got {self.decode_short_side}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"focus interpolation {self.interpolation!r} unknown; allowed: {', '.join(INTERPOLATIONS)}")

    def to_json(self) -> str:
        data = asdict(self)
        if self.max_items == 1:  # models of one item read as they did before the field existed
            del data["max_items"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "FocusSpec":
        known = {"input_size", "margin", "decode_short_side", "interpolation", "max_items"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown focus keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("input_size", "decode_short_side", "max_items"):
            if key in values:
                values[key] = int(values[key])
        if "margin" in values:
            values["margin"] = float(values["margin"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "FocusSpec":
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class OrientedBox:
    """A product's box in photo pixels: centre, length along its "up" axis, width across it,
    and the direction of "up" as an angle (radians, image axes: x right, y down; 0 = up
    points to the top of the photo, positive = turned clockwise)."""

    cx: float
    cy: float
    length: float
    width: float
    angle: float

    @property
    def up(self) -> np.ndarray:
        return np.array([math.sin(self.angle), -math.cos(self.angle)])

    @property
    def right(self) -> np.ndarray:
        return np.array([math.cos(self.angle), math.sin(self.angle)])

    def corners(self) -> np.ndarray:
        """(4, 2): top-left, top-right, bottom-right, bottom-left of the item itself."""
        centre = np.array([self.cx, self.cy])
        half_up, half_right = self.up * self.length / 2, self.right * self.width / 2
        return np.stack(
            [centre + half_up - half_right, centre + half_up + half_right, centre - half_up + half_right, centre - half_up - half_right]
        )

    def scaled(self, factor: float) -> "OrientedBox":
        """The same box in an image resized by `factor`."""
        return OrientedBox(self.cx * factor, self.cy * factor, self.length * factor, self.width * factor, self.angle)

    def grown(self, margin: float) -> "OrientedBox":
        grow = 1 + 2 * margin
        return OrientedBox(self.cx, self.cy, self.length * grow, self.width * grow, self.angle)

    def to_list(self) -> list[float]:
        return [round(float(v), 3) for v in (self.cx, self.cy, self.length, self.width)] + [round(float(self.angle), 5)]

    @classmethod
    def from_quad(cls, quad: np.ndarray) -> "OrientedBox":
        """The box of a (4, 2) corner quad (TL, TR, BR, BL), e.g. the generator's."""
        quad = np.asarray(quad, dtype=np.float64)
        top, bottom = (quad[0] + quad[1]) / 2, (quad[2] + quad[3]) / 2
        left, right = (quad[0] + quad[3]) / 2, (quad[1] + quad[2]) / 2
        up = top - bottom
        centre = quad.mean(axis=0)
        return cls(
            float(centre[0]), float(centre[1]), float(np.linalg.norm(up)), float(np.linalg.norm(right - left)),
            math.atan2(float(up[0]), float(-up[1])),
        )


def parse_quad(text: str, size: tuple[int, int]) -> np.ndarray | None:
    """The manifest's optional `quad` column ('x0 y0 ... x3 y3', fractions of width and
    height) -> (4, 2) pixels of a photo of `size`; None when the column is empty."""
    if not text or not text.strip():
        return None
    values = [float(v) for v in text.split()]
    if len(values) != 8 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"quad needs 8 finite numbers, got {text!r}")
    return np.array(values, dtype=np.float64).reshape(4, 2) * np.array(size, dtype=np.float64)


def polygon_iou(a: np.ndarray, b: np.ndarray, resolution: int = 512) -> float:
    """Intersection over union of two polygons (k, 2), by rasterising both on one grid."""
    points = np.concatenate([a, b])
    low, high = points.min(axis=0), points.max(axis=0)
    scale = resolution / max(1e-9, float((high - low).max()))

    def mask(polygon: np.ndarray) -> np.ndarray:
        canvas = Image.new("1", (resolution + 2, resolution + 2))
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in (polygon - low) * scale + 1], fill=1)
        return np.asarray(canvas, dtype=bool)

    first, second = mask(a), mask(b)
    union = np.logical_or(first, second).sum()
    return float(np.logical_and(first, second).sum() / union) if union else 0.0


def iou_summary(ious) -> dict:
    """Localisation in numbers: how many boxes, their median and mean IoU, the share >= 0.7."""
    values = np.asarray(ious, dtype=np.float64)
    if not len(values):
        return {"n": 0, "median_iou": float("nan"), "mean_iou": float("nan"), "iou_at_least_0.7": float("nan")}
    return {
        "n": int(len(values)), "median_iou": float(np.median(values)), "mean_iou": float(values.mean()),
        "iou_at_least_0.7": float(np.mean(values >= 0.7)),
    }


# --------------------------------------------------------------------------- glance maps


@dataclass(frozen=True)
class GlanceFrame:
    """How the glance input sits on the decoded photo: letterbox scale and offset."""

    scale: float  # glance pixels per photo pixel
    offset_x: float
    offset_y: float

    @classmethod
    def of(cls, size: tuple[int, int], spec: PreprocessSpec) -> "GlanceFrame":
        if spec.resize_mode != "letterbox":
            raise ConfigError(f"the glance needs a letterboxed input, not resize_mode {spec.resize_mode!r}")
        left, top, _, _ = content_box(*size, spec)  # exactly where resize_to_input puts the photo
        return cls(spec.input_size / max(size), left, top)

    def to_photo(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x - self.offset_x) / self.scale, (y - self.offset_y) / self.scale

    def to_glance(self, points: np.ndarray) -> np.ndarray:
        return points * self.scale + np.array([self.offset_x, self.offset_y])


def box_from_maps(objectness: np.ndarray, up: np.ndarray, frame: GlanceFrame, input_size: int) -> OrientedBox | None:
    """Glance maps -> the product's box in photo pixels (None: nothing looks like a product).

    objectness (h, w) in [0, 1]; up (2, h, w): the predicted up vector (x, y) per cell.
    """
    weights = np.where(objectness >= _MIN_OBJECTNESS, objectness, 0.0).astype(np.float64)
    if weights.sum() < 1.0:  # less than one cell's worth of product
        return None
    return _box_of_weights(weights, up, frame, input_size)


def boxes_from_maps(
    objectness: np.ndarray, up: np.ndarray, frame: GlanceFrame, input_size: int, max_items: int
) -> list[OrientedBox]:
    """Glance maps -> every item's box, the largest first: each connected region of sure cells
    is one item, with the less sure cells around it. With ``max_items`` 1, the one-item rule
    (box_from_maps: the whole map is the product)."""
    if max_items == 1:
        box = box_from_maps(objectness, up, frame, input_size)
        return [] if box is None else [box]
    weights = np.where(objectness >= _MIN_OBJECTNESS, objectness, 0.0).astype(np.float64)
    # Items that touch share a rim of uncertain cells: the sure cores tell them apart, and
    # each core then takes the uncertain cells next to it, so that its box covers the item.
    labels = _grown(_connected_regions(objectness >= _ITEM_CORE * objectness.max()), weights > 0)
    regions = [np.where(labels == label, weights, 0.0) for label in range(1, int(labels.max()) + 1)]
    regions = sorted((r for r in regions if r.sum() >= _MIN_ITEM_CELLS), key=lambda r: -r.sum())[:max_items]
    # A box holds items of a size: a region far smaller than the largest is a piece of an item
    # whose core broke up, or a reflection, not an item of its own.
    regions = [r for r in regions if r.sum() >= _MIN_ITEM_SHARE * regions[0].sum()]
    return [_box_of_weights(region, up, frame, input_size) for region in regions]


_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _connected_regions(mask: np.ndarray) -> np.ndarray:
    """(h, w) int labels 1..n of the 4-connected regions of ``mask`` (0: background); 4, not 8:
    two items touching at a corner stay two."""
    labels = np.zeros(mask.shape, np.int32)
    height, width = mask.shape
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        stack = [start]
        while stack:
            y, x = stack.pop()
            for dy, dx in _NEIGHBOURS:
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = count
                    stack.append((ny, nx))
    return labels


def _grown(labels: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Labelled regions grown breadth-first, all at once, into the ``allowed`` cells next to
    them (a cell reached by two regions in the same step goes to the first in scan order)."""
    labels = labels.copy()
    height, width = labels.shape
    frontier = list(zip(*np.nonzero(labels)))
    while frontier:
        next_frontier = []
        for y, x in frontier:
            for dy, dx in _NEIGHBOURS:
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and allowed[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = labels[y, x]
                    next_frontier.append((ny, nx))
        frontier = next_frontier
    return labels


def _box_of_weights(weights: np.ndarray, up: np.ndarray, frame: GlanceFrame, input_size: int) -> OrientedBox:
    """The oriented box of one item's objectness weights (moments for the axes, area for the size)."""
    height, width = weights.shape
    cell = input_size / width
    total = weights.sum()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    xs, ys = (xs + 0.5) * cell, (ys + 0.5) * cell
    cx, cy = (weights * xs).sum() / total, (weights * ys).sum() / total
    direction = np.array([(weights * up[0]).sum(), (weights * up[1]).sum()])
    if np.linalg.norm(direction) < 1e-6:
        direction = np.array([0.0, -1.0])
    direction /= np.linalg.norm(direction)
    dx, dy = xs - cx, ys - cy
    # An elongated product's long axis is measured more precisely by the mask's moments than
    # by the regressed up vector, which only has to say which end of that axis is the top.
    covariance = np.array([[(weights * dx * dx).sum(), (weights * dx * dy).sum()],
                           [(weights * dx * dy).sum(), (weights * dy * dy).sum()]]) / total
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    minor, major = np.maximum(eigenvalues - cell * cell / 12, 1e-6)
    if major / minor >= _ELONGATED:
        axis = eigenvectors[:, 1]
        direction = axis if float(axis @ direction) >= 0 else -axis
    along = dx * direction[0] + dy * direction[1]
    across = dx * -direction[1] + dy * direction[0]
    # A map averaged over cells of side `cell` adds cell**2 / 12 of variance on every axis.
    blur = cell * cell / 12
    var_along = max((weights * along**2).sum() / total - blur, 1e-6)
    var_across = max((weights * across**2).sum() / total - blur, 1e-6)
    length, box_width = math.sqrt(12 * var_along), math.sqrt(12 * var_across)
    # Covered area is the sturdier measure of size; moments give the proportions.
    area = total * cell * cell
    fit = math.sqrt(area / (length * box_width))
    length, box_width = length * fit, box_width * fit
    angle = math.atan2(float(direction[0]), float(-direction[1]))
    centre_x, centre_y = frame.to_photo(np.array(cx), np.array(cy))
    return OrientedBox(float(centre_x), float(centre_y), length / frame.scale, box_width / frame.scale, angle)


def parse_item_quads(text: str, size: tuple[int, int]) -> list[np.ndarray]:
    """The manifest's optional `items` column (a JSON list of items, each with a `quad` as the
    quad column writes it) -> each item's (4, 2) corner pixels; [] when the column is empty.
    Raises ValueError on a malformed column."""
    if not text or not text.strip():
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"items is not JSON: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError("items must be a JSON list of objects")
    quads = [parse_quad(str(item.get("quad", "")), size) for item in items]
    if any(quad is None for quad in quads):
        raise ValueError("every item needs a quad")
    return quads  # type: ignore[return-value]


def objectness_target(quad_glance: np.ndarray, grid: tuple[int, int], input_size: int, supersample: int = 4) -> np.ndarray:
    """(h, w) share of each glance cell that the product's quad (in glance pixels) covers."""
    height, width = grid
    scale = supersample * width / input_size
    canvas = Image.new("L", (width * supersample, height * supersample))
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in quad_glance * scale], fill=255)
    fine = np.asarray(canvas, dtype=np.float32) / 255
    return fine.reshape(height, supersample, width, supersample).mean(axis=(1, 3))


# --------------------------------------------------------------------------- decoding and cropping


@dataclass(frozen=True)
class DecodedPhoto:
    """A photo decoded once for both stages; `scale` = decoded pixels per original pixel."""

    image: Image.Image
    original_size: tuple[int, int]

    @property
    def scale(self) -> float:
        return self.image.width / self.original_size[0]


def decode_for_focus(path: Path | str, spec: FocusSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedPhoto:
    image, original_size = load_decoded(path, min_short_side=spec.decode_short_side, max_pixels=max_pixels)
    return DecodedPhoto(image, original_size)


def glance_pixels(photo: DecodedPhoto, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (S, S, 3): the whole photo letterboxed for the glance stage."""
    return resize_to_input(photo.image, spec)


def focus_crop(image: Image.Image, box: OrientedBox | None, spec: FocusSpec, pad_color: tuple[int, int, int]) -> np.ndarray:
    """uint8 (S, S, 3): the box (grown by the margin) upright, its longer side filling S.

    Without a box the whole photo is letterboxed, so a photo the glance found nothing in
    still gets a verdict (and the unknown-object score has its say).
    """
    size = spec.input_size
    resample = INTERPOLATIONS[spec.interpolation]
    if box is None:
        return resize_to_input(image, PreprocessSpec(input_size=size, interpolation=spec.interpolation))
    grown = box.grown(spec.margin)
    scale = size / max(grown.length, grown.width, 1e-6)
    # Shrink the neighbourhood of the box with an antialiasing resize first, then turn it
    # at 1:1: an affine warp alone would alias fine print when it shrinks.
    corners = grown.corners()
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    region = _crop_padded(image, (int(x0), int(y0), int(x1), int(y1)), pad_color)
    if scale < 1.0:
        target = (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
        region = region.resize(target, resample, reducing_gap=3.0)
        factor_x, factor_y = region.width / (x1 - x0), region.height / (y1 - y0)
    else:
        factor_x = factor_y = 1.0
    # Output pixel (u, v) -> region pixel: centre + (u - S/2)/scale * right + (S/2 - v)/scale * up.
    centre = np.array([(grown.cx - x0) * factor_x, (grown.cy - y0) * factor_y])
    right, up = grown.right * np.array([factor_x, factor_y]), grown.up * np.array([factor_x, factor_y])
    step = 1.0 / scale
    a, b = right[0] * step, -up[0] * step
    d, e = right[1] * step, -up[1] * step
    c = centre[0] - (a + b) * size / 2
    f = centre[1] - (d + e) * size / 2
    # Pillow samples at pixel centres: shift by half a pixel on both sides.
    c += (a + b) * 0.5 - 0.5
    f += (d + e) * 0.5 - 0.5
    crop = region.transform((size, size), Image.Transform.AFFINE, (a, b, c, d, e, f), resample, fillcolor=pad_color)
    pixels = np.array(crop, dtype=np.uint8)
    # Only the grown box is evidence: what the turn brought in beyond it depends on the
    # angle, a nuisance the classifier should never have to learn.
    half_w, half_h = grown.width * scale / 2, grown.length * scale / 2
    columns = np.abs(np.arange(size) + 0.5 - size / 2) > half_w
    rows = np.abs(np.arange(size) + 0.5 - size / 2) > half_h
    pixels[:, columns] = pad_color
    pixels[rows, :] = pad_color
    return pixels


def focus_to_photo(box: OrientedBox, spec: FocusSpec, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Focus-crop pixel coordinates -> photo pixel coordinates (the inverse of focus_crop)."""
    grown = box.grown(spec.margin)
    step = max(grown.length, grown.width, 1e-6) / spec.input_size
    du, dv = (u - spec.input_size / 2) * step, (spec.input_size / 2 - v) * step
    x = grown.cx + du * grown.right[0] + dv * grown.up[0]
    y = grown.cy + du * grown.right[1] + dv * grown.up[1]
    return x, y


def _crop_padded(image: Image.Image, box: tuple[int, int, int, int], pad_color: tuple[int, int, int]) -> Image.Image:
    x0, y0, x1, y1 = box
    if x0 >= 0 and y0 >= 0 and x1 <= image.width and y1 <= image.height:
        return image.crop(box)
    canvas = Image.new("RGB", (x1 - x0, y1 - y0), pad_color)
    inner = image.crop((max(0, x0), max(0, y0), min(image.width, x1), min(image.height, y1)))
    canvas.paste(inner, (max(0, x0) - x0, max(0, y0) - y0))
    return canvas


def load_focus_inputs(
    path: Path | str, glance_spec: PreprocessSpec, focus_spec: FocusSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[DecodedPhoto, np.ndarray]:
    """Decode once; the glance input comes with the decoded photo for the crop to follow."""
    photo = decode_for_focus(path, focus_spec, max_pixels=max_pixels)
    return photo, glance_pixels(photo, glance_spec)


__all__ = [
    "DecodedPhoto", "FocusSpec", "GlanceFrame", "ImageLoadError", "OrientedBox", "box_from_maps",
    "boxes_from_maps", "decode_for_focus", "focus_crop", "focus_to_photo", "glance_pixels", "load_focus_inputs",
    "iou_summary", "objectness_target", "parse_item_quads", "parse_quad", "polygon_iou",
]
