"""Brand design specs of the fictional product families.

A design is plain data in product units: the product's long side is 1.0, x runs across
the product (0..width), y along it (0..1, top = connector / camera / front). Genuine
items are built from the fixed spec below with only manufacturing-tolerance jitter;
tells (tells.py) return modified copies; render.py draws whatever design it is given.
All brands are invented; none resembles a real trademark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]
Point = tuple[float, float]

PRODUCTS = ("smartphone", "drone", "usb_flash_drive")
# Families `data synth --products` can also draw. A power bank is never in the default set:
# it is the product a right holder registers from genuine photos alone (`reference add`),
# one the network never saw.
EXTRA_PRODUCTS = ("power_bank",)
ALL_PRODUCTS = PRODUCTS + EXTRA_PRODUCTS


@dataclass(frozen=True)
class TextStyle:
    """How a printed text is typeset; the genuine print uses the defaults."""

    bitmap: bool = False  # Pillow's old 6x11 bitmap font, scaled up (a cheap substitute font)
    stroke: float = 0.0  # extra stroke width as a fraction of the cap height (bolder)
    stretch: float = 1.0  # horizontal scale of the glyphs
    shear: float = 0.0  # slant: x shift per unit of height (faux italic)
    tracking: float = 0.10  # letter spacing as a fraction of the cap height


@dataclass(frozen=True)
class PrintedText:
    text: str
    center: Point
    height: float  # cap height in product units
    color: RGB
    angle: float = 0.0  # degrees counter-clockwise; 90 reads bottom-to-top
    style: TextStyle = TextStyle()
    mirrored: tuple[int, ...] = ()  # indices of glyphs printed mirror-inverted


@dataclass(frozen=True)
class CertMark:
    """A fictional conformity mark: `ce_arcs` (two arc letters), `fc_box`, `bin` (crossed bin)."""

    kind: str
    center: Point
    size: float  # height in product units
    malformation: float = 0.0  # 0 = as specified, 1 = badly drawn


@dataclass(frozen=True)
class Part:
    """A physical part drawn by the renderer according to its kind."""

    kind: str  # lens, flash, rotor, gimbal, led, contact, lanyard
    center: Point
    size: float  # radius (round parts) or half-width (contacts)
    angle: float = 0.0  # degrees, for props
    count: int = 0  # blades of a rotor
    length: float = 0.0  # contacts: length along the product
    color: RGB = (0, 0, 0)


@dataclass(frozen=True)
class ProductDesign:
    product: str
    brand: str
    width: float  # bounding box width, the long side being 1.0
    body: tuple[float, float, float, float]  # x0, y0, x1, y1 of the main shell
    corner: float  # corner radius of the shell
    body_color: RGB
    trim_color: RGB  # camera module, drone arms, USB tongue
    logo: PrintedText
    labels: tuple[PrintedText, ...]
    marks: tuple[CertMark, ...]
    parts: tuple[Part, ...]
    module: tuple[float, float, float, float] | None = None  # phone camera module / USB tongue
    print_blur: float = 0.0  # blur radius of all printing, product units
    halftone: float = 0.0  # 0..1: coarse dot-screen printing
    ink_grain: float = 0.0  # 0..1: patchy ink coverage of a cheap print process
    finish_gloss: float = 0.0  # 0 = the brand's fine matte finish, 1 = cheap glossy plastic
    colourway: str = ""


@dataclass(frozen=True)
class Colourway:
    name: str
    body: RGB
    trim: RGB
    logo: RGB
    label: RGB


COLOURWAYS: dict[str, tuple[Colourway, ...]] = {
    "smartphone": (
        Colourway("graphite", (58, 60, 64), (44, 45, 48), (168, 170, 174), (140, 142, 146)),
        Colourway("silver", (204, 206, 208), (178, 180, 183), (92, 94, 98), (110, 112, 116)),
        Colourway("midnight", (32, 42, 68), (24, 31, 52), (176, 184, 202), (140, 148, 166)),
        Colourway("sage", (128, 146, 128), (108, 124, 108), (236, 240, 232), (206, 212, 202)),
    ),
    "drone": (
        Colourway("light_grey", (212, 214, 216), (72, 74, 78), (40, 42, 46), (70, 72, 76)),
        Colourway("dark_grey", (68, 70, 74), (34, 35, 38), (204, 206, 210), (170, 172, 176)),
        Colourway("arctic", (236, 236, 232), (118, 120, 124), (214, 84, 38), (96, 98, 102)),
    ),
    "usb_flash_drive": (
        Colourway("black", (34, 35, 38), (40, 40, 44), (206, 208, 212), (170, 172, 176)),
        Colourway("crimson", (150, 30, 40), (40, 40, 44), (242, 240, 238), (232, 200, 200)),
        Colourway("teal", (22, 112, 122), (40, 40, 44), (242, 244, 244), (200, 228, 230)),
        Colourway("white", (234, 234, 230), (40, 40, 44), (58, 60, 66), (96, 98, 104)),
    ),
    "power_bank": (
        Colourway("slate", (74, 80, 88), (30, 31, 34), (226, 228, 230), (186, 190, 194)),
        Colourway("ivory", (226, 222, 210), (52, 52, 56), (46, 84, 140), (104, 104, 108)),
        Colourway("ochre", (196, 142, 52), (40, 40, 44), (34, 30, 26), (74, 58, 34)),
    ),
}

BRANDS = {"smartphone": "NOVALYNX", "drone": "SKYRIDGE", "usb_flash_drive": "KORVEX", "power_bank": "VOLTARA"}
MODELS = {"smartphone": "NX-7", "drone": "SR-4", "usb_flash_drive": "KX3", "power_bank": "VT-10"}
CAPACITIES = {
    "smartphone": ("128GB", "256GB"), "drone": ("249g",), "usb_flash_drive": ("32GB", "64GB", "128GB"),
    "power_bank": ("10000mAh", "20000mAh"),
}

# Glyph substitutions a counterfeiter's artwork shows, from barely visible to blatant.
# ("N", "N*") means the same letter printed mirror-inverted.
GLYPH_SWAPS: dict[str, tuple[tuple[str, str], ...]] = {
    "NOVALYNX": (("O", "0"), ("V", "U"), ("X", "K"), ("L", "I"), ("A", "4"), ("N", "N*")),
    "SKYRIDGE": (("I", "l"), ("G", "C"), ("D", "O"), ("E", "F"), ("S", "5"), ("K", "X")),
    "KORVEX": (("O", "0"), ("V", "U"), ("E", "F"), ("X", "K"), ("R", "P"), ("K", "X")),
    "VOLTARA": (("O", "0"), ("V", "U"), ("T", "7"), ("A", "4"), ("R", "P"), ("L", "I")),
}

# Tolerances of the genuine production line, in product units / degrees.
_POSITION_TOLERANCE = 0.002
_ANGLE_TOLERANCE = 0.4


def genuine_design(product: str, rng: np.random.Generator) -> ProductDesign:
    """The brand spec of `product` with a random colourway, serial and tolerance jitter."""
    builders = {"smartphone": _smartphone, "drone": _drone, "usb_flash_drive": _usb_flash_drive, "power_bank": _power_bank}
    colourways = COLOURWAYS[product]
    colourway = colourways[int(rng.integers(len(colourways)))]
    return builders[product](colourway, rng)


def serial_number(product: str, rng: np.random.Generator) -> str:
    """Genuine serial format: MODEL(no dash) + letter, then 4 and 4 digits."""
    prefix = MODELS[product].replace("-", "")
    letter = "ABCDEFGHJKLMNPRSTUVWXYZ"[int(rng.integers(23))]
    digits = rng.integers(0, 10, size=8)
    return f"S/N {prefix}{letter}-{''.join(map(str, digits[:4]))}-{''.join(map(str, digits[4:]))}"


def _jitter(point: Point, rng: np.random.Generator) -> Point:
    dx, dy = rng.normal(0.0, _POSITION_TOLERANCE, size=2)
    return (point[0] + float(dx), point[1] + float(dy))


# Every brand sets its logo in the default font, condensed to 82 % so long names fit the
# body, and a little heavier than regular so it survives being photographed from afar.
LOGO_STYLE = TextStyle(stretch=0.82, stroke=0.035)


def _logo(brand: str, center: Point, height: float, color: RGB, angle: float, rng: np.random.Generator) -> PrintedText:
    return PrintedText(
        brand, _jitter(center, rng), height, color, angle + float(rng.normal(0.0, _ANGLE_TOLERANCE)), LOGO_STYLE
    )


def _marks(y: float, xs: tuple[float, float, float], size: float) -> tuple[CertMark, ...]:
    return tuple(CertMark(kind, (x, y), size) for kind, x in zip(("ce_arcs", "fc_box", "bin"), xs))


def _smartphone(colourway: Colourway, rng: np.random.Generator) -> ProductDesign:
    width = 0.49
    capacity = CAPACITIES["smartphone"][int(rng.integers(2))]
    lens = (12, 12, 14)
    parts = (
        Part("lens", (0.092, 0.088), 0.043, color=lens),
        Part("lens", (0.092, 0.188), 0.043, color=lens),
        Part("lens", (0.192, 0.138), 0.043, color=lens),
        Part("flash", (0.192, 0.062), 0.017, color=(236, 226, 188)),
    )
    return ProductDesign(
        product="smartphone",
        brand=BRANDS["smartphone"],
        width=width,
        body=(0.0, 0.0, width, 1.0),
        corner=0.075,
        body_color=colourway.body,
        trim_color=colourway.trim,
        colourway=colourway.name,
        module=(0.035, 0.03, 0.25, 0.245),
        logo=_logo("NOVALYNX", (width / 2, 0.555), 0.068, colourway.logo, 90.0, rng),
        labels=(
            PrintedText(f"{MODELS['smartphone']}  {capacity}", (width / 2, 0.928), 0.02, colourway.label),
            PrintedText(serial_number("smartphone", rng), (width / 2, 0.958), 0.014, colourway.label),
        ),
        marks=_marks(0.872, (0.13, 0.245, 0.36), 0.055),
        parts=parts,
    )


def _drone(colourway: Colourway, rng: np.random.Generator) -> ProductDesign:
    rotors = tuple(
        Part("rotor", (x, y), 0.15, angle=float(rng.uniform(0, 180)), count=2, color=(40, 41, 44))
        for x, y in ((0.165, 0.165), (0.835, 0.165), (0.165, 0.835), (0.835, 0.835))
    )
    parts = rotors + (
        Part("gimbal", (0.5, 0.115), 0.07, color=(26, 27, 30)),
        Part("led", (0.255, 0.255), 0.016, color=(230, 40, 40)),
        Part("led", (0.745, 0.255), 0.016, color=(40, 210, 80)),
    )
    return ProductDesign(
        product="drone",
        brand=BRANDS["drone"],
        width=1.0,
        body=(0.3, 0.13, 0.7, 0.87),
        corner=0.12,
        body_color=colourway.body,
        trim_color=colourway.trim,
        colourway=colourway.name,
        logo=_logo("SKYRIDGE", (0.5, 0.43), 0.068, colourway.logo, 90.0, rng),
        labels=(
            PrintedText(f"{MODELS['drone']}  {CAPACITIES['drone'][0]}", (0.5, 0.72), 0.02, colourway.label),
            PrintedText(serial_number("drone", rng), (0.5, 0.83), 0.012, colourway.label),
        ),
        marks=_marks(0.775, (0.41, 0.5, 0.59), 0.045),
        parts=parts,
    )


def _usb_flash_drive(colourway: Colourway, rng: np.random.Generator) -> ProductDesign:
    width = 0.30
    capacity = CAPACITIES["usb_flash_drive"][int(rng.integers(3))]
    pitch = 0.046
    contacts = tuple(
        Part("contact", (width / 2 + (i - 2) * pitch, 0.1), 0.016, length=0.15, color=(214, 176, 84)) for i in range(5)
    )
    parts = contacts + (
        Part("led", (0.245, 0.305), 0.017, color=(90, 170, 255)),
        Part("lanyard", (width / 2, 0.962), 0.017),
    )
    return ProductDesign(
        product="usb_flash_drive",
        brand=BRANDS["usb_flash_drive"],
        width=width,
        body=(0.0, 0.24, width, 1.0),
        corner=0.06,
        body_color=colourway.body,
        trim_color=colourway.trim,
        colourway=colourway.name,
        module=(0.03, 0.0, 0.27, 0.26),
        logo=_logo("KORVEX", (0.14, 0.52), 0.085, colourway.logo, 90.0, rng),
        labels=(
            PrintedText(capacity, (width / 2, 0.818), 0.044, colourway.logo),
            PrintedText(serial_number("usb_flash_drive", rng), (width / 2, 0.922), 0.011, colourway.label),
        ),
        marks=_marks(0.874, (0.07, 0.15, 0.23), 0.046),
        parts=parts,
    )


def _power_bank(colourway: Colourway, rng: np.random.Generator) -> ProductDesign:
    width = 0.56
    capacity = CAPACITIES["power_bank"][int(rng.integers(2))]
    indicators = tuple(
        Part("led", (0.19 + i * 0.06, 0.075), 0.013, color=(120, 200, 255)) for i in range(4)
    )
    parts = indicators + (
        Part("lens", (0.43, 0.075), 0.026, color=(24, 25, 28)),  # the power button
        Part("contact", (width / 2, 0.012), 0.07, length=0.02, color=(22, 22, 24)),  # USB-C port
    )
    return ProductDesign(
        product="power_bank",
        brand=BRANDS["power_bank"],
        width=width,
        body=(0.0, 0.0, width, 1.0),
        corner=0.09,
        body_color=colourway.body,
        trim_color=colourway.trim,
        colourway=colourway.name,
        logo=_logo("VOLTARA", (width / 2, 0.46), 0.08, colourway.logo, 90.0, rng),
        labels=(
            PrintedText(f"{MODELS['power_bank']}  {capacity}", (width / 2, 0.80), 0.024, colourway.label),
            PrintedText(serial_number("power_bank", rng), (width / 2, 0.935), 0.014, colourway.label),
        ),
        marks=_marks(0.87, (0.17, 0.28, 0.39), 0.05),
        parts=parts,
    )
