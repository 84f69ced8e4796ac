"""Training views with packing over part of the item (training/occluders.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from longteng.data.evidence import EVIDENCE_GRID
from longteng.errors import ConfigError
from longteng.focus import FocusSpec, OrientedBox, focus_crop
from longteng.training.config import TrainConfig
from longteng.training.focus_data import evidence_in_crop, jittered, training_views
from longteng.training.occluders import COVERAGE, item_rectangle, occluded_view

PAD = (128, 128, 128)
SPEC = FocusSpec(input_size=128)
ITEM = (235, 235, 235)


def _photo(box: OrientedBox) -> Image.Image:
    """A striped (brown and dark) background with a plain white item: the background is what
    the layers are cut from, so a pixel of the item that is no longer white is covered."""
    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:] = (60, 70, 80)
    stripes[:, ::6] = (150, 110, 70)
    image = Image.fromarray(stripes)
    ImageDraw.Draw(image).polygon([tuple(p) for p in box.corners()], fill=ITEM)
    return image


def _item_mask(box: OrientedBox) -> np.ndarray:
    left, top, right, bottom = item_rectangle(box, SPEC)
    mask = np.zeros((SPEC.input_size,) * 2, bool)
    # two pixels in from each side: the crop's antialiased edge is not the item's interior
    mask[int(top) + 2 : int(bottom) - 2, int(left) + 2 : int(right) - 2] = True
    return mask


@pytest.mark.parametrize("degrees", [0, 30, 90, 200])
def test_a_layer_covers_part_of_the_item_and_replays_with_the_seed(degrees):
    box = OrientedBox(320, 240, 200, 100, math.radians(degrees))
    image = _photo(box)
    crop = focus_crop(image, box, SPEC, PAD)
    item = _item_mask(box)
    covered = []
    for seed in range(12):
        view = occluded_view(crop, image, box, SPEC, None, np.random.default_rng(seed))
        again = occluded_view(crop, image, box, SPEC, None, np.random.default_rng(seed))
        np.testing.assert_array_equal(view, again)
        changed = np.abs(view.astype(int) - crop).max(axis=2) > 12
        covered.append(changed[item].mean())
    covered = np.array(covered)
    # Every seed puts a layer on the item, none hides most of it.
    assert covered.min() > 0.01 and covered.max() < 1.5 * COVERAGE[1]


def test_a_layer_never_touches_the_marked_evidence():
    box = OrientedBox(320, 240, 200, 100, 0.0)
    image = _photo(box)
    crop = focus_crop(image, box, SPEC, PAD)
    mask = np.zeros(EVIDENCE_GRID, bool)
    mask[:10, :] = True  # the top third of the item: say, its logo
    quad = box.corners()
    evidence = evidence_in_crop(mask, quad, box, SPEC)
    left, top, right, bottom = item_rectangle(box, SPEC)
    # The mask in the crop is the item's top third (grown by a cell): it maps where it should.
    third = top + (bottom - top) * 10 / 32
    assert evidence[int(top) + 3 : int(third) - 3, int(left) + 3 : int(right) - 3].all()
    assert not evidence[int(third) + 12 :].any()
    placed = 0
    for seed in range(12):
        view = occluded_view(crop, image, box, SPEC, evidence, np.random.default_rng(seed))
        changed = np.abs(view.astype(int) - crop).max(axis=2) > 0
        assert not (changed & evidence).any()
        placed += changed.any()
    assert placed >= 9  # the rest of the item leaves room for most layers


def test_occluded_training_views_keep_the_first_crop():
    box = OrientedBox(300, 250, 220, 110, math.radians(35))
    image = _photo(box)
    views = training_views(image, box, SPEC, PAD, seed=7, count=3, variation="occluders")
    np.testing.assert_array_equal(views[0], focus_crop(image, jittered(box, np.random.default_rng(7)), SPEC, PAD))
    assert len(views) == 3 and all(np.abs(v.astype(int) - views[0]).max() > 12 for v in views[1:])


def test_an_unknown_view_variation_is_refused_with_the_allowed_values():
    with pytest.raises(ConfigError, match="capture, occluders"):
        TrainConfig(data="d", out="o", focus_view_variation="cutout")
