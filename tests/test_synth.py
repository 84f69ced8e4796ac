"""The synthetic seizure-photo generator: output format, determinism, labels, cases, CLI."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from longteng.cli.main import main
from longteng.data.layout import STANDARD_COLUMNS, scan_dataset, sha256_file
from longteng.data.synth import PRODUCTS, TELLS, SynthConfig, parse_size, synthesize
from longteng.data.synth.designs import ALL_PRODUCTS, genuine_design
from longteng.data.synth.generate import CONFIG_NAME, EXTRA_COLUMNS
from longteng.data.synth.plan import plan_dataset
from longteng.data.synth.render import render_product
from longteng.data.synth.tells import TellInstance, apply_tells
from longteng.errors import ConfigError, DatasetError
from longteng.imageio import load_image

# The strength ranges per difficulty (easy strong, hard subtle).
SPEC_STRENGTHS = {"easy": (0.7, 1.0), "medium": (0.4, 0.9), "hard": (0.15, 0.7)}
SMALL = (128, 96)


def _synth(out: Path, images: int = 24, workers: int = 1, **options) -> Path:
    options.setdefault("size", SMALL)
    options.setdefault("images_per_case", 4)
    synthesize(SynthConfig(images=images, **options), out, workers=workers)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synth(tmp_path_factory.mktemp("synth") / "out", images=36, seed=3)


# --- determinism -------------------------------------------------------------------------


def test_same_arguments_give_byte_identical_output_for_any_worker_count(tmp_path: Path) -> None:
    one = _files(_synth(tmp_path / "one", seed=7, workers=1))
    again = _files(_synth(tmp_path / "again", seed=7, workers=1))
    parallel = _files(_synth(tmp_path / "parallel", seed=7, workers=2))
    assert len(one) == 24 + 2  # photos, manifest.csv, synth_config.json
    assert one == again
    assert one == parallel


def test_another_seed_gives_other_photos(tmp_path: Path) -> None:
    first = _files(_synth(tmp_path / "a", images=6, seed=1))
    second = _files(_synth(tmp_path / "b", images=6, seed=2))
    first_photos = {v for k, v in first.items() if k.endswith(".jpg")}
    second_photos = {v for k, v in second.items() if k.endswith(".jpg")}
    assert first_photos.isdisjoint(second_photos)


# --- output format -----------------------------------------------------------------------


def test_manifest_columns_files_and_hashes(dataset: Path) -> None:
    rows = _rows(dataset)
    assert list(rows[0]) == [*STANDARD_COLUMNS, *EXTRA_COLUMNS]
    assert len(rows) == 36
    for row in rows:
        path = dataset / row["path"]
        product, authenticity, _ = row["path"].split("/")
        assert (product, authenticity) == (row["product"], row["authenticity"])
        assert row["product"] in PRODUCTS
        assert sha256_file(path) == row["sha256"]
        assert row["difficulty"] == "medium" and row["seed"] == "3"
        assert 60 <= int(row["jpeg_quality"]) <= 95
        assert row["background"] and row["lighting"]
    on_disk = {p.relative_to(dataset).as_posix() for p in dataset.rglob("*.jpg")}
    assert on_disk == {row["path"] for row in rows}


def test_jpeg_quality_column_matches_the_file(dataset: Path) -> None:
    from PIL import Image

    qualities = {}
    for row in _rows(dataset):
        with Image.open(dataset / row["path"]) as image:
            table = tuple(image.quantization[0])
        qualities.setdefault(int(row["jpeg_quality"]), set()).add(table)
    # One quantisation table per recorded quality, different tables for different qualities.
    assert all(len(tables) == 1 for tables in qualities.values())
    assert len({next(iter(t)) for t in qualities.values()}) == len(qualities)


def test_output_loads_with_the_project_loaders(dataset: Path) -> None:
    records = scan_dataset(dataset)
    assert len(records) == 36
    for record in records:
        image = load_image(dataset / record.path)
        assert image.size == SMALL and image.mode == "RGB"


def test_config_is_written_and_reloads(dataset: Path) -> None:
    saved = SynthConfig.from_json((dataset / CONFIG_NAME).read_text(encoding="utf-8"))
    assert saved == SynthConfig(images=36, seed=3, size=SMALL, images_per_case=4)


def test_params_column_records_the_generator_parameters(dataset: Path) -> None:
    import json

    for row in _rows(dataset):
        params = json.loads(row["params"])
        assert {"pose", "camera", "background", "occlusion", "placement"} <= set(params)
        assert params["background"]["kind"] == row["background"]
        assert params["camera"]["lighting"] == row["lighting"]
        assert 0.3 <= params["pose"]["scale"] <= 0.9


# --- labels, tells, cases ----------------------------------------------------------------


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_counterfeits_carry_one_to_three_tells_in_the_difficulty_range(tmp_path: Path, difficulty: str) -> None:
    rows = _rows(_synth(tmp_path / difficulty, images=30, seed=11, difficulty=difficulty))
    low, high = SPEC_STRENGTHS[difficulty]
    assert {row["authenticity"] for row in rows} == {"genuine", "counterfeit"}
    for row in rows:
        tells = dict(item.split(":") for item in filter(None, row["tells"].split(";")))
        if row["authenticity"] == "genuine":
            assert tells == {}
            continue
        assert 1 <= len(tells) <= 3
        assert set(tells) <= set(TELLS)
        assert all(low <= float(strength) <= high for strength in tells.values())


def test_harder_difficulty_means_weaker_tells() -> None:
    def mean_level(difficulty: str) -> float:
        plans = plan_dataset(SynthConfig(images=240, seed=4, difficulty=difficulty))
        return float(np.mean([tell.level for plan in plans for tell in plan.case.tells]))

    assert mean_level("easy") > mean_level("medium") + 0.1 > mean_level("hard") + 0.2


def test_cases_keep_one_split_one_product_and_one_factory(dataset: Path) -> None:
    by_case = defaultdict(list)
    for row in _rows(dataset):
        by_case[row["case_id"]].append(row)
    assert len(by_case) >= 3
    for rows in by_case.values():
        assert len({row["split"] for row in rows}) == 1
        assert len({row["product"] for row in rows}) == 1
        assert len({row["background"] for row in rows}) == 1
        assert len({row["lighting"] for row in rows}) == 1
        fakes = [
            dict(i.split(":") for i in row["tells"].split(";")) for row in rows if row["authenticity"] == "counterfeit"
        ]
        assert len({frozenset(tells) for tells in fakes}) <= 1
        for name in fakes[0] if fakes else ():
            strengths = [float(tells[name]) for tells in fakes]
            assert max(strengths) - min(strengths) <= 0.3


def test_splits_are_balanced_by_case_product_and_label() -> None:
    plans = plan_dataset(SynthConfig(images=400, seed=0))
    cases = {plan.case.case_id: plan.case.split for plan in plans}
    share = {split: sum(s == split for s in cases.values()) / len(cases) for split in ("train", "val", "test")}
    assert 0.6 <= share["train"] <= 0.8 and 0.1 <= share["val"] <= 0.25 and 0.1 <= share["test"] <= 0.25
    for split in ("train", "val", "test"):
        present = {(plan.case.product, plan.authenticity) for plan in plans if plan.case.split == split}
        assert present == {(product, label) for product in PRODUCTS for label in ("genuine", "counterfeit")}


@pytest.mark.parametrize(("fraction", "expected"), [(0.0, {"genuine"}), (1.0, {"counterfeit"})])
def test_counterfeit_fraction_extremes(fraction: float, expected: set[str]) -> None:
    plans = plan_dataset(SynthConfig(images=60, counterfeit_fraction=fraction))
    assert {plan.authenticity for plan in plans} == expected


def test_case_scene_style_does_not_follow_the_label() -> None:
    # Cases mix labels; a case's style is drawn apart from its counterfeit share.
    plans = plan_dataset(SynthConfig(images=800, seed=9))
    shares = defaultdict(list)
    by_case = defaultdict(list)
    for plan in plans:
        by_case[plan.case.case_id].append(plan)
    for items in by_case.values():
        share = sum(p.counterfeit for p in items) / len(items)
        shares[items[0].case.style.background].append(share)
    means = [np.mean(values) for values in shares.values()]
    assert max(means) - min(means) < 0.2
    mixed = sum(0 < np.mean([p.counterfeit for p in items]) < 1 for items in by_case.values() if len(items) >= 4)
    assert mixed >= len(by_case) // 2


# --- tells ---------------------------------------------------------------------------------


@pytest.mark.parametrize("product", ALL_PRODUCTS)
@pytest.mark.parametrize("tell", TELLS)
def test_each_tell_is_visible_at_the_models_input_scale(product: str, tell: str) -> None:
    """At medium's weakest strength the product, drawn as large as in a 224 px letterbox
    (a 100 px long side), changes visibly for every factory variant."""
    for variant in range(6):
        design = genuine_design(product, np.random.default_rng(variant))
        fake = apply_tells(design, [TellInstance(tell, 0.4, 0.4, variant)])
        genuine_sprite = np.asarray(render_product(design, 100, np.random.default_rng(0)), np.int16)
        fake_sprite = np.asarray(render_product(fake, 100, np.random.default_rng(0)), np.int16)
        if genuine_sprite.shape != fake_sprite.shape:
            continue  # the outline itself changed
        changed = (np.abs(genuine_sprite - fake_sprite).max(axis=-1) > 24).sum()
        assert changed >= 5, f"{tell} variant {variant} changes only {changed} pixels"


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--tells", "glyph_swap,cert_mark", {"glyph_swap", "cert_mark"}),
        ("--exclude-tells", "glyph_swap,cert_mark,print_blur", set(TELLS) - {"glyph_swap", "cert_mark", "print_blur"}),
    ],
)
def test_cli_tell_selection_is_respected(tmp_path: Path, option: str, value: str, allowed: set[str]) -> None:
    out = tmp_path / "out"
    code = main(["data", "synth", str(out), "--images", "40", "--seed", "2", "--size", "96x72", option, value])
    assert code == 0
    used = {item.split(":")[0] for row in _rows(out) for item in filter(None, row["tells"].split(";"))}
    assert used and used <= allowed


def test_cli_tells_option_can_repeat(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [
        "data",
        "synth",
        str(out),
        "--images",
        "16",
        "--size",
        "96x72",
        "--tells",
        "proportions",
        "--tells",
        "part_layout",
    ]
    assert main(argv) == 0
    used = {item.split(":")[0] for row in _rows(out) for item in filter(None, row["tells"].split(";"))}
    assert used <= {"proportions", "part_layout"}


@pytest.mark.parametrize("option", ["--tells", "--exclude-tells"])
def test_cli_rejects_unknown_tell_listing_allowed_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    code = main(["data", "synth", str(tmp_path / "out"), "--images", "4", option, "glyph_swap,sparkles"])
    assert code == 1
    message = capsys.readouterr().err
    assert "sparkles" in message and option in message
    assert all(name in message for name in TELLS)
    assert not (tmp_path / "out").exists()


def test_products_option_draws_only_the_named_families(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["data", "synth", str(out), "--images", "8", "--size", "96x72", "--products", "power_bank"])
    assert code == 0
    records = scan_dataset(out)
    assert {r.label for r in records} <= {"power_bank/genuine", "power_bank/counterfeit"}
    assert len(records) == 8
    assert SynthConfig.from_json((out / CONFIG_NAME).read_text()).products == ("power_bank",)


def test_default_products_keep_the_config_file_as_before(dataset: Path) -> None:
    assert "products" not in (dataset / CONFIG_NAME).read_text()
    assert SynthConfig.from_json((dataset / CONFIG_NAME).read_text()).products == PRODUCTS


def test_cli_rejects_an_unknown_product_listing_allowed_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "synth", str(tmp_path / "out"), "--images", "4", "--products", "drone,hoverboard"])
    assert code == 1
    message = capsys.readouterr().err
    assert "hoverboard" in message and "--products" in message
    assert all(name in message for name in ALL_PRODUCTS)


def test_excluding_every_tell_is_rejected() -> None:
    with pytest.raises(ConfigError, match="no tells left"):
        SynthConfig(images=4, tells=("glyph_swap",), exclude_tells=("glyph_swap",))
    # ...unless no counterfeits are asked for.
    assert SynthConfig(images=4, tells=("glyph_swap",), exclude_tells=("glyph_swap",), counterfeit_fraction=0.0)


# --- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"), [("640x480", (640, 480)), (" 4000X3000 ", (4000, 3000)), ("64x64", (64, 64))]
)
def test_size_parses(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["640", "640x", "x480", "axb", "640x480x3", "10x10", "20000x100", "-640x480", "12000x12000"]
)
def test_cli_rejects_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    code = main(["data", "synth", str(tmp_path / "out"), "--images", "2", f"--size={text}"])
    assert code == 1
    assert "--size" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"difficulty": "brutal"}, "easy, medium, hard"),
        ({"images": 0}, "images"),
        ({"counterfeit_fraction": 1.5}, "counterfeit_fraction"),
        ({"images_per_case": 0}, "images_per_case"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_rejects_bad_values(options: dict, fragment: str) -> None:
    arguments = {"images": 4, **options}
    with pytest.raises(ConfigError, match=fragment):
        SynthConfig(**arguments)


def test_refuses_a_non_empty_folder_that_is_not_synth_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DatasetError, match="not empty"):
        _synth(tmp_path, images=2)
    assert main(["data", "synth", str(tmp_path), "--images", "2"]) == 1
    assert "OUT" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_rerun_replaces_an_earlier_synth_output(tmp_path: Path) -> None:
    out = _synth(tmp_path / "out", images=12, seed=1)
    _synth(out, images=5, seed=2)
    rows = _rows(out)
    assert len(rows) == 5
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")} == {row["path"] for row in rows}


def test_cli_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", str(tmp_path / "out"), "--images", "6", "--size", "96x72", "-j", "1"]) == 0
    output = capsys.readouterr().out.strip()
    assert len(output.splitlines()) == 1
    assert output.startswith("wrote 6 photos") and "cases" in output


@pytest.mark.slow
def test_phone_resolution_works(tmp_path: Path) -> None:
    out = _synth(tmp_path / "big", images=1, size=(4000, 3000))
    (record,) = scan_dataset(out)
    assert load_image(out / record.path).size == (4000, 3000)
