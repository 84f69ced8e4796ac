"""Training mechanics on a tiny dataset: checkpoints, resume, init with new classes, safety."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

from longteng.errors import CheckpointError, ConfigError, DatasetError
from longteng.model.checkpoint import build_model, load_checkpoint
from longteng.preprocess import load_and_preprocess
from longteng.training.config import TrainConfig
from longteng.training.progress import SilentReporter
from longteng.training.trainer import train

from conftest import make_dataset


def _config(data, out, **overrides) -> TrainConfig:
    values = dict(
        data=str(data), out=str(out), architecture="single_stage", epochs=2, image_size=64, batch_size=16,
        weights="none", frozen_epochs=1, workers=1, lr=3e-3, eval_batch_size=32,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def finished_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = train(_config(tiny_dataset, out))
    return tiny_dataset, result


def test_run_directory_is_complete(finished_run):
    _, result = finished_run
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "log.jsonl", "curves.png", "best.pt", "last.pt", "report"} <= names
    report_files = {p.name for p in (result.run_dir / "report").iterdir()}
    assert {"report.json", "confusion_matrix.csv", "confusion_matrix.png", "reliability.png"} <= report_files
    assert len((result.run_dir / "log.jsonl").read_text().splitlines()) == 2


def test_checkpoint_is_self_describing_and_reproduces_its_logits(finished_run):
    data, result = finished_run
    checkpoint = load_checkpoint(result.best)
    assert checkpoint.class_names == ["drone/counterfeit", "drone/genuine", "phone/counterfeit", "phone/genuine"]
    assert checkpoint.preprocess.input_size == 64
    assert checkpoint.preprocess.mean == (0.5, 0.5, 0.5)  # what the lite0 weights expect
    assert checkpoint.temperature > 0
    assert checkpoint.operating_point["refer_low"] <= checkpoint.operating_point["refer_high"]
    assert len(checkpoint.manifest_hash) == 64
    assert checkpoint.train_config["image_size"] == 64
    assert checkpoint.optimizer_state is None  # best.pt carries weights, not training state
    model = build_model(checkpoint)
    photo = next((data / "drone" / "genuine").glob("*.png"))
    batch = torch.from_numpy(load_and_preprocess(photo, checkpoint.preprocess))[None]
    with torch.no_grad():
        first, second = model(batch), build_model(load_checkpoint(result.best))(batch)
    assert torch.equal(first, second)


def test_best_checkpoint_is_the_epoch_its_log_ranks_best(finished_run):
    import json

    from longteng.training.metrics import selection_key

    _, result = finished_run
    history = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    ranked = max(history, key=selection_key)
    assert load_checkpoint(result.best).epoch + 1 == ranked["epoch"]  # checkpoints count from 0, the log from 1


def test_resume_continues_exactly_where_it_stopped(tiny_dataset, finished_run, tmp_path):
    _, straight = finished_run
    interrupted = tmp_path / "interrupted"

    class InterruptAfterFirstEpoch(SilentReporter):
        def message(self, text):
            if text.startswith("epoch 1/2"):
                raise KeyboardInterrupt  # as if the operator pressed Ctrl-C right there

    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny_dataset, interrupted), reporter=InterruptAfterFirstEpoch())
    assert load_checkpoint(interrupted / "last.pt").epoch == 0
    train(_config(tiny_dataset, interrupted), resume=True)
    resumed_state = load_checkpoint(interrupted / "last.pt").state_dict
    straight_state = load_checkpoint(straight.last).state_dict
    for key, value in straight_state.items():
        torch.testing.assert_close(resumed_state[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert len((interrupted / "log.jsonl").read_text().splitlines()) == 2


def test_out_directory_is_never_overwritten(finished_run, tiny_dataset):
    _, result = finished_run
    with pytest.raises(ConfigError, match="--resume"):
        train(_config(tiny_dataset, result.run_dir))


def test_init_from_previous_model_grows_the_head(finished_run, tmp_path):
    _, previous = finished_run
    bigger = tmp_path / "bigger"
    make_dataset(bigger, products=("drone", "phone", "usb"), per_class={"train": 8, "val": 4, "test": 4}, seed=3)
    result = train(_config(bigger, tmp_path / "retrained", epochs=1, frozen_epochs=0, lr=1e-9, init=str(previous.best)))
    old = load_checkpoint(previous.best)
    new = load_checkpoint(result.best)
    assert new.class_names == old.class_names + ["usb/counterfeit", "usb/genuine"]
    # With a negligible learning rate the known rows must still be the previous model's.
    head_keys = [k for k, v in old.state_dict.items() if v.shape[:1] == (4,) and v.ndim <= 2]
    assert head_keys, "no classifier head found in the state dict"
    for key in head_keys:
        torch.testing.assert_close(new.state_dict[key][:4], old.state_dict[key], rtol=1e-4, atol=1e-5)
    assert new.state_dict[head_keys[0]].shape[0] == 6


class _Exploit:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-longteng-marker",))


def test_a_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "longteng-checkpoint/1", "meta": "{}", "state_dict": {}, "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a readable checkpoint"), (b"garbage" * 10, "not a readable checkpoint"), (None, "no such checkpoint")],
)
def test_broken_checkpoint_files(tmp_path, content, message):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"format": "longteng-checkpoint/1"}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_corrupt_photos_are_skipped_and_reported(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, per_class={"train": 8, "val": 4, "test": 2})
    (data / "drone" / "genuine" / "train_000.png").write_bytes(b"not a png")
    warnings: list[str] = []

    class Collect:
        def task(self, description, total):
            import contextlib

            return contextlib.nullcontext(lambda n=1: None)

        def message(self, text):
            pass

        def warning(self, text):
            warnings.append(text)

    train(_config(data, tmp_path / "run", epochs=1), reporter=Collect())
    assert any("train_000.png" in w for w in warnings)


def test_empty_validation_split_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, per_class={"train": 6, "test": 2})
    with pytest.raises(DatasetError, match="val split is empty"):
        train(_config(data, tmp_path / "run", epochs=1))


def test_single_class_dataset_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, products=("drone",), per_class={"train": 6, "val": 2})
    shutil.rmtree(data / "drone" / "counterfeit")
    (data / "manifest.csv").unlink()
    with pytest.raises(DatasetError):
        train(_config(data, tmp_path / "run", epochs=1))
