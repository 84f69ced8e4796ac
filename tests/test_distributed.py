"""The same `longteng train` command under torchrun: two CPU processes on the gloo backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from longteng.model.checkpoint import load_checkpoint


@pytest.mark.slow
def test_train_under_torchrun_with_two_processes(tiny_dataset, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    longteng = shutil.which("longteng", path=str(Path(sys.executable).parent))
    assert torchrun.exists() and longteng
    out = tmp_path / "ddp_run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", longteng, "train", str(tiny_dataset), "--out", str(out), "--architecture", "single_stage",
         "--epochs", "2", "--frozen-epochs", "1", "--image-size", "64", "--batch-size", "8", "--weights", "none",
         "--device", "cpu", "--workers", "1"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]  # rank 0 alone writes
    # Each process saw half of the 64 training photos; the logged count is their sum.
    assert all(entry["train_images_per_s"] * entry["seconds"] == pytest.approx(64) for entry in log)
    checkpoint = load_checkpoint(out / "best.pt")
    assert checkpoint.operating_point is not None and len(checkpoint.class_names) == 4
