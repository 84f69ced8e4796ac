"""Fault injection: a hostile corpus (photos, journals, model files, command lines) built in a
temp folder, and for every case one line naming the file or field and the reason, the
documented exit code, no traceback, no process left behind, and for `score` a rerun that
ends with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longteng.cli import exitcodes
from longteng.cli.main import main
from longteng.inference.discover import DiscoveryError, discover
from longteng.inference.journal import parts_dir, read_results
from longteng.inference.score import ScoreOptions
from longteng.inference.score_run import ScoreJob
from test_score import assert_same_rows, make_archive, picture, png_bytes

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "longteng", *args], cwd=ROOT, env=ENV, input=stdin,
                          capture_output=True, timeout=300)


def one_line(stderr: bytes | str, *names: str) -> str:
    """The one message line; asserts there is no traceback and that it names each of ``names``."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text and "internal error" not in text, text
    assert len(lines) == 1, text
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = make_archive(tmp_path_factory.mktemp("faults") / "archive", photos=12, seed=9)
    (root / "case0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return root


@pytest.fixture(scope="module")
def expected(archive, tiny_onnx_model, tmp_path_factory) -> list[dict]:
    """The rows of an uninterrupted run: what every interrupted or damaged run must end with."""
    out = tmp_path_factory.mktemp("expected") / "expected.jsonl"
    assert score(archive, tiny_onnx_model, out) == exitcodes.PARTIAL
    return read_results(out)


def score(archive: Path, model: Path, out: Path, *extra: str) -> int:
    return main(["score", str(archive), "--model", str(model), "--out", str(out), "--no-progress",
                 "--workers", "1", "--batch-size", "2", "--part-size", "3", *extra])


def half_journal(archive: Path, model: Path, out: Path) -> None:
    """What a run killed half-way leaves: a few complete parts (the first two thirds of an
    interrupted run's rows), written by the real scoring code."""
    process = subprocess.Popen(
        [sys.executable, "-m", "longteng", "score", str(archive), "--model", str(model), "--out", str(out),
         "--no-progress", "--workers", "1", "--batch-size", "1", "--part-size", "2"],
        cwd=ROOT, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(list(parts_dir(out).glob("part-*.jsonl"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(list(parts_dir(out).glob("part-*.jsonl"))) >= 3 and not out.exists()


# --- group 1: filesystem faults during score ----------------------------------------------


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "one_row_edited"])
def test_a_damaged_part_is_set_aside_named_and_rescored(damage, archive, tiny_onnx_model, expected, tmp_path):
    out = tmp_path / "r.jsonl"
    half_journal(archive, tiny_onnx_model, out)
    part = sorted(parts_dir(out).glob("part-*.jsonl"))[1]
    data = part.read_bytes()
    part.write_bytes({
        "random_bytes": np.random.default_rng(0).bytes(len(data)),
        "truncated": data[: len(data) // 2],
        "one_row_edited": data.replace(b'"verdict": "', b'"verdict": "X', 1),
    }[damage])
    finished = cli("score", str(archive), "--model", str(tiny_onnx_model), "--out", str(out), "--no-progress", "--workers", "1")
    assert finished.returncode == exitcodes.PARTIAL, finished.stderr
    warning = [line for line in finished.stderr.decode().splitlines() if "damaged journal file" in line]
    assert len(warning) == 1 and part.name in warning[0] and "Traceback" not in finished.stderr.decode()
    assert_same_rows(read_results(out), expected)
    assert list(out.parent.glob("r.jsonl.parts.damaged-*/" + part.name)), "the damaged part is kept aside"


def test_a_damaged_journal_header_sets_the_whole_journal_aside(archive, tiny_onnx_model, expected, tmp_path):
    out = tmp_path / "r.jsonl"
    half_journal(archive, tiny_onnx_model, out)
    (parts_dir(out) / "journal.json").write_bytes(np.random.default_rng(1).bytes(200))
    finished = cli("score", str(archive), "--model", str(tiny_onnx_model), "--out", str(out), "--no-progress", "--workers", "1")
    assert finished.returncode == exitcodes.PARTIAL, finished.stderr
    assert "journal.json: damaged journal file" in finished.stderr.decode()
    assert_same_rows(read_results(out), expected)


def _fail_nth_fsync(monkeypatch, n: int, code: int) -> None:
    """Every write of the journal and the results file ends in an fsync: the n-th one fails as a
    full disk (or a folder made read-only) reports it."""
    import longteng.inference.journal as journal

    calls = {"count": 0}
    real = os.fsync

    def failing(fd):
        calls["count"] += 1
        if calls["count"] >= n:
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(journal.os, "fsync", failing)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO])
@pytest.mark.parametrize("nth", [2, 5, 8])
def test_disk_full_or_read_only_mid_run_is_one_line_then_rerun_completes(
    code, nth, archive, tiny_onnx_model, expected, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "r.jsonl"
    with monkeypatch.context() as patch:
        _fail_nth_fsync(patch, nth, code)
        assert score(archive, tiny_onnx_model, out) == exitcodes.OUTPUT
    one_line(capsys.readouterr().err, str(out.name), os.strerror(code), "rerun")
    assert score(archive, tiny_onnx_model, out) == exitcodes.PARTIAL
    assert_same_rows(read_results(out), expected)


@pytest.mark.parametrize("limit", [1500, 6000])  # the first journal part, or the results file
def test_a_file_size_limit_in_a_real_process_is_one_line_then_rerun_completes(
    limit, archive, tiny_onnx_model, expected, tmp_path
):
    """A full disk without root: RLIMIT_FSIZE makes the kernel refuse writes past `limit` bytes."""
    out = tmp_path / "r.jsonl"

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill, as ENOSPC would be
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-m", "longteng", "score", str(archive), "--model", str(tiny_onnx_model),
               "--out", str(out), "--no-progress", "--workers", "1", "--part-size", "64"]
    failed = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, preexec_fn=small_disk, timeout=300)
    assert failed.returncode == exitcodes.OUTPUT, failed.stderr
    one_line(failed.stderr, "File too large", "rerun")
    finished = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, timeout=300)
    assert finished.returncode == exitcodes.PARTIAL, finished.stderr
    assert_same_rows(read_results(out), expected)


def test_nul_separated_lists_as_find_print0_writes_them(archive, tiny_onnx_model, tmp_path):
    odd = archive.parent / "odd names"
    odd.mkdir(exist_ok=True)
    picture(5).save(odd / "line\nbreak.png")
    picture(6).save(odd / "plain.png")
    listing = b"\0".join(os.fsencode(p) for p in (odd / "line\nbreak.png", odd / "plain.png")) + b"\0"
    out = tmp_path / "r.jsonl"
    finished = cli("score", "--from-list", "-", "--model", str(tiny_onnx_model), "--out", str(out), "--no-progress",
                   "--workers", "1", stdin=listing)
    assert finished.returncode == exitcodes.OK, finished.stderr
    assert [row["path"] for row in read_results(out)] == [str(odd / "line\nbreak.png"), str(odd / "plain.png")]


def test_a_nul_byte_in_a_name_is_an_error_row_not_a_crash():
    found = list(discover(["photos/a\0b.jpg"]))
    assert len(found) == 1 and isinstance(found[0], DiscoveryError) and found[0].reason == "invalid_path"


# --- group 2: two runs on one --out ---------------------------------------------------------


def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(archive, tiny_onnx_model, tmp_path):
    out = tmp_path / "r.jsonl"
    holder = ScoreJob(tiny_onnx_model, out, ScoreOptions(workers=1)).journal  # open and locked
    try:
        second = cli("score", str(archive), "--model", str(tiny_onnx_model), "--out", str(out), "--no-progress")
        assert second.returncode == exitcodes.ERROR
        one_line(second.stderr, str(out), f"pid {os.getpid()}")
    finally:
        holder.close()
    assert cli("score", str(archive), "--model", str(tiny_onnx_model), "--out", str(out), "--no-progress",
               "--workers", "1").returncode == exitcodes.PARTIAL


# --- group 3: no process outlives score --------------------------------------------------------


def _session_processes(session: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # fields[3]: the session id
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_score_and_sigterm_is_an_interrupt(how, tiny_onnx_model, expected, archive, tmp_path):
    big = make_archive(tmp_path / "big", photos=60, seed=2)
    out = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "longteng", "score", str(big), "--model", str(tiny_onnx_model), "--out", str(out),
               "--no-progress", "--workers", "2", "--batch-size", "1", "--part-size", "2"]
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(parts_dir(out).glob("part-*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_session_processes(process.pid)) >= 3, "the command, the forkserver and its workers"
    os.kill(process.pid, how)  # the command only: its workers must notice by themselves
    stderr = process.communicate(timeout=60)[1].decode()
    if how == signal.SIGTERM:
        assert process.returncode == exitcodes.INTERRUPTED
        one_line(stderr, "interrupted")
    deadline = time.monotonic() + 15
    while _session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(process.pid) == [], "a worker, the forkserver or the resource tracker outlived score"
    assert list(parts_dir(out).glob("part-*.jsonl")), "the journal survives"
    finished = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, timeout=300)
    assert finished.returncode == exitcodes.OK, finished.stderr
    reference = tmp_path / "reference.jsonl"
    assert main(["score", str(big), "--model", str(tiny_onnx_model), "--out", str(reference), "--no-progress",
                 "--workers", "1"]) == exitcodes.OK
    assert_same_rows(read_results(out), read_results(reference))


# --- group 4: model metadata that parses but is wrong ------------------------------------------


def _with_metadata(model: Path, out: Path, change) -> Path:
    import onnx

    proto = onnx.load(str(model))
    props = {p.key: p.value for p in proto.metadata_props}
    change(props)
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(out))
    return out


def _json_edit(key: str, edit):
    def change(props):
        value = json.loads(props[key])
        props[key] = json.dumps(edit(value))
    return change


def _set(key, field, value):
    def edit(data):
        data[field] = value
        return data
    return _json_edit(key, edit)


def _registered(name: str = "power_bank", photos: int = 50) -> str:
    from longteng.inference.registered import RegisteredProduct, fit_spread, registered_to_json

    embedding = np.random.default_rng(0).normal(size=(20, 8))
    product = json.loads(registered_to_json((RegisteredProduct("x", embedding.mean(0), 50, 2.0, fit_spread(embedding), 2.0),)))
    product["products"][0].update(name=name, photos=photos)
    return json.dumps(product)


HOSTILE_METADATA = {
    "duplicate class names": (_json_edit("longteng.class_names", lambda names: [names[0]] * len(names)), "longteng.class_names"),
    "a class name without authenticity": (_json_edit("longteng.class_names", lambda names: ["phone"] + names[1:]), "longteng.class_names"),
    "one class too few": (_json_edit("longteng.class_names", lambda names: names[:-1]), "longteng.class_names"),
    "size differs from the graph": (_set("longteng.preprocess", "input_size", 96), "longteng.preprocess.input_size"),
    "huge size": (_set("longteng.preprocess", "input_size", 10**9), "longteng.preprocess.input_size"),
    "NaN mean": (_set("longteng.preprocess", "mean", [float("nan"), 0.5, 0.5]), "longteng.preprocess.mean"),
    "1e30 std": (_set("longteng.preprocess", "std", [1e30, 0.5, 0.5]), "longteng.preprocess.std"),
    "zero std": (_set("longteng.preprocess", "std", [0.0, 0.5, 0.5]), "longteng.preprocess"),
    "NaN temperature": (lambda props: props.__setitem__("longteng.temperature", "nan"), "longteng.temperature"),
    "1e30 temperature": (lambda props: props.__setitem__("longteng.temperature", "1e30"), "longteng.temperature"),
    "NaN unknown threshold": (_set("longteng.unknown", "threshold", float("nan")), "longteng.unknown.threshold"),
    "infinite unknown threshold": (_set("longteng.unknown", "threshold", float("inf")), "longteng.unknown.threshold"),
    "unknown method": (_set("longteng.unknown", "method", "crystal_ball"), "longteng.unknown.method"),
    "detector arrays of the wrong shape": (
        _json_edit("longteng.unknown", lambda d: {**d, "parameters": {**d["parameters"], "means": {"dtype": "float32", "shape": [2, 3], "data": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}}),
        "longteng.unknown.parameters",
    ),
    "NaN operating point": (_set("longteng.operating_point", "refer_low", float("nan")), "operating point"),
    "NaN score calibration": (_set("longteng.score_calibration", "slope", float("nan")), "longteng.score_calibration"),
    "a score calibration that reverses the ranking": (
        _set("longteng.score_calibration", "slope", -1.0), "longteng.score_calibration",
    ),
    "a text check that would clear counterfeits (mismatch probability below one half)": (
        lambda props: props.__setitem__("longteng.text_registry", '{"version": 1, "products": {}, "mismatch_probability": 0.01}'),
        "longteng.text_registry",
    ),
    "a text check on a model without a focus crop": (
        lambda props: props.__setitem__("longteng.text_registry", '{"version": 1, "products": {"phone": {"words": ["KORVEX"], "formats": []}}}'),
        "longteng.text_registry",
    ),
    "an aligned check whose reference bank is damaged": (
        lambda props: props.__setitem__("longteng.aligned_check", '{"version": 1, "features": [], "arrays": "!!"}'),
        "longteng.aligned_check",
    ),
    "a registered product on a model without a focus crop": (
        lambda props: props.__setitem__("longteng.registered_products", _registered(photos=50)), "longteng.registered_products",
    ),
    "a product registered from one photo": (
        lambda props: props.__setitem__("longteng.registered_products", _registered(photos=1)), "longteng.registered_products",
    ),
    "a registered product whose name is a path": (
        lambda props: props.__setitem__("longteng.registered_products", _registered(name="../phone")), "longteng.registered_products",
    ),
    "empty model version": (lambda props: props.__setitem__("longteng.model_version", " "), "longteng.model_version"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_METADATA))
def test_model_metadata_that_would_change_verdicts_is_refused_naming_the_field(case, tiny_onnx_model, tmp_path, capsys):
    change, field = HOSTILE_METADATA[case]
    model = _with_metadata(tiny_onnx_model, tmp_path / "hostile.onnx", change)
    photo = tmp_path / "p.png"
    picture(1).save(photo)
    for command in (["predict", str(photo), "--model", str(model)],
                    ["score", str(photo), "--model", str(model), "--out", str(tmp_path / "r.csv"), "--no-progress"]):
        assert main(command) == exitcodes.ERROR, case
        one_line(capsys.readouterr().err, "hostile.onnx", field)


def test_the_untouched_model_passes_the_same_checks(tiny_onnx_model, tmp_path, capsys):
    model = _with_metadata(tiny_onnx_model, tmp_path / "same.onnx", lambda props: None)
    photo = tmp_path / "p.png"
    picture(1).save(photo)
    assert main(["predict", str(photo), "--model", str(model)]) == exitcodes.OK


def test_a_model_from_before_score_calibration_loads_with_the_identity(tiny_onnx_model, tmp_path):
    from longteng.inference.session import OnnxModel

    model = _with_metadata(tiny_onnx_model, tmp_path / "older.onnx", lambda props: props.pop("longteng.score_calibration"))
    assert OnnxModel(model).metadata.score_calibration.is_identity


# --- group 5: globs are folder walks ----------------------------------------------------------


def _special_folder(root: Path) -> Path:
    folder = root / "special"
    folder.mkdir()
    picture(1).save(folder / "ok.jpg")
    os.mkfifo(folder / "pipe.jpg")
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    os.symlink("/dev/null", folder / "device.jpg")
    return folder


def _as_rows(found) -> list[tuple[str, str]]:
    return [(str(f.path), f.reason) if isinstance(f, DiscoveryError) else (str(f), "") for f in found]


def test_a_glob_reports_what_the_folder_walk_reports(tmp_path):
    folder = _special_folder(tmp_path)
    walked = _as_rows(discover([folder]))
    assert {reason for _, reason in walked} == {"", "unreadable", "not_found"}
    assert _as_rows(discover([str(folder / "*.jpg")])) == walked
    assert _as_rows(discover([str(tmp_path / "*" / "*.jpg")])) == walked


def test_a_recursive_glob_over_looping_links_ends(tmp_path):
    top = tmp_path / "dir"
    (top / "a" / "b").mkdir(parents=True)
    picture(2).save(top / "a" / "b" / "x.png")
    os.symlink(top, top / "a" / "loop1")
    os.symlink(top / "a", top / "a" / "b" / "loop2")
    script = (f"from longteng.inference.discover import discover; "
              f"print(len(list(discover([{str(top / '**')!r}, {str(top / '**' / '*.png')!r}]))))")
    # In a child with a memory cap, so that a regression fails the test instead of the machine.
    finished = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, timeout=60,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)))
    assert finished.returncode == 0, finished.stderr
    found = list(discover([str(top / "**")]))
    assert top / "a" / "b" / "x.png" in found
    assert sum(isinstance(f, DiscoveryError) and f.reason == "symlink_loop" for f in found) == 2


# --- group 6: limits --------------------------------------------------------------------------


@pytest.mark.parametrize("option, value", [("--threads", "100000"), ("--workers", "100000"), ("--batch-size", "10000000"),
                                           ("--max-pixels", str(10**12))])
def test_absurd_counts_are_usage_errors(option, value, tiny_onnx_model, tmp_path, capsys):
    photo = tmp_path / "p.png"
    picture(1).save(photo)
    command = ["score", str(photo), "--model", str(tiny_onnx_model), "--out", str(tmp_path / "r.csv"), option, value]
    assert main(command) == exitcodes.USAGE
    one_line(capsys.readouterr().err, option)


def test_max_pixels_above_pillows_own_limit_is_honoured(tmp_path):
    from longteng.errors import ImageLoadError
    from longteng.imageio import load_image

    # A header that claims 15000 x 13400 = 201 MP (above Pillow's 179 MP), with broken data.
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(15000, 13400, b"\x00" * 64))
    with pytest.raises(ImageLoadError) as default:
        load_image(path)
    assert default.value.reason == "too_large"
    with pytest.raises(ImageLoadError) as allowed:
        load_image(path, max_pixels=250_000_000)
    assert allowed.value.reason in ("truncated", "corrupt"), "past the pixel guard, the data itself fails"


# --- odds and ends of the same probes ----------------------------------------------------------


@pytest.mark.parametrize("keep", [4, 30, 200])
def test_a_truncated_header_is_truncated(keep, tmp_path):
    from longteng.errors import ImageLoadError
    from longteng.imageio import load_image

    whole = tmp_path / "whole.jpg"
    picture(3, (320, 240)).save(whole, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[:keep])
    with pytest.raises(ImageLoadError) as error:
        load_image(cut)
    assert error.value.reason == "truncated"


def _jpeg_with_corrupt_exif(path: Path) -> Path:
    import struct
    import warnings

    # A TIFF block whose second tag (Make, 100 bytes) points far past its end.
    entries = struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<HHII", 0x010F, 2, 100, 0xFFFF)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + struct.pack("<I", 0)
    picture(4, (200, 150)).save(path, exif=b"Exif\x00\x00" + tiff)
    with warnings.catch_warnings(record=True) as caught:  # the hostile case is real: Pillow does warn
        warnings.simplefilter("always")
        from PIL import ImageOps

        ImageOps.exif_transpose(Image.open(path))
    assert caught, "the constructed EXIF block no longer makes Pillow warn"
    return path


def test_corrupt_exif_does_not_leak_warnings(tmp_path, tiny_onnx_model):
    photo = _jpeg_with_corrupt_exif(tmp_path / "exif.jpg")
    finished = cli("predict", str(photo), "--model", str(tiny_onnx_model))
    assert finished.returncode == exitcodes.OK, finished.stderr
    assert "Warning" not in finished.stderr.decode(), finished.stderr.decode()


def test_mpo_photos_are_found_in_folders(tmp_path):
    folder = tmp_path / "cam"
    folder.mkdir()
    picture(5).save(folder / "stereo.mpo", format="JPEG")
    assert list(discover([folder])) == [folder / "stereo.mpo"]


def test_a_large_non_image_is_refused_before_it_is_hashed(tmp_path, tiny_onnx_model):
    fake = tmp_path / "video.jpg"
    with open(fake, "wb") as handle:
        handle.truncate(64 << 20)  # sparse: 64 MB of zeros
    out = tmp_path / "r.jsonl"
    assert main(["score", str(fake), "--model", str(tiny_onnx_model), "--out", str(out), "--no-progress",
                 "--workers", "1"]) == exitcodes.PARTIAL
    (row,) = read_results(out)
    assert row["error_reason"] == "not_an_image" and row["sha256"] is None, "sniffed, not hashed"
    assert row["size"] == 64 << 20
