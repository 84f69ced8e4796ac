"""Heatmap overlays: which regions of a photo drove its verdict. numpy and Pillow only.

The model exports ``class_maps`` (C, h, w): the classification head applied at every position
of the last feature map (their spatial mean is the logits), so a heatmap costs no extra pass.

* **Which map.** The evidence for the verdict over its alternative, for the photo's product:
  COUNTERFEIT shows ``<product>/counterfeit`` minus ``<product>/genuine``, GENUINE the reverse,
  and REFER the counterfeit evidence (where an expert should look first). A raw class map
  would mostly light up "this is a drone", which genuine and counterfeit drones share. For
  GENUINE and COUNTERFEIT only positive evidence is shown (negative values are clipped),
  scaled so the strongest region of the photo is 1; since the map's mean is the verdict's
  winning logit margin, some region is always positive. For REFER the evidence is relative
  (weakest region 0, strongest 1): where the photo looks most counterfeit, even if nowhere
  does outright; a flat map gets no colour.
* **Geometry.** The model saw the photo letterboxed into an S x S square. The padded bands are
  cropped from the map and the rest is stretched bilinearly over the upright photo (EXIF
  orientation applied, as the model saw it), at the photo's own size.
* **Blend.** A perceptual colour map (dark blue -> red -> yellow), blended with an opacity that
  grows with the heat, so regions without evidence keep the photo's own pixels.

Files are named ``<stem>-<8 hex>.<jpg|png>``: the stem reduced to ``[A-Za-z0-9._-]`` (safe on
any file system), the hex a hash of the input's absolute path (unique per input, stable
between runs).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from longteng.data.layout import split_class_name
from longteng.decision import COUNTERFEIT, GENUINE, REFER, Decision, is_counterfeit_class
from longteng.errors import ConfigError
from longteng.imageio import DEFAULT_MAX_PIXELS, load_decoded, load_image
from longteng.preprocess import PreprocessSpec, content_box

if TYPE_CHECKING:
    from longteng.focus import FocusSpec, OrientedBox
    from longteng.inference.two_stage import FocusView

FORMATS = {"jpg": "JPEG", "png": "PNG"}
TEXT_BOX_COLOUR = (255, 40, 40)
ALIGNED_BOX_COLOUR = (230, 40, 230)
ARTWORK_BOX_COLOUR = (40, 200, 255)
# Each item's box in a photo of several, by its verdict.
VERDICT_COLOURS = {GENUINE: (60, 220, 90), REFER: (255, 190, 40), COUNTERFEIT: (255, 40, 40)}
# Anchor colours of the heat scale from 0 (no evidence) to 1 (strongest), roughly "inferno"
# with the dark end lifted so low heat still reads as a colour on a dark photo.
_ANCHORS = np.array(
    [
        [0.00, 30, 20, 90],
        [0.25, 110, 30, 140],
        [0.50, 200, 50, 90],
        [0.75, 245, 130, 30],
        [1.00, 255, 240, 80],
    ]
)
_STEM_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 60


@dataclass(frozen=True)
class ExplainOptions:
    out_dir: Path
    image_format: str = "jpg"
    opacity: float = 0.6  # of the colour at full heat
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Longest side of the overlay (None: the photo's own size). A phone page needs no 12 MP
    # overlay: the station draws 1600 px, decoding the JPEG at a reduced scale for it.
    max_side: int | None = None

    def __post_init__(self) -> None:
        if self.max_side is not None and self.max_side < 64:
            raise ConfigError(f"heatmap max side must be at least 64, got {self.max_side}")
        if self.image_format not in FORMATS:
            raise ConfigError(f"heatmap format {self.image_format!r} unknown; allowed: {', '.join(FORMATS)}")
        if not 0.0 < self.opacity <= 1.0:
            raise ConfigError(f"heatmap opacity must be within (0, 1], got {self.opacity}")


def write_overlay(
    path: Path,
    decision: Decision,
    class_maps: np.ndarray,
    class_names: Sequence[str],
    spec: PreprocessSpec,
    options: ExplainOptions,
    *,
    view: "FocusView | None" = None,
    focus: "FocusSpec | None" = None,
    text_box: "Sequence[tuple[float, float]] | None" = None,
    aligned_box: "Sequence[tuple[float, float]] | None" = None,
    artwork_box: "Sequence[tuple[float, float]] | None" = None,
    items: "Sequence[tuple[OrientedBox, str]]" = (),
) -> Path:
    """Reload ``path`` upright at full size, blend its heatmap and save it; return the file written.

    Two-stage models (``view`` and ``focus`` given): the map was computed on the upright focus
    crop; it is turned back onto the photo where the crop came from, and the product's box
    is drawn; ``text_box`` (where the text check read a mismatch, in the stored photo's
    pixels) is outlined in red, ``aligned_box`` (the place where the item differs most from its
    genuine references) in magenta, ``artwork_box`` (the logo the artwork check measured off its
    references) in cyan. ``items`` (a model that finds several items): every item's box
    in the stored photo's pixels with its verdict, outlined in the verdict's colour; the heatmap
    is the decisive item's.

    Raises ImageLoadError if the photo cannot be decoded again, OSError if writing fails.
    """
    if options.max_side is None:
        photo = load_image(path, max_pixels=options.max_pixels)
    else:
        photo = load_decoded(path, min_short_side=options.max_side // 2, max_pixels=options.max_pixels)[0]
        photo.thumbnail((options.max_side, options.max_side), Image.Resampling.LANCZOS)
    heat = evidence_map(class_maps, decision, class_names)
    if view is not None and focus is not None:
        overlay = blend_focus(photo, heat, view, focus, options.opacity)
        scale = photo.width / view.original_size[0]
        width = max(2, round(min(photo.size) / 300))
        draw = ImageDraw.Draw(overlay)
        for box, verdict in items:
            draw.polygon([(x * scale, y * scale) for x, y in box.corners()], outline=VERDICT_COLOURS[verdict], width=width)
        if text_box is not None:
            draw.polygon([(x * scale, y * scale) for x, y in text_box], outline=TEXT_BOX_COLOUR, width=width)
        if aligned_box is not None:
            draw.polygon([(x * scale, y * scale) for x, y in aligned_box], outline=ALIGNED_BOX_COLOUR, width=width)
        if artwork_box is not None:
            draw.polygon([(x * scale, y * scale) for x, y in artwork_box], outline=ARTWORK_BOX_COLOUR, width=width)
    else:
        overlay = blend(photo, heat, spec, options.opacity)
    target = options.out_dir / overlay_name(path, options.image_format)
    if options.image_format == "jpg":
        overlay.save(target, FORMATS["jpg"], quality=90)
    else:
        overlay.save(target, FORMATS["png"], compress_level=1)  # fast: overlays are for looking at
    return target


def item_outlines(prediction) -> list[tuple["OrientedBox", str]]:
    """A PhotoPrediction's items as write_overlay draws them: (box in the stored photo's pixels, verdict)."""
    return [(item.view.box_in_original, item.decision.verdict) for item in prediction.items]


def evidence_map(class_maps: np.ndarray, decision: Decision, class_names: Sequence[str]) -> np.ndarray:
    """(h, w) evidence in [0, 1] for the decision's verdict over its alternative."""
    class_maps = np.asarray(class_maps, dtype=np.float64)
    if class_maps.ndim != 3 or class_maps.shape[0] != len(class_names):
        raise ConfigError(f"class maps have shape {class_maps.shape}, expected ({len(class_names)}, h, w)")
    for_genuine = decision.verdict == GENUINE
    target = _class_index(class_names, decision.product, "genuine" if for_genuine else "counterfeit")
    other = _class_index(class_names, decision.product, "counterfeit" if for_genuine else "genuine")
    if target is None:
        # A registered product: the maps are the trained products', and its counterfeit score
        # is their counterfeit mass, so its evidence is that mass against the genuine mass.
        fake = np.array([is_counterfeit_class(name) for name in class_names])
        if fake.all() or not fake.any():
            return np.zeros(class_maps.shape[1:])
        lean = np.logaddexp.reduce(class_maps[fake], axis=0) - np.logaddexp.reduce(class_maps[~fake], axis=0)
        evidence = -lean if for_genuine else lean
    else:
        baseline = class_maps[other] if other is not None else class_maps.mean(axis=0)
        evidence = class_maps[target] - baseline
    if decision.verdict == REFER:
        # Relative: the expert wants where it looks most counterfeit, even when no region
        # outright does (a REFER photo often has no positive counterfeit evidence at all).
        evidence = evidence - evidence.min()
    evidence = np.clip(evidence, 0.0, None)
    peak = evidence.max()
    return evidence / peak if peak > 0 else evidence


def blend(photo: Image.Image, heat: np.ndarray, spec: PreprocessSpec, opacity: float) -> Image.Image:
    """Colour ``heat`` (h, w in [0, 1], over the model's letterboxed input) onto the upright photo."""
    width, height = photo.size
    rows, columns = heat.shape
    left, top, right, bottom = content_box(width, height, spec)
    scale_x, scale_y = columns / spec.input_size, rows / spec.input_size
    # uint8 all the way: at 50 MP a float image per step would cost gigabytes.
    small = Image.fromarray(np.clip(np.rint(heat * 255.0), 0, 255).astype(np.uint8), "L")
    full = small.resize(
        (width, height),
        Image.Resampling.BILINEAR,
        box=(left * scale_x, top * scale_y, right * scale_x, bottom * scale_y),
    )
    lut = colour_lut()
    coloured = Image.merge("RGB", [full.point(lut[:, channel].tolist()) for channel in range(3)])
    mask = full.point([int(round(v * opacity)) for v in range(256)])
    return Image.composite(coloured, photo.convert("RGB"), mask)


def blend_focus(photo: Image.Image, heat: np.ndarray, view: "FocusView", focus: "FocusSpec", opacity: float) -> Image.Image:
    """Colour ``heat`` (h, w over the focus crop) back onto the photo, and outline the product's box."""
    from PIL import ImageDraw

    from longteng.preprocess import PreprocessSpec as _Spec

    box = view.box_in_original
    if box is not None:
        box = box.scaled(photo.width / view.original_size[0])
    size = focus.input_size
    small = Image.fromarray(np.clip(np.rint(heat * 255.0), 0, 255).astype(np.uint8), "L")
    on_crop = small.resize((size, size), Image.Resampling.BILINEAR)
    if box is None:
        # The focus stage saw the whole photo letterboxed: the single-stage geometry.
        return blend(photo, np.asarray(on_crop, np.float64) / 255.0, _Spec(input_size=size), opacity)
    grown = box.grown(focus.margin)
    # Only the grown box is evidence (the crop's padding is not the photo): no colour beyond it.
    scale = size / max(grown.length, grown.width)
    inside = np.zeros((size, size), np.uint8)
    half_w, half_h = grown.width * scale / 2, grown.length * scale / 2
    inside[int(max(0, size / 2 - half_h)) : int(min(size, size / 2 + half_h)),
           int(max(0, size / 2 - half_w)) : int(min(size, size / 2 + half_w))] = 1
    on_crop = Image.fromarray(np.asarray(on_crop) * inside, "L")
    step = max(grown.length, grown.width) / size
    right, up = grown.right, grown.up
    # Photo pixel (x, y) -> crop pixel (u, v), the inverse of longteng.focus.focus_crop.
    a, b = right[0] / step, right[1] / step
    d, e = -up[0] / step, -up[1] / step
    c = size / 2 - (a * grown.cx + b * grown.cy)
    f = size / 2 - (d * grown.cx + e * grown.cy)
    full = on_crop.transform(photo.size, Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR, fillcolor=0)
    lut = colour_lut()
    coloured = Image.merge("RGB", [full.point(lut[:, channel].tolist()) for channel in range(3)])
    mask = full.point([int(round(v * opacity)) for v in range(256)])
    out = Image.composite(coloured, photo.convert("RGB"), mask)
    width = max(2, round(min(photo.size) / 300))
    ImageDraw.Draw(out).polygon([tuple(p) for p in box.corners()], outline=(80, 220, 255), width=width)
    return out


def colour_lut() -> np.ndarray:
    """(256, 3) uint8 colours of the heat scale."""
    positions = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(positions, _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)]
    return np.clip(np.rint(np.stack(channels, axis=1)), 0, 255).astype(np.uint8)


def overlay_name(path: Path, image_format: str) -> str:
    """A file-system-safe name, unique per input path and stable between runs."""
    digest = hashlib.sha1(os.fsencode(os.path.abspath(path))).hexdigest()[:8]
    stem = _STEM_UNSAFE.sub("_", os.fsdecode(path.stem)).strip("._")[:_MAX_STEM] or "photo"
    return f"{stem}-{digest}.{image_format}"


def _class_index(class_names: Sequence[str], product: str, authenticity: str) -> int | None:
    for index, name in enumerate(class_names):
        if split_class_name(name) == (product, authenticity):
            return index
    return None

