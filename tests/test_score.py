"""`longteng score`: formats, identical photos scored once, error rows, fatal errors before
work, resume after SIGKILL, and the Dask engine equal to the local one."""

from __future__ import annotations

import io
import math
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longteng.cli import exitcodes
from longteng.cli.main import main
from longteng.inference.discover import DiscoveryOptions, discover, filter_globs, read_list
from longteng.inference.journal import parts_dir, read_results, write_results
from longteng.inference.predict import Predictor
from longteng.inference.score import ScoreOptions, score_fields
from longteng.inference.score_run import ScoreJob

ROOT = Path(__file__).resolve().parent.parent


def picture(seed: int, size: tuple[int, int] = (80, 60)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.full((size[1], size[0], 3), rng.integers(40, 200, 3), dtype=np.float64)
    y0, x0 = rng.integers(0, size[1] // 2), rng.integers(0, size[0] // 2)
    base[y0:y0 + size[1] // 3, x0:x0 + size[0] // 3] = rng.integers(0, 255, 3)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with the given (possibly broken) data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def make_archive(root: Path, photos: int = 12, seed: int = 0) -> Path:
    """Photos in nested folders (JPEG and PNG), one extensionless photo, two identical copies."""
    for i in range(photos):
        folder = root / f"case{i % 3}" / ("sub" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        picture(seed * 1000 + i).save(folder / f"p{i:03d}.{'jpg' if i % 2 else 'png'}")
    picture(seed * 1000 + 99).save(root / "case1" / "from_messenger", format="JPEG")
    (root / "copies").mkdir()
    for name in ("a.png", "b.png"):
        (root / "copies" / name).write_bytes((root / "case0" / "p000.png").read_bytes())
    return root


def comparable(rows: list[dict], ignore: tuple[str, ...] = ("scored_at",)) -> dict[str, dict]:
    """Rows by path without the fields that may differ between runs; asserts paths are unique."""
    by_path = {row["path"]: {k: v for k, v in row.items() if k not in ignore} for row in rows}
    assert len(by_path) == len(rows), "a path appears twice"
    return by_path


def assert_same_rows(left: list[dict], right: list[dict]) -> None:
    a, b = comparable(left), comparable(right)
    assert a.keys() == b.keys()
    for path in a:
        for key, value in a[path].items():
            other = b[path][key]
            if isinstance(value, float) and isinstance(other, float):
                # onnxruntime may round differently when a photo shares its batch with others.
                assert math.isclose(value, other, rel_tol=1e-5, abs_tol=1e-6), (path, key, value, other)
            else:
                assert value == other, (path, key, value, other)


def score(args: list[str]) -> int:
    return main(["score", "--no-progress", "--workers", "1", *args])


def test_formats_round_trip(tiny_onnx_model, tmp_path):
    archive = make_archive(tmp_path / "archive")
    out = tmp_path / "results.jsonl"
    assert score([str(archive), "--model", str(tiny_onnx_model), "--out", str(out)]) == exitcodes.OK
    rows = read_results(out)
    fields = score_fields(Predictor(tiny_onnx_model).metadata.class_names)
    assert [list(row) for row in rows] == [list(fields)] * len(rows)
    # 12 photos, the extensionless JPEG (found by sniffing) and two copies.
    assert len(rows) == 15 and all(row["error_reason"] == "" and row["verdict"] for row in rows)
    assert not parts_dir(out).exists(), "the journal is removed once the results file is complete"
    # Discovery order: folders walked in sorted order.
    assert [row["path"] for row in rows] == [os.fsdecode(p) for p in discover([str(archive)], DiscoveryOptions(sniff_extensionless=True))]
    for suffix in (".csv", ".parquet"):
        other = tmp_path / f"results{suffix}"
        write_results(other, fields, rows)
        assert read_results(other) == rows, suffix
    # The CLI writes the same rows in every format.
    csv_out = tmp_path / "cli.csv"
    assert score([str(archive), "--model", str(tiny_onnx_model), "--out", str(csv_out)]) == exitcodes.OK
    assert_same_rows(read_results(csv_out), rows)


def test_parquet_schema_is_explicit_without_errors(tiny_onnx_model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    archive = tmp_path / "archive"
    archive.mkdir()
    picture(1).save(archive / "one.png")
    out = tmp_path / "r.parquet"
    assert score([str(archive), "--model", str(tiny_onnx_model), "--out", str(out)]) == exitcodes.OK
    schema = pq.read_schema(out)
    assert schema.field("error_reason").type == pa.string() and schema.field("unknown_score").type == pa.float64()
    assert schema.field("size").type == pa.int64()


def test_identical_photos_decoded_and_scored_once(tiny_onnx_model, tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    for i, folder in enumerate(("x", "y", "z")):
        (archive / folder).mkdir(parents=True)
        picture(7).save(archive / folder / "same.png")
        picture(100 + i).save(archive / folder / f"own{i}.png")
    inferred: list[str] = []
    original = Predictor.predict_pixels

    def counting(self, paths, pixels):
        inferred.extend(os.fsdecode(p) for p in paths)
        return original(self, paths, pixels)

    monkeypatch.setattr(Predictor, "predict_pixels", counting)
    out = tmp_path / "r.jsonl"
    job = ScoreJob(tiny_onnx_model, out, ScoreOptions(workers=1, batch_size=4))
    result = job.run(discover([str(archive)]))
    rows = read_results(out)
    assert len(rows) == 6
    assert result.stats.deduplicated == 2 and result.stats.decoded == 4 and result.stats.inferred == 4
    assert sorted(inferred) == sorted({*inferred}) and len(inferred) == 4
    same = [row for row in rows if row["path"].endswith("same.png")]
    assert len(same) == 3 and len({row["sha256"] for row in same}) == 1
    assert all({k: v for k, v in row.items() if k not in ("path", "mtime_ns", "scored_at")} ==
               {k: v for k, v in same[0].items() if k not in ("path", "mtime_ns", "scored_at")} for row in same)


def test_bad_inputs_become_error_rows(tiny_onnx_model, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    picture(3).save(archive / "good.jpg")
    buffer = io.BytesIO()
    picture(4).save(buffer, "PNG")
    (archive / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (archive / "corrupt.png").write_bytes(png_bytes(16, 16, bytes(range(200))))
    (archive / "gigantic.png").write_bytes(png_bytes(20000, 20000, zlib.compress(b"")))
    (archive / "notes.jpg").write_text("not a photo")
    (archive / "zero.jpg").write_bytes(b"")
    out = tmp_path / "r.csv"
    code = score([str(archive), str(tmp_path / "missing.jpg"), "--model", str(tiny_onnx_model), "--out", str(out)])
    assert code == exitcodes.PARTIAL
    errors = {Path(row["path"]).name: row["error_reason"] for row in read_results(out)}
    assert errors == {
        "corrupt.png": "corrupt", "gigantic.png": "too_large", "good.jpg": "", "notes.jpg": "not_an_image",
        "truncated.png": "truncated", "zero.jpg": "empty", "missing.jpg": "not_found",
    }


def test_fatal_problems_fail_before_any_work(tiny_onnx_model, tmp_path, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    picture(5).save(archive / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [
        (["--model", str(tmp_path / "nope.onnx"), "--out", str(tmp_path / "r.csv")], exitcodes.ERROR, "no such model file"),
        (["--model", str(tiny_onnx_model), "--out", str(blocker / "r.csv")], exitcodes.ERROR, "cannot write results"),
        (["--model", str(tiny_onnx_model), "--out", str(tmp_path / "r.xlsx")], exitcodes.USAGE, "--out"),
        (["--model", str(tiny_onnx_model), "--out", str(tmp_path / "r.csv"), "--scheduler", "tcp://x:1"], exitcodes.USAGE, "--scheduler"),
    ]
    for args, expected, message in cases:
        assert score([str(archive), *args]) == expected, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r.csv").exists() and not parts_dir(tmp_path / "r.csv").exists()


def test_include_exclude_and_list_file(tiny_onnx_model, tmp_path):
    archive = make_archive(tmp_path / "archive")
    found = list(filter_globs(discover([str(archive)]), include=["*.jpg", "*/copies/*"], exclude=["*/sub/*"]))
    names = sorted(p.name for p in found)
    assert names == ["a.png", "b.png"], "every .jpg is in a sub folder"
    listing = tmp_path / "list.txt"
    listing.write_text(f"# seized 2026-11\n{archive / 'copies' / 'a.png'}\n\n{archive / 'case2'}\n")
    assert list(read_list(listing.read_text().splitlines())) == [str(archive / "copies" / "a.png"), str(archive / "case2")]
    out = tmp_path / "r.jsonl"
    assert score(["--from-list", str(listing), "--exclude", "*.jpg", "--model", str(tiny_onnx_model), "--out", str(out)]) == 0
    assert sorted(Path(row["path"]).name for row in read_results(out)) == ["a.png", "p002.png", "p008.png"]


def test_runtime_does_not_import_torch(tiny_onnx_model, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    picture(6).save(archive / "a.png")
    code = (
        "import sys; from longteng.cli.main import main; "
        f"rc = main(['score', {str(archive)!r}, '--model', {str(tiny_onnx_model)!r}, '--out', {str(tmp_path / 'r.csv')!r}, "
        "'--workers', '1', '--no-progress']); assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(tiny_onnx_model, tmp_path):
    archive = make_archive(tmp_path / "archive", photos=40, seed=3)
    (archive / "case0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    expected_out = tmp_path / "expected.jsonl"
    base = ["--model", str(tiny_onnx_model), "--no-progress", "--workers", "1", "--batch-size", "2", "--part-size", "3"]
    assert score([str(archive), *base[:2], "--out", str(expected_out)]) == exitcodes.PARTIAL
    expected = read_results(expected_out)

    out = tmp_path / "killed.jsonl"
    command = [sys.executable, "-m", "longteng", "score", str(archive), *base, "--out", str(out)]
    rng = random.Random(1234)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = 0
    # Kill points: after a random number of journal parts (0: during start-up) plus a random
    # delay, so kills land while parts are written, between them and during assembly.
    for target in sorted(rng.sample(range(0, 14), 5)):
        # The whole process group, like an OOM kill or a pulled plug: pool workers die too.
        process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and len(list(parts_dir(out).glob("part-*.jsonl"))) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
        if out.exists():
            break
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert finished.returncode == exitcodes.PARTIAL, finished.stderr
    assert kills >= 1
    assert_same_rows(read_results(out), expected)
    assert [row["path"] for row in read_results(out)] == [row["path"] for row in expected]
    assert not parts_dir(out).exists()


def test_resume_skips_journaled_photos(tiny_onnx_model, tmp_path, monkeypatch):
    """What a killed run leaves behind (complete parts) is not scored again."""
    archive = make_archive(tmp_path / "archive", photos=9, seed=5)
    out = tmp_path / "r.jsonl"
    job = ScoreJob(tiny_onnx_model, out, ScoreOptions(workers=1, batch_size=2, part_size=2))
    entries = list(discover([str(archive)]))
    # Pretend an earlier run journaled the first five photos, then died.
    from longteng.inference.score import InlineExecutor, score_stream

    first = list(score_stream(list(enumerate(entries))[:5], job.predictor, InlineExecutor(), job.options))
    job.journal.write(first[:3])
    job.journal.write(first[3:])
    (job.journal.dir / "part-000000000009-x.jsonl.tmp").write_text('{"path": "half-written')
    result = job.run(entries)
    assert result.skipped == 5 and result.stats.rows == len(entries) - 5
    assert len(read_results(out)) == len(entries)


@pytest.mark.slow
def test_dask_engine_equals_local_engine(tiny_onnx_model, tmp_path):
    pytest.importorskip("dask.distributed")
    archive = make_archive(tmp_path / "archive", photos=10, seed=9)
    (archive / "case2" / "empty.png").write_bytes(b"")
    local, distributed = tmp_path / "local.parquet", tmp_path / "dask.parquet"
    args = [str(archive), "--model", str(tiny_onnx_model), "--part-size", "4"]
    assert score([*args, "--out", str(local)]) == exitcodes.PARTIAL
    assert main(["score", "--no-progress", *args, "--engine", "dask", "--workers", "2", "--out", str(distributed)]) == exitcodes.PARTIAL
    local_rows, dask_rows = read_results(local), read_results(distributed)
    assert [row["path"] for row in dask_rows] == [row["path"] for row in local_rows], "row for row, same order"
    assert_same_rows(dask_rows, local_rows)
