"""The catalogue of counterfeit tells: each turns a genuine design into a flawed copy.

A tell has a strength in [0, 1] (how far the copy strays from the spec), a `level` (the
strength chosen for the whole seizure case: discrete choices follow it so that all
counterfeits of one case come from "one factory") and a `variant` (the factory's pick
among the ways to get it wrong, e.g. which glyph or which mark).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from longteng.data.tell_names import TELL_NAMES
from longteng.data.synth.designs import GLYPH_SWAPS, RGB, ProductDesign, TextStyle

# Strength ranges per difficulty: easy tells are blatant, hard ones need a close look.
STRENGTH_RANGES: dict[str, tuple[float, float]] = {
    "easy": (0.7, 1.0),
    "medium": (0.4, 0.9),
    "hard": (0.15, 0.7),
}

# Colours no genuine colourway uses for its print or shell.
_OFF_BRAND_COLOURS: tuple[RGB, ...] = (
    (214, 176, 52),
    (64, 176, 226),
    (214, 58, 58),
    (86, 184, 92),
    (156, 92, 206),
)


# The most the proportions tell widens a product; poses are fitted for it, so that the
# framing of genuine and counterfeit items is the same.
MAX_WIDENING = 1.22

# Printed text smaller than this (product units) is fine print: model, serial, weight.
_FINE_PRINT = 0.03


@dataclass(frozen=True)
class TellInstance:
    """One tell on one item: its own strength, and the factory's level and variant."""

    name: str
    strength: float
    level: float
    variant: int


def apply_tells(design: ProductDesign, tells: Sequence[TellInstance]) -> ProductDesign:
    for tell in tells:
        design = _CATALOGUE[tell.name](design, tell, np.random.default_rng(tell.variant))
    return design


# --- printing --------------------------------------------------------------------------------


def _glyph_swap(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Look-alike glyphs in the logo (O->0, V->U, a mirrored N...); more and worse when stronger."""
    swaps = GLYPH_SWAPS[design.brand]
    count = 1 if tell.level < 0.35 else 2 if tell.level < 0.7 else 3
    start = int(round(tell.level * (len(swaps) - count))) + int(rng.integers(-1, 2))
    start = min(max(start, 0), len(swaps) - count)
    text = list(design.logo.text)
    mirrored = set(design.logo.mirrored)
    for original, replacement in swaps[start : start + count]:
        positions = [i for i, char in enumerate(text) if char == original and i not in mirrored]
        if not positions:
            continue
        index = positions[int(rng.integers(len(positions)))]
        if replacement.endswith("*"):
            mirrored.add(index)
        else:
            text[index] = replacement
    logo = replace(design.logo, text="".join(text), mirrored=tuple(sorted(mirrored)))
    return replace(design, logo=logo)


def _font_weight(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """The artwork set in the wrong weight, width, slant, or a scaled bitmap font."""
    modes = ["bold", "width", "slant"] + (["bitmap"] if tell.level >= 0.6 else [])
    mode = modes[int(rng.integers(len(modes)))]
    sign = 1.0 if rng.random() < 0.5 else -1.0
    s = tell.strength

    def restyle(style: TextStyle) -> TextStyle:
        if mode == "bold":
            return replace(style, stroke=style.stroke + 0.06 + 0.1 * s)
        if mode == "width":
            return replace(style, stretch=style.stretch * (1.0 + sign * (0.08 + 0.28 * s)))
        if mode == "slant":
            return replace(style, shear=style.shear + sign * (0.08 + 0.32 * s))
        return replace(style, bitmap=True, stroke=0.0)

    return _restyle_print(design, restyle)


def _restyle_print(design: ProductDesign, restyle: Callable[[TextStyle], TextStyle]) -> ProductDesign:
    logo = replace(design.logo, style=restyle(design.logo.style))
    labels = tuple(replace(label, style=restyle(label.style)) for label in design.labels)
    return replace(design, logo=logo, labels=labels)


def _logo_misplace(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Logo shifted, rotated or scaled off its specified place."""
    s = tell.strength
    direction = rng.uniform(0, 2 * np.pi)
    kinds = rng.permutation(["offset", "rotation", "scale"])[: 1 + int(rng.integers(2))]
    logo = design.logo
    if "offset" in kinds:
        distance = 0.015 + 0.05 * s
        # Across the printed line the body is narrow: move less that way so the logo stays on it.
        dx, dy = distance * 0.5 * np.cos(direction), distance * np.sin(direction)
        logo = replace(logo, center=(logo.center[0] + float(dx), logo.center[1] + float(dy)))
    if "rotation" in kinds:
        logo = replace(logo, angle=logo.angle + float(np.sign(np.cos(direction)) * (2.5 + 7.5 * s)))
    if "scale" in kinds:
        factor = 1.0 + float(np.sign(np.sin(direction))) * (0.08 + 0.25 * s)
        logo = replace(logo, height=logo.height * factor)
    return replace(design, logo=logo)


def _off_palette(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Logo in a colour outside the brand palette, or the shell tinted off it (same brightness)."""
    s = tell.strength
    if rng.random() < 0.6:
        target = np.array(_farthest(design.logo.color, rng), float)
        mixed = np.array(design.logo.color, float) * (0.65 - 0.65 * s) + target * (0.35 + 0.65 * s)
        color = tuple(int(v) for v in np.clip(np.rint(mixed), 0, 255))
        return replace(design, logo=replace(design.logo, color=color))
    target = _farthest(design.body_color, rng)
    return replace(design, body_color=_mix_keeping_luma(design.body_color, target, 0.35 + 0.55 * s))


def _farthest(color: RGB, rng: np.random.Generator) -> RGB:
    candidates = sorted(_OFF_BRAND_COLOURS, key=lambda c: -sum((a - b) ** 2 for a, b in zip(c, color)))
    return candidates[int(rng.integers(2))]


def _luma(color: Sequence[float]) -> float:
    return 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]


def _mix_keeping_luma(color: RGB, target: RGB, amount: float) -> RGB:
    mixed = np.array(color, float) * (1 - amount) + np.array(target, float) * amount
    mixed += _luma(color) - _luma(mixed)
    return tuple(int(v) for v in np.clip(np.rint(mixed), 0, 255))  # type: ignore[return-value]


def _cert_mark(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Certification marks badly copied (squeezed, frame lost, no cross) or left out."""
    order = [int(i) for i in rng.permutation(len(design.marks))]
    malformation = min(1.0, 0.3 + 0.7 * tell.strength)
    if tell.level < 0.35:
        drop, malform = [], order[: 1 + int(rng.integers(2))]
    elif tell.level < 0.7:
        drop, malform = order[:1], []
    else:
        drop, malform = order[:1], order[1:2]
    marks = [
        replace(mark, malformation=malformation) if i in malform else mark
        for i, mark in enumerate(design.marks)
        if i not in drop
    ]
    return replace(design, marks=tuple(marks))


def _print_blur(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Printing from low-resolution artwork: soft, grainy edges, at high levels a coarse dot screen."""
    halftone = tell.strength if tell.level >= 0.6 and rng.random() < 0.5 else 0.0
    return replace(design, print_blur=0.003 + 0.016 * tell.strength, halftone=halftone, ink_grain=0.6 * tell.strength)


def _label_format(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Model, capacity and serial texts in a format the brand never prints, fine print set too big and bold."""
    s = tell.strength
    labels = list(design.labels)
    serial_index = len(labels) - 1
    labels[serial_index] = replace(labels[serial_index], text=_bad_serial(labels[serial_index].text, rng))
    growth = 1.0 + 0.15 * s
    if tell.level >= 0.35:
        labels[0] = replace(labels[0], text=_bad_model_text(labels[0].text, rng))
        growth = min(1.9, 1.3 + 0.9 * s)
        # Plain black or white ink where the brand prints tone-on-tone.
        ink = (20, 20, 22) if _luma(design.body_color) > 110 else (244, 244, 240)
        labels = [replace(label, color=ink) if label.height < _FINE_PRINT else label for label in labels]
    # Only the fine print grows; a label already set large (a USB drive's capacity) would
    # not fit the body any larger.
    labels = [
        replace(
            label,
            height=label.height * (growth if label.height < _FINE_PRINT else 1.0),
            style=replace(label.style, stroke=0.04 + 0.06 * s),
        )
        for label in labels
    ]
    if tell.level >= 0.8:
        shift = (0.01 + 0.02 * s) * (1 if rng.random() < 0.5 else -1)
        labels = [replace(label, center=(label.center[0], label.center[1] + shift)) for label in labels]
    return replace(design, labels=tuple(labels))


def _bad_serial(text: str, rng: np.random.Generator) -> str:
    digits = "".join(c for c in text if c.isdigit())
    formats = (f"SN:{digits}", f"S/N {digits[:6]}-{digits[6:]}X", f"s/n {text[4:].replace('-', '')}")
    return formats[int(rng.integers(len(formats)))]


def _bad_model_text(text: str, rng: np.random.Generator) -> str:
    options = (
        text.replace("GB", " GB").replace("g", " G"),
        text.replace("-", "").replace("GB", "G"),
        text.lower(),
        text.replace("-", "-0").replace("B", "8"),
    )
    changed = [option for option in options if option != text]
    return changed[int(rng.integers(len(changed)))]


# --- the object ---------------------------------------------------------------------------------


def _proportions(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Shell too wide or too narrow, or corners too round or too square."""
    s = tell.strength
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if rng.random() < 0.35:
        corner = design.corner * (1.6 + 2.0 * s if sign > 0 else 0.6 - 0.55 * s)
        return replace(design, corner=corner)
    return _scale_across(design, 1.0 + sign * (MAX_WIDENING - 1.0) * (0.23 + 0.77 * s))


def _scale_across(design: ProductDesign, factor: float) -> ProductDesign:
    """Stretch the layout across the product (x) about its middle; part and print sizes stay."""
    middle = design.width / 2
    new_middle = middle * factor

    def x(value: float) -> float:
        return new_middle + (value - middle) * factor

    def moved(point: tuple[float, float]) -> tuple[float, float]:
        return (x(point[0]), point[1])

    x0, y0, x1, y1 = design.body
    module = design.module
    if module is not None:
        module = (x(module[0]), module[1], x(module[2]), module[3])
    return replace(
        design,
        width=design.width * factor,
        body=(x(x0), y0, x(x1), y1),
        module=module,
        logo=replace(design.logo, center=moved(design.logo.center)),
        labels=tuple(replace(label, center=moved(label.center)) for label in design.labels),
        marks=tuple(replace(mark, center=moved(mark.center)) for mark in design.marks),
        parts=tuple(replace(part, center=moved(part.center)) for part in design.parts),
    )


def _part_layout(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Wrong number of lenses / contacts / prop blades, or parts in the wrong place."""
    return _PART_LAYOUT[design.product](design, tell, rng)


def _phone_parts(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    lenses = [i for i, part in enumerate(design.parts) if part.kind == "lens"]
    parts = list(design.parts)
    if tell.level >= 0.5:  # two lenses where the spec has three
        del parts[lenses[int(rng.integers(len(lenses)))]]
        return replace(design, parts=tuple(parts))
    moving, shrinking = (int(i) for i in rng.permutation(lenses)[:2])
    direction = rng.uniform(0, 2 * np.pi)
    distance = 0.012 + 0.05 * tell.strength
    part = parts[moving]
    parts[moving] = replace(
        part,
        center=(
            part.center[0] + distance * float(np.cos(direction)),
            part.center[1] + distance * float(np.sin(direction)),
        ),
    )
    parts[shrinking] = replace(parts[shrinking], size=parts[shrinking].size * (1 - 0.35 * tell.strength))
    return replace(design, parts=tuple(parts))


def _drone_parts(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    if tell.level >= 0.5:  # three-blade props on a two-blade design
        parts = tuple(replace(p, count=3, size=p.size * 0.9) if p.kind == "rotor" else p for p in design.parts)
        return replace(design, parts=parts)
    distance = (0.02 + 0.08 * tell.strength) * (1 if rng.random() < 0.5 else -1)
    parts = tuple(
        replace(p, center=(p.center[0] + distance, p.center[1] + abs(distance) * 0.5)) if p.kind == "gimbal" else p
        for p in design.parts
    )
    return replace(design, parts=parts)


def _usb_parts(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    contacts = [p for p in design.parts if p.kind == "contact"]
    others = [p for p in design.parts if p.kind != "contact"]
    first, last = contacts[0].center[0], contacts[-1].center[0]
    if tell.level >= 0.5:  # four contacts (a USB 2 board) under a five-contact design
        xs = np.linspace(first, last, 4)
        contacts = [
            replace(contacts[0], center=(float(x), contacts[0].center[1]), size=contacts[0].size * 1.25) for x in xs
        ]
    else:  # uneven contact pitch and the LED on the wrong side
        pitch = (last - first) / (len(contacts) - 1)
        index = int(rng.integers(1, len(contacts) - 1))
        c = contacts[index]
        contacts[index] = replace(c, center=(c.center[0] + pitch * (0.2 + 0.3 * tell.strength), c.center[1]))
        others = [
            replace(p, center=(design.width - p.center[0], p.center[1])) if p.kind == "led" else p for p in others
        ]
    return replace(design, parts=tuple(contacts + others))


def _power_bank_parts(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    indicators = [p for p in design.parts if p.kind == "led"]
    others = [p for p in design.parts if p.kind != "led"]
    if tell.level >= 0.5:  # three charge indicators where the design has four
        xs = np.linspace(indicators[0].center[0], indicators[-1].center[0], 3)
        indicators = [replace(indicators[0], center=(float(x), indicators[0].center[1])) for x in xs]
    else:  # the power button on the wrong side of the indicators
        others = [
            replace(p, center=(design.width - p.center[0] - (0.02 + 0.04 * tell.strength), p.center[1]))
            if p.kind == "lens" else p
            for p in others
        ]
    return replace(design, parts=tuple(indicators + others))


_PART_LAYOUT = {
    "smartphone": _phone_parts, "drone": _drone_parts, "usb_flash_drive": _usb_parts, "power_bank": _power_bank_parts,
}


def _surface_finish(design: ProductDesign, tell: TellInstance, rng: np.random.Generator) -> ProductDesign:
    """Glossy, mottled plastic instead of the brand's fine matte finish."""
    return replace(design, finish_gloss=0.15 + 0.85 * tell.strength)


_CATALOGUE: dict[str, Callable[[ProductDesign, TellInstance, np.random.Generator], ProductDesign]] = {
    "glyph_swap": _glyph_swap,
    "font_weight": _font_weight,
    "logo_misplace": _logo_misplace,
    "off_palette": _off_palette,
    "cert_mark": _cert_mark,
    "print_blur": _print_blur,
    "label_format": _label_format,
    "proportions": _proportions,
    "part_layout": _part_layout,
    "surface_finish": _surface_finish,
}

TELLS: tuple[str, ...] = tuple(_CATALOGUE)
if TELLS != TELL_NAMES:
    raise ImportError(f"longteng.data.tell_names lists {TELL_NAMES}, but the catalogue has {TELLS}")

# One line per tell, for --help and the docs.
TELL_DESCRIPTIONS: dict[str, str] = {name: (function.__doc__ or "").strip() for name, function in _CATALOGUE.items()}
