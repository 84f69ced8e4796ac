"""Perceptual hashes (DCT pHash) and a chunked Hamming-distance search over many of them.

Two photos whose hashes differ in only a few bits look alike to a person, even when their
bytes differ (re-encoded at another JPEG quality, slightly resized, recompressed by a
messenger app). numpy and Pillow only: `data check` must run without the training extras.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

# The DCT runs on a grid this many times finer than the hash, as in the classic pHash:
# the low frequencies it keeps then describe the layout of the photo, not its pixels.
_OVERSAMPLE = 4
# Elements of one distance block; bounds memory to ~100 MB of temporaries at 20k images.
_BLOCK_ELEMENTS = 1 << 22

# A pHash pair is confirmed by the colour thumbnails' correlation: the hash sees the grey
# layout only, so two photos of a dark product lying diagonally on a light surface can share
# it (seen in `make demo`'s data: correlation 0.6-0.7), while a re-encoded, resized or
# brightened copy correlates at 0.99 or more.
THUMBNAIL_SIDE = 16
MIN_THUMBNAIL_CORRELATION = 0.9

_BYTE_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def perceptual_hash(image: Image.Image, hash_size: int = 8) -> bytes:
    """pHash of `image`: hash_size**2 bits (64 by default), packed big-endian into bytes.

    Each bit says whether one low-frequency DCT coefficient of the grey image lies above
    the median of them all, which survives re-encoding, resizing and small colour shifts.
    """
    if hash_size < 2:
        raise ValueError(f"hash_size must be at least 2, got {hash_size}")
    side = hash_size * _OVERSAMPLE
    # BOX averages every source pixel into the grid: no aliasing from a large photo.
    grey = image.convert("L").resize((side, side), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float64)
    basis = _dct_basis(side)
    coefficients = basis @ pixels @ basis.T
    low = coefficients[:hash_size, :hash_size]
    bits = low > np.median(low)
    return np.packbits(bits.ravel()).tobytes()


def colour_thumbnail(image: Image.Image) -> bytes:
    """The photo averaged down to THUMBNAIL_SIDE**2 RGB pixels (768 bytes)."""
    return image.convert("RGB").resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX).tobytes()


def unit_thumbnails(thumbnails: Sequence[bytes]) -> np.ndarray:
    """Colour thumbnails as centred unit vectors (n, 768), once per check, so that the
    correlation of a pair is a dot product; a flat thumbnail is all zeros."""
    pixels = np.stack([np.frombuffer(t, np.uint8) for t in thumbnails]).astype(np.float32)
    centred = pixels - pixels.mean(axis=1, keepdims=True)
    spread = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.where(spread > 1e-6, centred / np.maximum(spread, 1e-6), 0.0).astype(np.float32)


def alike_thumbnails(units: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """For index pairs (left[k], right[k]) into `unit_thumbnails`: do their colour thumbnails
    correlate at least MIN_THUMBNAIL_CORRELATION? Correlation, not difference, so a brighter or
    more contrasted copy is still a copy; two flat thumbnails count as alike (the hash already
    matched)."""
    correlation = np.einsum("ij,ij->i", units[left], units[right])
    flat = ~units.any(axis=1)
    return (correlation >= MIN_THUMBNAIL_CORRELATION) | (flat[left] & flat[right])


@functools.cache
def _dct_basis(size: int) -> np.ndarray:
    """Unnormalised DCT-II matrix: every row has the same scale, so the median test is fair."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    basis = np.cos(np.pi * (2 * n + 1) * k / (2 * size))
    basis.setflags(write=False)
    return basis


def hamming_distance(first: bytes, second: bytes) -> int:
    if len(first) != len(second):
        raise ValueError(f"hashes differ in length: {len(first)} and {len(second)} bytes")
    difference = np.bitwise_xor(np.frombuffer(first, np.uint8), np.frombuffer(second, np.uint8))
    return int(_BYTE_POPCOUNT[difference].sum())


def hashes_to_words(hashes: Sequence[bytes]) -> np.ndarray:
    """Stack equal-length hashes into an (n, words) uint64 array for vectorised XOR."""
    if not hashes:
        return np.zeros((0, 1), dtype=np.uint64)
    length = len(hashes[0])
    if any(len(h) != length for h in hashes):
        raise ValueError("all hashes must have the same length")
    padded_length = -(-length // 8) * 8
    buffer = b"".join(h.ljust(padded_length, b"\0") for h in hashes)
    return np.frombuffer(buffer, dtype=np.uint64).reshape(len(hashes), padded_length // 8)


def close_pairs(words: np.ndarray, max_distance: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair (i, j), i < j, whose Hamming distance is <= max_distance, in batches.

    Compares a block of rows against all later rows at a time, so memory stays bounded
    while the all-pairs work stays in numpy (20k hashes: ~2e8 pairs, a few seconds).
    """
    count, word_count = words.shape
    if count < 2:
        return
    rows_per_block = max(1, _BLOCK_ELEMENTS // (count * word_count))
    for start in range(0, count, rows_per_block):
        block = words[start : start + rows_per_block]
        later = words[start:]
        distances = np.zeros((len(block), len(later)), dtype=np.uint16)
        for word in range(word_count):
            distances += _popcount(np.bitwise_xor(block[:, word, None], later[None, :, word]))
        rows, columns = np.nonzero(distances <= max_distance)
        # `later` starts at the block itself: keep only the upper triangle.
        above_diagonal = columns > rows
        if above_diagonal.any():
            yield rows[above_diagonal] + start, columns[above_diagonal] + start


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    as_bytes = values[..., None].view(np.uint8)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=-1, dtype=np.uint16)
