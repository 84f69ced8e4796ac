"""Photos of several items (data synth --items-per-photo): each item's box, label and tells in
the manifest, and one-item output exactly as before the option existed."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import longteng.data.synth.photo as photo_module
from longteng.cli.main import main
from longteng.data.layout import parse_tells
from longteng.data.synth import SynthConfig, parse_items_per_photo, synthesize
from longteng.data.synth.generate import CONFIG_NAME
from longteng.data.synth.plan import plan_dataset
from longteng.errors import ConfigError
from longteng.focus import parse_quad, polygon_iou

# Recorded at commit 6c424f6, before photos of several items existed, from
# `longteng data synth OUT --images 6 --size 160x120 --seed 3`: every manifest column except the
# photos' sha256 (JPEG bytes also depend on the installed Pillow), and the config file.
ONE_ITEM_COLUMNS_SHA256 = "aaf45c4b29c396b9724703dbbafe059315e3b0fc33b8854e852e0f4c2c07d53a"
ONE_ITEM_CONFIG_SHA256 = "c6959487285f71081fdaa9319d9324ca39b32441c99cefd8aef7176ce17fb55e"


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_one_item_output_is_unchanged(tmp_path):
    out = tmp_path / "one"
    assert main(["data", "synth", str(out), "--images", "6", "--size", "160x120", "--seed", "3"]) == 0
    rows = _rows(out)
    assert "items" not in rows[0]
    text = "\n".join(",".join(f"{k}={v}" for k, v in row.items() if k != "sha256") for row in rows)
    assert hashlib.sha256(text.encode()).hexdigest() == ONE_ITEM_COLUMNS_SHA256
    assert hashlib.sha256((out / CONFIG_NAME).read_bytes()).hexdigest() == ONE_ITEM_CONFIG_SHA256
    # Asking for exactly one item is the same as not asking.
    again = tmp_path / "again"
    assert main(["data", "synth", str(again), "--images", "6", "--size", "160x120", "--seed", "3", "--items-per-photo", "1"]) == 0
    assert (again / "manifest.csv").read_bytes() == (out / "manifest.csv").read_bytes()


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    out = tmp_path_factory.mktemp("items") / "out"
    synthesize(SynthConfig(images=16, seed=5, size=(480, 360), items_per_photo=(1, 6), images_per_case=4), out, workers=2)
    return out


def test_every_item_has_its_box_label_and_tells(boxes):
    rows = _rows(boxes)
    counts = []
    for row in rows:
        items = json.loads(row["items"])
        counts.append(len(items))
        assert 1 <= len(items) <= 6
        assert {item["product"] for item in items} == {row["product"]}
        fakes = [item for item in items if item["authenticity"] == "counterfeit"]
        # A photo is counterfeit when any of its items is; its quad and tells are its decisive item's.
        assert (row["authenticity"] == "counterfeit") == bool(fakes)
        decisive = fakes[0] if fakes else items[0]
        assert row["quad"] == decisive["quad"] and row["evidence"] == decisive["evidence"]
        assert set(parse_tells(row["tells"])) == {tell for item in fakes for tell in parse_tells(item["tells"])}
        assert all(parse_tells(item["tells"]) for item in fakes)
        assert not any(item["tells"] or item["evidence"] for item in items if item["authenticity"] == "genuine")
        quads = [parse_quad(item["quad"], (480, 360)) for item in items]
        for i, quad in enumerate(quads):
            assert np.all(quad >= -1) and np.all(quad <= [481, 361])
            # Neighbours may touch or overlap a little, never lie on top of each other.
            assert all(polygon_iou(quad, other) < 0.2 for other in quads[i + 1 :])
    assert len(set(counts)) >= 3  # the count varies from photo to photo
    # One counterfeit among genuine items happens.
    assert any(
        sum(i["authenticity"] == "counterfeit" for i in json.loads(r["items"])) == 1 and len(json.loads(r["items"])) > 1
        for r in rows
    )


def test_the_boxes_are_where_the_items_are_drawn(monkeypatch):
    """The manifest's quad of each item against the item's own alpha, as place_product drew it."""
    drawn = []
    place = photo_module.place_product

    def recording(photo, sprite, pose, style, rng):
        placement = place(photo, sprite, pose, style, rng)
        drawn.append(placement)
        return placement

    monkeypatch.setattr(photo_module, "place_product", recording)
    config = SynthConfig(images=4, seed=9, size=(640, 480), items_per_photo=(2, 5), products=("smartphone",))
    for plan in plan_dataset(config):
        drawn.clear()
        items = json.loads(photo_module.make_photo(config, plan).items)
        assert len(items) == len(drawn)
        for item, placement in zip(items, drawn):
            quad = parse_quad(item["quad"], config.size)
            alpha = np.zeros((config.size[1], config.size[0]), bool)
            x, y = placement.offset
            mask = np.asarray(placement.alpha) > 127
            h, w = mask.shape
            alpha[max(y, 0) : y + h, max(x, 0) : x + w] = mask[max(-y, 0) : config.size[1] - y, max(-x, 0) : config.size[0] - x]
            polygon = Image.new("L", config.size)
            ImageDraw.Draw(polygon).polygon([tuple(p) for p in quad], fill=1)
            inside = np.asarray(polygon, bool)
            # The phone fills its box (rounded corners aside) and nothing of it lies outside.
            assert alpha[inside].mean() > 0.93
            grown = Image.new("L", config.size)  # the quad with a 3 px rim: resampled edges
            draw = ImageDraw.Draw(grown)
            draw.polygon([tuple(p) for p in quad], fill=1)
            draw.line([tuple(p) for p in (*quad, quad[0])], fill=1, width=6)
            assert not alpha[~np.asarray(grown, bool)].any()


@pytest.mark.parametrize("text, expected", [("1-6", (1, 6)), ("4", (4, 4)), (" 2-3 ", (2, 3))])
def test_items_per_photo_parses(text, expected):
    assert parse_items_per_photo(text) == expected


@pytest.mark.parametrize("text", ["0", "3-2", "1-13", "many", "1-"])
def test_a_bad_items_per_photo_is_refused_in_one_line(text, tmp_path, capsys):
    code = main(["data", "synth", str(tmp_path / "out"), "--images", "2", "--items-per-photo", text])
    err = capsys.readouterr().err
    assert code == 1 and "--items-per-photo" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError):
        parse_items_per_photo(text)


def test_the_config_file_keeps_the_items_range(boxes):
    assert SynthConfig.from_json((boxes / CONFIG_NAME).read_text()).items_per_photo == (1, 6)


def test_a_mixed_box_holds_several_families_and_the_photo_is_its_decisive_items(tmp_path):
    out = tmp_path / "mixed"
    config = SynthConfig(images=12, seed=3, size=(480, 360), items_per_photo=(3, 6), mixed_products=True, images_per_case=4)
    synthesize(config, out, workers=1)
    rows = _rows(out)
    families_per_photo = []
    for row in rows:
        items = json.loads(row["items"])
        assert {item["product"] for item in items} <= set(config.products)
        fakes = [item for item in items if item["authenticity"] == "counterfeit"]
        decisive = fakes[0] if fakes else items[0]
        # The photo's folder and label are its decisive item's: the case's family.
        assert decisive["product"] == row["product"] and row["path"].startswith(row["product"] + "/")
        families_per_photo.append(len({item["product"] for item in items}))
    assert max(families_per_photo) >= 2
    assert SynthConfig.from_json((out / CONFIG_NAME).read_text()).mixed_products is True
    # One family per photo without the option: the same plan, every item of the case's family.
    single = tmp_path / "single"
    synthesize(SynthConfig(images=12, seed=3, size=(480, 360), items_per_photo=(3, 6), images_per_case=4), single, workers=1)
    for row in _rows(single):
        assert {item["product"] for item in json.loads(row["items"])} == {row["product"]}
    assert "mixed_products" not in json.loads((single / CONFIG_NAME).read_text())


def test_mixed_products_without_several_items_is_refused_in_one_line(tmp_path, capsys):
    code = main(["data", "synth", str(tmp_path / "out"), "--images", "2", "--mixed-products"])
    err = capsys.readouterr().err
    assert code == 1 and "--mixed-products" in err and "--items-per-photo" in err and len(err.strip().splitlines()) == 1
