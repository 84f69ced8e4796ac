"""Where on an item its counterfeit tells are: an optional `evidence` manifest column.

The mask lives in the item's own frame (u across the item, v along it, both 0..1, v = 0 at
the top edge of the manifest's `quad`), on a fixed grid of EVIDENCE_GRID cells, written as
hex. The generator knows it exactly (it draws the tells); for real photos an expert may mark
it while reviewing a referral. Evaluation uses it to check where the heatmap points
(training.pointing); training does not (dense supervision with it did not help: README).
"""

from __future__ import annotations

import numpy as np

EVIDENCE_GRID = (32, 16)  # rows along the item, columns across it


def format_evidence(mask: np.ndarray) -> str:
    """(rows, cols) bool -> hex digits, row-major; '' when nothing is marked."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != EVIDENCE_GRID:
        raise ValueError(f"evidence mask must be {EVIDENCE_GRID}, got {mask.shape}")
    if not mask.any():
        return ""
    return np.packbits(mask.reshape(-1)).tobytes().hex()


def parse_evidence(text: str) -> np.ndarray | None:
    """The column's text -> (rows, cols) bool, or None when the column is empty."""
    if not text or not text.strip():
        return None
    rows, cols = EVIDENCE_GRID
    expected = rows * cols // 8 * 2
    text = text.strip()
    if len(text) != expected:
        raise ValueError(f"evidence needs {expected} hex digits, got {len(text)}")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"evidence is not hex: {text[:16]!r}...") from None
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8)).astype(bool).reshape(EVIDENCE_GRID)


def quad_frame_coordinates(quad: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Photo pixels -> (u, v) in the frame of a (4, 2) corner quad (TL, TR, BR, BL): the inverse
    of the projective map that takes the unit square onto the quad."""
    src = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    rows = []
    for (u, v), (px, py) in zip(src, np.asarray(quad, dtype=np.float64)):
        rows.append([px, py, 1, 0, 0, 0, -u * px, -u * py, u])
        rows.append([0, 0, 0, px, py, 1, -v * px, -v * py, v])
    system = np.array(rows)
    h = np.linalg.solve(system[:, :8], system[:, 8])
    homography = np.append(h, 1.0).reshape(3, 3)  # photo -> unit square
    points = np.stack([np.ravel(x), np.ravel(y), np.ones(np.size(x))])
    mapped = homography @ points
    u, v = mapped[0] / mapped[2], mapped[1] / mapped[2]
    return u.reshape(np.shape(x)), v.reshape(np.shape(x))


def evidence_at(mask: np.ndarray, quad: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For photo points, whether they fall on a marked cell of the item's mask."""
    u, v = quad_frame_coordinates(quad, x, y)
    rows, cols = mask.shape
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    r = np.clip((v * rows).astype(int), 0, rows - 1)
    c = np.clip((u * cols).astype(int), 0, cols - 1)
    return inside & mask[r, c]
