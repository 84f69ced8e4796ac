"""The evidence mask of a counterfeit item: where its design differs from the genuine one.

Rendered, not described: both designs are drawn small with the same texture seed and
compared, so every tell, present or future, marks exactly what it changed (a glyph, a
mark, a contact; for the shell's proportions or finish, the whole shell).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from longteng.data.evidence import EVIDENCE_GRID
from longteng.data.synth.designs import ProductDesign
from longteng.data.synth.render import render_product

_LONG_SIDE = 256
_MIN_DIFFERENCE = 28  # 8-bit levels in any channel, alpha included
_MIN_CHANGED = 0.12  # fraction of a cell's pixels that must differ
# A pixel differs only if no pixel this close in the other drawing matches it: one wider
# glyph re-centres a whole line of text by a pixel or two, and that is not where the tell is.
_SHIFT_TOLERANCE = 2


def evidence_mask(genuine: ProductDesign, counterfeit: ProductDesign) -> np.ndarray:
    """(rows, cols) bool over the counterfeit item's own frame (the quad's)."""
    drawn = render_product(counterfeit, _LONG_SIDE, np.random.default_rng(0))
    reference = render_product(genuine, _LONG_SIDE, np.random.default_rng(0))
    if reference.size != drawn.size:  # the proportions tell changed the item's width
        reference = reference.resize(drawn.size, Image.Resampling.BILINEAR)
    drawn_pixels, reference_pixels = np.asarray(drawn, np.int16), np.asarray(reference, np.int16)
    # Both ways: what the copy added (a wrong glyph) and what it left out (a dropped mark).
    difference = np.maximum(
        _difference_beyond_a_shift(drawn_pixels, reference_pixels), _difference_beyond_a_shift(reference_pixels, drawn_pixels)
    ) > _MIN_DIFFERENCE
    rows, cols = EVIDENCE_GRID
    height, width = difference.shape
    r = np.minimum(np.arange(height) * rows // height, rows - 1)
    c = np.minimum(np.arange(width) * cols // width, cols - 1)
    row_starts = np.searchsorted(r, np.arange(rows))
    col_starts = np.searchsorted(c, np.arange(cols))
    changed = np.add.reduceat(np.add.reduceat(difference.astype(np.float32), row_starts, axis=0), col_starts, axis=1)
    counts = np.outer(np.diff(np.append(row_starts, height)), np.diff(np.append(col_starts, width)))
    return changed / np.maximum(counts, 1) >= _MIN_CHANGED


def _difference_beyond_a_shift(drawn: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per pixel, the smallest worst-channel difference to `reference` within the shift
    tolerance; only pixels that differ where they are need the search."""
    plain = np.abs(drawn - reference).max(axis=2)
    rows, cols = np.nonzero(plain > _MIN_DIFFERENCE)
    r = _SHIFT_TOLERANCE
    padded = np.pad(reference, ((r, r), (r, r), (0, 0)), mode="edge")
    best = plain[rows, cols]
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            best = np.minimum(best, np.abs(drawn[rows, cols] - padded[rows + dy, cols + dx]).max(axis=1))
    out = np.zeros_like(plain)
    out[rows, cols] = best
    return out
