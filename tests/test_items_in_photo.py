"""Opened boxes: a model trained on item boxes finds every item of a photo, judges each one, and
a photo is as suspicious as its most suspicious item; predict and score list the items."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from longteng.cli.main import main
from longteng.data.layout import Record, sha256_file, write_manifest
from longteng.focus import FocusSpec, GlanceFrame, OrientedBox, boxes_from_maps, objectness_target, polygon_iou
from longteng.preprocess import PreprocessSpec

SIZE = (320, 240)
# Cells of a 3 x 2 grid: an item's centre lies in one, so neighbours stay apart.
CELLS = [(x, y) for y in (62, 178) for x in (55, 160, 265)]


def _item(draw: ImageDraw.ImageDraw, box: OrientedBox, counterfeit: bool) -> None:
    draw.polygon([tuple(p) for p in box.corners()], fill=(235, 235, 235))
    top = OrientedBox(*(np.array([box.cx, box.cy]) + box.up * box.length * 3 / 8), box.length / 4, box.width, box.angle)
    draw.polygon([tuple(p) for p in top.corners()], fill=(250, 30, 30))
    if counterfeit:  # the tell: a blue mark in the middle
        mark = OrientedBox(box.cx, box.cy, box.length / 4, box.width / 2.5, box.angle)
        draw.polygon([tuple(p) for p in mark.corners()], fill=(30, 40, 220))


def _photo(rng: np.random.Generator, count: int, fakes: set[int]) -> tuple[Image.Image, list[dict]]:
    image = Image.new("RGB", SIZE, (60, 70, 80))
    draw = ImageDraw.Draw(image)
    items = []
    for k, cell in enumerate(sorted(rng.permutation(len(CELLS))[:count])):
        cx, cy = CELLS[int(cell)]
        box = OrientedBox(cx + float(rng.uniform(-6, 6)), cy + float(rng.uniform(-6, 6)), float(rng.uniform(70, 84)),
                          float(rng.uniform(34, 42)), float(rng.uniform(0, 2 * math.pi)))
        _item(draw, box, k in fakes)
        quad = " ".join(f"{x / SIZE[0]:.5f} {y / SIZE[1]:.5f}" for x, y in box.corners())
        items.append({"product": "gadget", "authenticity": "counterfeit" if k in fakes else "genuine",
                      "tells": "cert_mark:0.8" if k in fakes else "", "quad": quad, "evidence": ""})
    return image, items


def _dataset(root: Path, per_split: dict[str, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    records = []
    for split, count in per_split.items():
        for i in range(count):
            items_here = int(rng.integers(1, 4))
            counterfeit = i % 2 == 1
            fakes = {int(rng.integers(items_here))} if counterfeit else set()
            image, items = _photo(rng, items_here, fakes)
            authenticity = "counterfeit" if counterfeit else "genuine"
            relative = f"gadget/{authenticity}/{split}_{i:03d}.png"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            image.save(root / relative)
            decisive = next(item for item in items if item["authenticity"] == authenticity)
            records.append(Record(relative, "gadget", authenticity, f"{split}-{i // 3}", split, sha256_file(root / relative),
                                  {"tells": decisive["tells"], "quad": decisive["quad"], "items": json.dumps(items)}))
    write_manifest(root, records, extra_columns=["tells", "quad", "items"])


def test_each_connected_region_of_the_glance_map_is_an_item():
    """Maps drawn from three known boxes give back three boxes at those places, largest first;
    the one-item rule still sees one product."""
    spec = PreprocessSpec(input_size=256, resize_mode="letterbox")
    frame = GlanceFrame.of(SIZE, spec)
    truths = [OrientedBox(60, 60, 90, 40, 0.3), OrientedBox(250, 70, 70, 34, 1.2), OrientedBox(160, 180, 100, 46, 2.5)]
    grid = (16, 16)
    objectness = np.max([objectness_target(frame.to_glance(box.corners()), grid, 256) for box in truths], axis=0)
    up = np.zeros((2, *grid))
    up[1] = -1.0
    found = boxes_from_maps(objectness, up, frame, 256, max_items=12)
    assert len(found) == 3
    areas = [box.length * box.width for box in found]
    assert areas == sorted(areas, reverse=True)
    for truth in truths:
        assert max(polygon_iou(truth.corners(), box.corners()) for box in found) > 0.5
    assert len(boxes_from_maps(objectness, up, frame, 256, max_items=1)) == 1
    assert len(boxes_from_maps(objectness, up, frame, 256, max_items=2)) == 2


def test_a_focus_spec_of_one_item_reads_as_before():
    assert "max_items" not in FocusSpec().to_json()
    several = FocusSpec(max_items=12)
    assert FocusSpec.from_json(several.to_json()) == several
    with pytest.raises(Exception, match="max_items"):
        FocusSpec(max_items=0)


@pytest.fixture(scope="module")
def items_model(tmp_path_factory):
    from longteng.export.exporter import ExportOptions, export_model
    from longteng.training.config import TrainConfig
    from longteng.training.two_stage_trainer import train_two_stage

    root = tmp_path_factory.mktemp("items")
    _dataset(root / "data", {"train": 40, "val": 12, "test": 12})
    config = TrainConfig(
        data=str(root / "data"), out=str(root / "run"), epochs=3, glance_size=256, focus_size=96, glance_epochs=150,
        batch_size=16, lr=2e-3, workers=1, eval_batch_size=32,
    )
    result = train_two_stage(config)
    return root, result, export_model(result.run_dir, root / "model.onnx", ExportOptions(text_references=0))


@pytest.mark.slow
def test_training_on_item_boxes_finds_every_item(items_model):
    _, result, exported = items_model
    assert exported.metadata.finds_items and exported.metadata.focus.max_items > 1
    found = result.report["localisation"]["items"]  # the test split's photos, 1 to 3 items each
    assert found["n_photos"] == 12 and found["n_items"] > 12
    assert found["recall_at_iou_0.5"] >= 0.9 and found["count_exact"] >= 0.75 and found["false_items_per_photo"] <= 0.25


@pytest.mark.slow
def test_one_counterfeit_among_genuine_items_decides_the_photo(items_model, tmp_path, capsys):
    from longteng.inference.predict import Predictor

    root, _, exported = items_model
    rng = np.random.default_rng(42)
    image, items = _photo(rng, 3, fakes={1})
    image.save(tmp_path / "box.png")
    prediction = Predictor(exported.path).predict_one(tmp_path / "box.png")
    assert len(prediction.items) == 3
    scores = [item.decision.counterfeit_score for item in prediction.items]
    assert prediction.decision.counterfeit_score == max(scores)
    decisive = prediction.items[int(np.argmax(scores))]
    fake_quad = np.array([float(v) for v in items[1]["quad"].split()]).reshape(4, 2) * SIZE
    assert polygon_iou(fake_quad, decisive.view.box_in_original.corners()) > 0.5
    # The genuine items score lower than the fake.
    assert sorted(scores)[-2] < max(scores)

    assert main(["predict", "--json", "--model", str(exported.path), str(tmp_path / "box.png")]) in (0, 3)
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["item_count"] == 3 and len(row["items_in_photo"]) == 3
    assert row["counterfeit_score"] == max(item["counterfeit_score"] for item in row["items_in_photo"])
    assert all(len(item["box"]) == 4 and item["verdict"] in ("GENUINE", "COUNTERFEIT", "REFER") for item in row["items_in_photo"])


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_score_keeps_one_row_per_photo_with_its_items(items_model, tmp_path, suffix, capsys):
    from longteng.inference.journal import read_results

    root, _, exported = items_model
    photos = sorted((root / "data" / "gadget" / "counterfeit").glob("test_*.png"))[:4]
    folder = tmp_path / "archive"
    folder.mkdir()
    for photo in photos:
        (folder / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / f"scores{suffix}"
    assert main(["score", "--no-progress", "--workers", "1", str(folder), "--model", str(exported.path), "--out", str(out)]) == 0
    rows = read_results(out)
    assert len(rows) == 4
    main(["predict", "--json", "--model", str(exported.path), *map(str, sorted(folder.iterdir()))])
    predicted = {Path(r["path"]).name: r for r in (json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip())}
    for row in rows:
        items = json.loads(row["items"])
        assert row["item_count"] == len(items) >= 1
        expected = predicted[Path(row["path"]).name]
        assert row["item_count"] == expected["item_count"]
        assert [i["verdict"] for i in items] == [i["verdict"] for i in expected["items_in_photo"]]
        assert [i["box"] for i in items] == [i["box"] for i in expected["items_in_photo"]]


@pytest.mark.slow
def test_evaluate_judges_a_photo_by_its_most_suspicious_item(items_model):
    """Through the runtime's path: the crop evaluated is the decisive item's, at the box of the
    photo's decisive item in the manifest (its fake, for a counterfeit photo)."""
    from longteng.training.evaluate import evaluate_model

    root, _, exported = items_model
    report = evaluate_model(exported.path, root / "data", "test").report
    assert report["localisation"]["median_iou"] > 0.6
    assert report["counterfeit"]["roc_auc"] >= 0.9


@pytest.mark.slow
def test_the_heatmap_outlines_every_item_in_its_verdicts_colour(items_model, tmp_path, capsys):
    from longteng.inference.explain import VERDICT_COLOURS

    _, _, exported = items_model
    image, _ = _photo(np.random.default_rng(7), 3, fakes={0})
    image.save(tmp_path / "box.png")
    assert main(["predict", "--json", "--model", str(exported.path), str(tmp_path / "box.png"), "--explain", str(tmp_path / "heat"),
                 "--explain-format", "png"]) in (0, 3)
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    overlay = np.asarray(Image.open(row["explain"]).convert("RGB"), np.int16)
    scale = overlay.shape[1] / SIZE[0]
    for item in row["items_in_photo"]:
        corners = np.asarray(item["box"]) * scale
        colour = np.array(VERDICT_COLOURS[item["verdict"]])
        # The middle of each edge of the item's box is drawn in its verdict's colour.
        for a, b in zip(corners, np.roll(corners, -1, axis=0)):
            x, y = np.rint((a + b) / 2).astype(int)
            patch = overlay[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].reshape(-1, 3)
            assert np.abs(patch - colour).sum(axis=1).min() < 40, (item["verdict"], (x, y))


def test_every_item_of_an_opened_box_is_a_training_example(tmp_path):
    """Besides each photo's decisive item, the others, each with its own label and its box."""
    from longteng.data.layout import scan_dataset
    from longteng.training.focus_data import glance_items
    from longteng.training.two_stage_trainer import _other_items, specs_for
    from longteng.training.config import TrainConfig

    _dataset(tmp_path / "data", {"train": 10})
    records = scan_dataset(tmp_path / "data")
    glance_spec, focus_spec = specs_for(TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run")))
    items, failures = glance_items(tmp_path / "data", records, glance_spec, focus_spec, crop_seed=None, workers=1)
    assert not failures
    classes = ["gadget/counterfeit", "gadget/genuine"]
    others, boxes, labels = _other_items(items, classes, seed=0)
    listed = [json.loads(r.extra["items"]) for r in records]
    assert len(others) == sum(len(photo) - 1 for photo in listed) > 0
    for item, box, label in zip(others, boxes, labels):
        truth = json.loads(item.record.extra["items"])
        # The box is one of the photo's other items (jittered), and the label is that item's.
        overlaps = [polygon_iou(quad, box.corners()) for quad in item.item_quads]
        k = int(np.argmax(overlaps))
        assert overlaps[k] > 0.5 and not np.allclose(item.item_quads[k], item.quad)
        assert classes[label] == f"gadget/{truth[k]['authenticity']}"
