"""Text masks for printed logos and labels, from Pillow's built-in fonts only.

The genuine print uses the scalable FreeType default font (Aileron); counterfeit styles
change weight (stroke), width (stretch), slant (shear) or swap in Pillow's old 6x11
bitmap font scaled up, which looks blocky. No font file is shipped.
"""

from __future__ import annotations

import functools

from PIL import Image, ImageDraw, ImageFont

from longteng.data.synth.designs import PrintedText

# Cap height of the FreeType default font as a fraction of its size (measured on "H").
_FREETYPE_CAP_RATIO = 0.70
# The bitmap font draws capitals 6 px tall with the baseline at row 9 of its 11-row cell.
_BITMAP_CAP_PX = 6
_BITMAP_BASELINE = 9
_BITMAP_CELL = 11


@functools.lru_cache(maxsize=64)
def _freetype(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _bitmap() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


def text_mask(text: PrintedText, pixels_per_unit: float) -> Image.Image:
    """An L mask of the text, unrotated, whose centre is the centre of the capitals."""
    cap = max(3.0, text.height * pixels_per_unit)
    style = text.style
    glyphs = _bitmap_glyphs(text, cap) if style.bitmap else _freetype_glyphs(text, cap)
    line = _join(glyphs, gap=int(round(style.tracking * cap)))
    if style.stretch != 1.0:
        line = line.resize((max(1, round(line.width * style.stretch)), line.height), Image.Resampling.BICUBIC)
    if style.shear:
        line = _shear(line, style.shear)
    return line


def _freetype_glyphs(text: PrintedText, cap: float) -> list[Image.Image]:
    font = _freetype(max(4, round(cap / _FREETYPE_CAP_RATIO)))
    stroke = int(round(text.style.stroke * cap))
    # Tile height symmetric about the middle of the capitals, room for descenders.
    half = int(cap * 0.5 + cap * 0.45 + stroke + 2)
    baseline = half + cap * 0.5
    tiles = []
    for index, char in enumerate(text.text):
        width = int(round(font.getlength(char))) + 2 * stroke
        tile = Image.new("L", (max(1, width), 2 * half))
        ImageDraw.Draw(tile).text(
            (stroke, baseline), char, font=font, fill=255, anchor="ls", stroke_width=stroke, stroke_fill=255
        )
        tiles.append(_maybe_mirror(tile, index, text))
    return tiles


def _bitmap_glyphs(text: PrintedText, cap: float) -> list[Image.Image]:
    font = _bitmap()
    scale = cap / _BITMAP_CAP_PX
    tiles = []
    for index, char in enumerate(text.text):
        width = max(1, int(font.getlength(char)))
        small = Image.new("L", (width, _BITMAP_CELL))
        ImageDraw.Draw(small).text((0, 0), char, font=font, fill=255)
        # Pad to 12 rows so the capitals (rows 3..8) sit in the middle, as in the FreeType tiles.
        cell = Image.new("L", (width, 2 * _BITMAP_BASELINE - _BITMAP_CAP_PX))
        cell.paste(small, (0, 0))
        size = (max(1, round(width * scale)), max(1, round(cell.height * scale)))
        tiles.append(_maybe_mirror(cell.resize(size, Image.Resampling.NEAREST), index, text))
    return tiles


def _maybe_mirror(tile: Image.Image, index: int, text: PrintedText) -> Image.Image:
    return tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if index in text.mirrored else tile


def _join(tiles: list[Image.Image], gap: int) -> Image.Image:
    height = max(tile.height for tile in tiles)
    width = sum(tile.width for tile in tiles) + gap * (len(tiles) - 1)
    line = Image.new("L", (max(1, width), height))
    x = 0
    for tile in tiles:
        line.paste(tile, (x, (height - tile.height) // 2), tile)
        x += tile.width + gap
    return line


def _shear(line: Image.Image, shear: float) -> Image.Image:
    extra = int(abs(shear) * line.height) + 1
    width = line.width + extra
    # Output x maps to input x - shear * (centre_y - y): the top leans right for shear > 0.
    offset = extra / 2
    coefficients = (1.0, shear, -offset - shear * line.height / 2, 0.0, 1.0, 0.0)
    return line.transform((width, line.height), Image.Transform.AFFINE, coefficients, Image.Resampling.BICUBIC)
