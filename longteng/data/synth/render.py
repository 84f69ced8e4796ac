"""Draw a ProductDesign as an RGBA sprite seen from above.

Layers, bottom to top: the shell (body, arms, tongue) with edge shading and surface
finish, the physical parts, the logo (which a counterfeit may print from low-resolution
artwork), then labels and certification marks. Hard-edged shapes of small sprites are
drawn at twice the size and reduced so that their edges are anti-aliased.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from longteng.data.synth.designs import RGB, CertMark, Part, PrintedText, ProductDesign
from longteng.data.synth.noise import smooth_noise
from longteng.data.synth.typeset import text_mask

# Above this long side the sprite is drawn at final size: supersampling would cost more
# than the aliasing it removes, which camera blur and JPEG hide at that size anyway.
_SUPERSAMPLE_LIMIT = 900


def render_product(design: ProductDesign, long_side_px: int, rng: np.random.Generator) -> Image.Image:
    """The product as an RGBA image whose long side (y) is `long_side_px` pixels."""
    factor = 2 if long_side_px <= _SUPERSAMPLE_LIMIT else 1
    size = (max(2, math.ceil(design.width * long_side_px)), max(2, long_side_px))
    pen = _Pen(long_side_px)
    fine = _Pen(long_side_px * factor, factor)  # hard-edged shapes are drawn here, then reduced
    fine_size = (size[0] * factor, size[1] * factor)

    shell_mask, body_mask = _shell_masks(design, fine_size, fine, factor)
    sprite = _shaded_shell(design, shell_mask, body_mask, long_side_px, rng)

    parts = Image.new("RGBA", fine_size)
    draw = ImageDraw.Draw(parts)
    if design.module is not None and design.product == "smartphone":
        _camera_module(draw, fine, design)
    for part in design.parts:
        _PART_PAINTERS[part.kind](draw, fine, part, design)
    sprite.alpha_composite(parts.reduce(factor) if factor > 1 else parts)

    logo = _print_layer((design.logo,), (), size, pen, fine, factor, body_mask)
    sprite.alpha_composite(_degrade_print(logo, design, long_side_px, rng))
    small_print = _print_layer(design.labels, design.marks, size, pen, fine, factor, body_mask)
    sprite.alpha_composite(_screen_print(small_print, design, long_side_px))
    return sprite


class _Pen:
    """Converts product units to canvas pixels."""

    def __init__(self, unit: float, pixels_per_output_pixel: int = 1) -> None:
        self.unit = unit
        self.thinnest = pixels_per_output_pixel

    def px(self, value: float) -> float:
        return value * self.unit

    def stroke(self, value: float) -> int:
        """A line width, never thinner than one pixel of the finished sprite."""
        return max(self.thinnest, int(round(value * self.unit)))

    def point(self, point: tuple[float, float]) -> tuple[float, float]:
        return (point[0] * self.unit, point[1] * self.unit)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (x0 * self.unit, y0 * self.unit, x1 * self.unit, y1 * self.unit)

    def circle(self, center: tuple[float, float], radius: float) -> tuple[float, float, float, float]:
        x, y = center
        return self.box(x - radius, y - radius, x + radius, y + radius)


def _reduced(image: Image.Image, factor: int) -> Image.Image:
    return image.reduce(factor) if factor > 1 else image


# --- shell -------------------------------------------------------------------------------


def _shell_masks(
    design: ProductDesign, size: tuple[int, int], pen: _Pen, factor: int
) -> tuple[Image.Image, Image.Image]:
    """(mask of everything solid, mask of the printable body), anti-aliased by reduction."""
    shell = Image.new("L", size)
    draw = ImageDraw.Draw(shell)
    if design.product == "drone":
        body_center = ((design.body[0] + design.body[2]) / 2, (design.body[1] + design.body[3]) / 2)
        for part in design.parts:
            if part.kind == "rotor":
                draw.line([pen.point(body_center), pen.point(part.center)], fill=255, width=int(pen.px(0.055)))
                draw.ellipse(pen.circle(part.center, 0.05), fill=255)
    elif design.module is not None:  # the USB tongue
        draw.rectangle(pen.box(*design.module), fill=255)
    body = Image.new("L", size)
    ImageDraw.Draw(body).rounded_rectangle(pen.box(*design.body), radius=pen.px(design.corner), fill=255)
    shell.paste(255, (0, 0), body)
    return _reduced(shell, factor), _reduced(body, factor)


def _shaded_shell(
    design: ProductDesign, shell_mask: Image.Image, body_mask: Image.Image, unit: float, rng: np.random.Generator
) -> Image.Image:
    """Body and trim colours, rounded-edge shading lit from the upper left, and the finish."""
    colors = Image.composite(
        Image.new("RGB", shell_mask.size, design.body_color),
        Image.new("RGB", shell_mask.size, design.trim_color),
        body_mask,
    )
    soft = np.asarray(shell_mask.filter(ImageFilter.GaussianBlur(max(1.0, 0.012 * unit))), np.float32) / 255
    shift = max(1, int(0.006 * unit))
    lit_from = np.zeros_like(soft)
    lit_from[shift:, shift:] = soft[:-shift, :-shift]
    shade = 0.70 + 0.30 * np.sqrt(np.clip((soft - 0.5) * 2.0, 0.0, 1.0))
    offset = np.clip(lit_from - soft, 0.0, 1.0) * 50.0 - np.clip(soft - lit_from, 0.0, 1.0) * 60.0
    body = np.asarray(body_mask, np.float32) / 255
    # The brand's fine matte grain: on every item, so texture alone never tells.
    offset += smooth_noise(rng, soft.shape, cell=0.003 * unit) * 4.0 * body
    if design.finish_gloss > 0:
        offset += _gloss(design.finish_gloss, soft.shape, unit, rng) * body
    rgb = np.asarray(colors, np.float32) * shade[..., None] + offset[..., None]
    sprite = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    sprite.putalpha(shell_mask)
    return sprite


def _gloss(strength: float, shape: tuple[int, int], unit: float, rng: np.random.Generator) -> np.ndarray:
    """Cheap injection-moulded plastic: a hard specular streak and orange-peel mottle."""
    height, width = shape
    ys, xs = np.ogrid[0:height, 0:width]
    angle = rng.uniform(0.5, 1.1)
    along = (xs * math.cos(angle) + ys * math.sin(angle)).astype(np.float32) / unit
    center = rng.uniform(0.3, 0.7) * (width * math.cos(angle) + height * math.sin(angle)) / unit
    band = np.exp(-(((along - center) / (0.025 + 0.03 * strength)) ** 2))
    mottle = smooth_noise(rng, shape, cell=0.01 * unit)
    return band * (30.0 + 50.0 * strength) + mottle * (3.0 + 6.0 * strength)


# --- parts -------------------------------------------------------------------------------


def _darker(color: RGB, factor: float) -> RGB:
    return tuple(int(max(0, min(255, c * factor))) for c in color)  # type: ignore[return-value]


def _camera_module(draw: ImageDraw.ImageDraw, pen: _Pen, design: ProductDesign) -> None:
    assert design.module is not None
    box = pen.box(*design.module)
    radius = pen.px(0.045)
    draw.rounded_rectangle(box, radius=radius, fill=_darker(design.trim_color, 0.8))
    inset = pen.px(0.006)
    inner = (box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset)
    draw.rounded_rectangle(inner, radius=radius - inset, fill=design.trim_color)


def _lens(draw: ImageDraw.ImageDraw, pen: _Pen, part: Part, design: ProductDesign) -> None:
    draw.ellipse(pen.circle(part.center, part.size), fill=(150, 152, 156))
    draw.ellipse(pen.circle(part.center, part.size * 0.84), fill=part.color)
    draw.ellipse(pen.circle(part.center, part.size * 0.5), fill=(28, 34, 58))
    draw.ellipse(pen.circle(part.center, part.size * 0.22), fill=(8, 8, 12))
    glint = (part.center[0] - part.size * 0.3, part.center[1] - part.size * 0.3)
    draw.ellipse(pen.circle(glint, part.size * 0.12), fill=(210, 214, 230))


def _flash(draw: ImageDraw.ImageDraw, pen: _Pen, part: Part, design: ProductDesign) -> None:
    draw.ellipse(pen.circle(part.center, part.size * 1.25), fill=(120, 120, 118))
    draw.ellipse(pen.circle(part.center, part.size), fill=part.color)


def _rotor(draw: ImageDraw.ImageDraw, pen: _Pen, part: Part, design: ProductDesign) -> None:
    for blade in range(part.count):
        angle = math.radians(part.angle + blade * 360.0 / part.count)
        draw.polygon(_blade(pen, part.center, angle, part.size), fill=part.color)
    draw.ellipse(pen.circle(part.center, 0.038), fill=(54, 55, 58))
    draw.ellipse(pen.circle(part.center, 0.016), fill=(150, 152, 156))


def _blade(pen: _Pen, center: tuple[float, float], angle: float, length: float) -> list[tuple[float, float]]:
    """An asymmetric propeller blade from the hub outwards."""
    points = []
    for t in np.linspace(0.0, 1.0, 12):
        chord = 0.034 * math.sin(math.pi * (0.15 + 0.85 * t)) + 0.008
        points.append((t * length, chord * 0.65))
    for t in np.linspace(1.0, 0.0, 12):
        chord = 0.034 * math.sin(math.pi * (0.15 + 0.85 * t)) + 0.008
        points.append((t * length, -chord * 0.35))
    cos, sin = math.cos(angle), math.sin(angle)
    return [pen.point((center[0] + x * cos - y * sin, center[1] + x * sin + y * cos)) for x, y in points]


def _gimbal(draw: ImageDraw.ImageDraw, pen: _Pen, part: Part, design: ProductDesign) -> None:
    x, y = part.center
    r = part.size
    draw.rounded_rectangle(pen.box(x - r, y - r * 0.7, x + r, y + r * 0.7), radius=pen.px(r * 0.3), fill=part.color)
    draw.ellipse(pen.circle(part.center, r * 0.5), fill=(70, 72, 78))
    draw.ellipse(pen.circle(part.center, r * 0.34), fill=(12, 14, 24))
    draw.ellipse(pen.circle((x - r * 0.14, y - r * 0.14), r * 0.08), fill=(200, 205, 225))


def _led(draw: ImageDraw.ImageDraw, pen: _Pen, part: Part, design: ProductDesign) -> None:
    draw.ellipse(pen.circle(part.center, part.size * 1.3), fill=_darker(design.body_color, 0.6))
    draw.ellipse(pen.circle(part.center, part.size), fill=part.color)
    draw.ellipse(pen.circle(part.center, part.size * 0.35), fill=(245, 245, 245))


def _contact(draw: ImageDraw.ImageDraw, pen: _Pen, part: Part, design: ProductDesign) -> None:
    x, y = part.center
    box = pen.box(x - part.size, y - part.length / 2, x + part.size, y + part.length / 2)
    draw.rounded_rectangle(box, radius=pen.px(part.size * 0.3), fill=part.color)
    draw.line(
        [(box[0] + pen.px(part.size * 0.4), box[1]), (box[0] + pen.px(part.size * 0.4), box[3])],
        fill=(240, 214, 140),
        width=pen.stroke(part.size * 0.3),
    )


def _lanyard(draw: ImageDraw.ImageDraw, pen: _Pen, part: Part, design: ProductDesign) -> None:
    draw.ellipse(pen.circle(part.center, part.size), fill=_darker(design.body_color, 0.45))
    draw.ellipse(pen.circle(part.center, part.size * 0.55), fill=(20, 20, 20))


_PART_PAINTERS = {
    "lens": _lens,
    "flash": _flash,
    "rotor": _rotor,
    "gimbal": _gimbal,
    "led": _led,
    "contact": _contact,
    "lanyard": _lanyard,
}


# --- printing ----------------------------------------------------------------------------


def _print_layer(
    texts: tuple[PrintedText, ...],
    marks: tuple[CertMark, ...],
    size: tuple[int, int],
    pen: _Pen,
    fine: _Pen,
    factor: int,
    body_mask: Image.Image,
) -> Image.Image:
    """RGBA image of printed texts and marks (marks in the first text's colour)."""
    color = Image.new("RGB", size)
    alpha = Image.new("L", size)
    for text in texts:
        _paste_text(color, alpha, text, pen)
    if marks:
        mask = Image.new("L", (size[0] * factor, size[1] * factor))
        draw = ImageDraw.Draw(mask)
        for mark in marks:
            _MARK_PAINTERS[mark.kind](draw, fine, mark)
        mask = _reduced(mask, factor)
        color.paste(texts[0].color, (0, 0), _inked(mask))
        alpha.paste(255, (0, 0), mask)
    # Printing stops at the edge of the body (matters when a tell moves it).
    printing = color.convert("RGBA")
    printing.putalpha(ImageChops.multiply(alpha, body_mask))
    return printing


def _paste_text(color: Image.Image, alpha: Image.Image, text: PrintedText, pen: _Pen) -> None:
    mask = text_mask(text, pen.unit)
    if text.angle:
        mask = mask.rotate(text.angle, resample=Image.Resampling.BICUBIC, expand=True)
    cx, cy = pen.point(text.center)
    corner = (int(round(cx - mask.width / 2)), int(round(cy - mask.height / 2)))
    box = (*corner, corner[0] + mask.width, corner[1] + mask.height)
    color.paste(text.color, box, _inked(mask))
    alpha.paste(255, box, mask)


def _inked(mask: Image.Image) -> Image.Image:
    # Colour goes in full strength wherever there is any ink; coverage lives in alpha only,
    # so anti-aliased edges keep the ink's colour instead of fading to black.
    return mask.point(lambda v: 255 if v else 0)


def _degrade_print(printing: Image.Image, design: ProductDesign, unit: float, rng: np.random.Generator) -> Image.Image:
    """The logo of a cheap copy: ink bleed from low-resolution artwork, maybe dot-screened.

    Blurred shapes are re-sharpened at the level where the ink spreads: glyphs come out
    swollen and rounded with blotchy edges and filled-in counters, yet their edges stay
    as hard as a real print's, so global sharpness does not tell counterfeits apart.
    """
    if design.print_blur > 0:
        blurred = printing.getchannel("A").filter(ImageFilter.GaussianBlur(design.print_blur * unit))
        alpha = np.asarray(blurred, np.float32) / 255
        alpha += smooth_noise(rng, alpha.shape, cell=max(1.0, 0.004 * unit)) * (0.04 + 0.08 * design.ink_grain)
        alpha = np.clip((alpha - 0.3) / 0.12, 0.0, 1.0)
        printing = Image.new("RGBA", printing.size, design.logo.color)
        printing.putalpha(Image.fromarray((alpha * 255).astype(np.uint8), "L"))
    return _screen_print(printing, design, unit)


def _screen_print(printing: Image.Image, design: ProductDesign, unit: float) -> Image.Image:
    if design.halftone > 0:
        screen = _dot_screen((printing.height, printing.width), unit, design.halftone)
        printing.putalpha(ImageChops.multiply(printing.getchannel("A"), Image.fromarray(screen, "L")))
    return printing


def _dot_screen(shape: tuple[int, int], unit: float, strength: float) -> np.ndarray:
    """A halftone screen: ink only where the dot pattern allows, coarser when stronger."""
    height, width = shape
    period = max(3.0, (0.006 + 0.01 * strength) * unit)
    ys, xs = np.ogrid[0:height, 0:width]
    u = (2 * math.pi / period) * (xs + ys).astype(np.float32)
    v = (2 * math.pi / period) * (xs - ys).astype(np.float32)
    pattern = (np.cos(u) + np.cos(v)) / 4 + 0.5
    dots = np.clip((pattern - (0.25 + 0.35 * strength)) * 4 + 0.5, 0.0, 1.0)
    return ((dots * strength + (1 - strength)) * 255).astype(np.uint8)


# --- certification marks (fictional shapes) ------------------------------------------------


def _ce_arcs(draw: ImageDraw.ImageDraw, pen: _Pen, mark: CertMark) -> None:
    m = mark.malformation
    s = mark.size
    cx, cy = mark.center
    stroke = pen.stroke(0.16 * s)
    spread = (0.47 - 0.22 * m) * s
    opening = 50 - 30 * m  # a wider-closed C reads as an O on badly copied marks
    for index, x in enumerate((cx - spread, cx + spread)):
        radius = 0.5 * s * (1 + 0.25 * m * index)
        draw.arc(pen.circle((x, cy), radius), start=opening, end=360 - opening, fill=255, width=stroke)
        if index == 1:
            bar_end = x + (0.22 + 0.3 * m) * s
            draw.line([pen.point((x - radius, cy)), pen.point((bar_end, cy))], fill=255, width=stroke)


def _fc_box(draw: ImageDraw.ImageDraw, pen: _Pen, mark: CertMark) -> None:
    m = mark.malformation
    s = mark.size
    cx, cy = mark.center
    stroke = pen.stroke(0.09 * s)
    half_w = s * (0.5 + 0.2 * m)
    box = pen.box(cx - half_w, cy - s / 2, cx + half_w, cy + s / 2)
    if m < 0.7:
        draw.rectangle(box, outline=255, width=stroke)
    else:  # the copied artwork lost the frame, leaving a stray corner
        draw.line([(box[0], box[3]), (box[0], box[1]), (box[2], box[1])], fill=255, width=stroke)
    letter = 0.3 * s
    drift = 0.12 * m * s
    fx = cx - 0.2 * s + drift
    top, bottom = cy - letter, cy + letter
    draw.line([pen.point((fx - 0.08 * s, top)), pen.point((fx - 0.08 * s, bottom))], fill=255, width=stroke)
    draw.line([pen.point((fx - 0.08 * s, top)), pen.point((fx + 0.12 * s, top))], fill=255, width=stroke)
    draw.line([pen.point((fx - 0.08 * s, cy)), pen.point((fx + 0.08 * s, cy))], fill=255, width=stroke)
    draw.arc(pen.circle((cx + 0.18 * s + drift, cy), letter * (1 - 0.3 * m)), 45, 315, fill=255, width=stroke)


def _bin(draw: ImageDraw.ImageDraw, pen: _Pen, mark: CertMark) -> None:
    m = mark.malformation
    s = mark.size
    cx, cy = mark.center
    stroke = pen.stroke(0.07 * s)
    top_w, bottom_w = 0.26 * s, (0.2 + 0.1 * m) * s
    top, bottom = cy - 0.28 * s, cy + 0.3 * s
    outline = [(cx - top_w, top), (cx + top_w, top), (cx + bottom_w, bottom), (cx - bottom_w, bottom)]
    draw.polygon([pen.point(p) for p in outline], outline=255, width=stroke)
    draw.line(
        [pen.point((cx - top_w * 1.2, top - 0.08 * s)), pen.point((cx + top_w * 1.2, top - 0.08 * s))],
        fill=255,
        width=stroke,
    )
    for wx in (cx - bottom_w * 0.7, cx + bottom_w * 0.7):
        draw.ellipse(pen.circle((wx, bottom + 0.08 * s), 0.06 * s), fill=255)
    if m < 0.5:
        draw.line(
            [pen.point((cx - 0.4 * s, cy - 0.45 * s)), pen.point((cx + 0.4 * s, cy + 0.45 * s))], fill=255, width=stroke
        )
    if m < 0.25:
        draw.line(
            [pen.point((cx + 0.4 * s, cy - 0.45 * s)), pen.point((cx - 0.4 * s, cy + 0.45 * s))], fill=255, width=stroke
        )


_MARK_PAINTERS = {"ce_arcs": _ce_arcs, "fc_box": _fc_box, "bin": _bin}
