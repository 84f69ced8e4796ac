"""ONNX export: parity with the checkpoint through the runtime path, self-describing metadata,
dynamic batch, class maps, the gates (parity, int8), the CLI's errors and ONNX evaluation."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import torch

from longteng.cli.main import main
from longteng.decision import (
    OperatingPoint, ScoreCalibration, calibrate_scores, calibrated_probabilities, counterfeit_score, decide, softmax,
)
from longteng.errors import CheckpointError
from longteng.inference.metadata import INPUT_NAME, OUTPUT_NAMES
from longteng.inference.session import OnnxModel
from longteng.model.checkpoint import build_model, load_checkpoint
from longteng.export.exporter import model_version
from longteng.export.parity import load_photos, parity_gate
from longteng.export.quantize import (
    DEFAULT_INT8_MODE,
    compare_int8,
    int8_mode,
    quantize_int8,
    require_int8_agreement,
)
from longteng.preprocess import normalize
from longteng.training.evaluate import evaluate_model
from longteng.training.unrelated_photos import write_skimage_photos


@pytest.fixture(scope="module")
def photos(tiny_onnx_model, tiny_dataset, tmp_path_factory) -> np.ndarray:
    """uint8 photos through the runtime's loader: scikit-image's real photos and dataset test photos."""
    spec = load_checkpoint(tiny_onnx_model.parent / "best.pt").preprocess
    paths = write_skimage_photos(tmp_path_factory.mktemp("skimage"))[:6] + sorted(tiny_dataset.glob("*/*/test_00*.png"))
    return load_photos(paths, spec)


def _torch_logits(checkpoint, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return build_model(checkpoint)(torch.from_numpy(normalize(pixels, checkpoint.preprocess))).numpy()


def test_onnx_logits_match_the_checkpoint_through_the_runtime_path(tiny_onnx_model, photos):
    checkpoint = load_checkpoint(tiny_onnx_model.parent / "best.pt")
    outputs = OnnxModel(tiny_onnx_model).run(photos)
    expected = _torch_logits(checkpoint, photos)
    assert np.abs(outputs["logits"] - expected).max() <= 1e-3
    assert np.array_equal(outputs["logits"].argmax(axis=1), expected.argmax(axis=1))
    # The probabilities output is the calibrated softmax the decision module computes.
    np.testing.assert_allclose(outputs["probabilities"], softmax(expected, checkpoint.temperature), atol=1e-5)


def test_the_file_alone_carries_everything_and_gives_the_same_verdicts(tiny_onnx_model, photos, tmp_path):
    checkpoint = load_checkpoint(tiny_onnx_model.parent / "best.pt")
    alone = tmp_path / "copy.onnx"
    shutil.copy(tiny_onnx_model, alone)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.onnx"]  # no external weights file
    model = OnnxModel(alone)
    metadata = model.metadata
    assert metadata.class_names == checkpoint.class_names
    assert metadata.preprocess == checkpoint.preprocess
    assert metadata.temperature == checkpoint.temperature
    assert checkpoint.score_calibration is not None  # the trainer fitted it
    assert metadata.score_calibration == ScoreCalibration.from_dict(checkpoint.score_calibration)
    assert metadata.operating_point == OperatingPoint.from_dict(checkpoint.operating_point)
    assert metadata.model_version == model_version(onnx.load(str(alone)))
    provenance = metadata.provenance
    assert provenance["manifest_hash"] == checkpoint.manifest_hash
    assert provenance["backbone"] == checkpoint.model_config["backbone"]
    assert provenance["opset"] == 18 and provenance["parity"]["passed"] is True
    assert provenance["export_date"] and provenance["code_version"] == checkpoint.code_version

    from_file = decide(
        calibrate_scores(model.run(photos)["probabilities"], metadata.score_calibration, metadata.class_names),
        metadata.class_names, metadata.operating_point,
    )
    from_checkpoint = decide(
        calibrated_probabilities(
            _torch_logits(checkpoint, photos), checkpoint.temperature,
            ScoreCalibration.from_dict(checkpoint.score_calibration), checkpoint.class_names,
        ),
        checkpoint.class_names, OperatingPoint.from_dict(checkpoint.operating_point),
    )
    assert [(d.verdict, d.product) for d in from_file] == [(d.verdict, d.product) for d in from_checkpoint]


def test_the_graph_has_the_runtime_contract(tiny_onnx_model):
    graph = onnx.load(str(tiny_onnx_model)).graph
    assert [value.name for value in graph.input] == [INPUT_NAME]
    assert [value.name for value in graph.output] == list(OUTPUT_NAMES)
    assert all(value.type.tensor_type.shape.dim[0].dim_param for value in (*graph.input, *graph.output))


def test_batch_of_one_and_batch_of_five_give_the_same_outputs(tiny_onnx_model, photos):
    model = OnnxModel(tiny_onnx_model)
    batch = model.run(photos[:5])
    for i in range(5):
        single = model.run(photos[i : i + 1])
        for name in OUTPUT_NAMES:
            np.testing.assert_allclose(single[name][0], batch[name][i], rtol=1e-5, atol=1e-5, err_msg=name)


def test_class_maps_average_to_the_logits(tiny_onnx_model, photos):
    outputs = OnnxModel(tiny_onnx_model).run(photos)
    classes = len(outputs["logits"][0])
    assert outputs["class_maps"].shape[:2] == (len(photos), classes)
    np.testing.assert_allclose(outputs["class_maps"].mean(axis=(2, 3)), outputs["logits"], atol=1e-4)
    assert outputs["embedding"].shape == (len(photos), build_model(load_checkpoint(tiny_onnx_model.parent / "best.pt")).feature_channels)


def test_the_parity_gate_passes_the_real_checkpoint_and_fails_a_perturbed_one(tiny_onnx_model, photos):
    checkpoint = load_checkpoint(tiny_onnx_model.parent / "best.pt")
    result = parity_gate(tiny_onnx_model, checkpoint, photos)
    assert result.passed and result.n_photos == len(photos) and result.max_abs_logit_difference <= 1e-3

    generator = torch.Generator().manual_seed(0)
    head = next(key for key in checkpoint.state_dict if key.startswith("head.") and key.endswith("weight"))
    checkpoint.state_dict[head] = checkpoint.state_dict[head] + 0.05 * torch.randn(
        checkpoint.state_dict[head].shape, generator=generator
    )
    with pytest.raises(CheckpointError, match=r"parity failed on \d+ photos: max \|logit difference\| \S+ \(allowed 0.001\)"):
        parity_gate(tiny_onnx_model, checkpoint, photos)


def _logits_agreeing_on(agreeing: int, total: int = 100) -> tuple[np.ndarray, np.ndarray]:
    fp32 = np.tile([[2.0, 0.0, 0.0]], (total, 1))
    int8 = fp32.copy()
    int8[agreeing:] = [0.0, 2.0, 0.0]
    return fp32, int8


@pytest.mark.parametrize(("agreeing", "refused"), [(98, True), (99, False), (100, False)])
def test_the_int8_gate_refuses_below_99_percent_agreement(agreeing, refused):
    fp32, int8 = _logits_agreeing_on(agreeing)
    result = compare_int8(fp32, int8, np.zeros(100, dtype=np.int64), "u8-per-tensor", n_calibration=10)
    assert result.top1_agreement == agreeing / 100
    assert result.accuracy_change == pytest.approx(-(100 - agreeing) / 100)
    if refused:
        with pytest.raises(CheckpointError, match=r"98\.00% of 100 validation photos .*--force"):
            require_int8_agreement(result, force=False)
        assert require_int8_agreement(result, force=True).forced
    else:
        assert not require_int8_agreement(result, force=False).forced


def test_int8_quantization_runs_through_the_runtime(tiny_onnx_model, tiny_dataset, photos, tmp_path):
    checkpoint = load_checkpoint(tiny_onnx_model.parent / "best.pt")
    calibration = load_photos(sorted(tiny_dataset.glob("*/*/train_00*.png")), checkpoint.preprocess)
    int8_path = quantize_int8(tiny_onnx_model, tmp_path / "int8.onnx", calibration, checkpoint.preprocess, int8_mode(DEFAULT_INT8_MODE))
    graph = onnx.load(str(int8_path)).graph
    quantized_inputs = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert all(name in quantized_inputs for conv in convs[1:] for name in conv.input[:2])
    assert not any(name in quantized_inputs for name in convs[0].input)  # the stem stays float
    gemm = next(node for node in graph.node if node.op_type == "Gemm")
    assert not any(name in quantized_inputs for name in gemm.input)  # so does the head

    quantized = onnx.load(str(int8_path))
    onnx.helper.set_model_props(quantized, {p.key: p.value for p in onnx.load(str(tiny_onnx_model)).metadata_props})
    onnx.save(quantized, str(int8_path))
    int8_logits = OnnxModel(int8_path).run(photos)["logits"]
    fp32_logits = OnnxModel(tiny_onnx_model).run(photos)["logits"]
    assert int8_logits.shape == fp32_logits.shape and np.isfinite(int8_logits).all()
    assert np.abs(int8_logits - fp32_logits).max() < 0.5 * np.abs(fp32_logits).max()


@pytest.mark.parametrize("kind", ["missing", "directory without best.pt", "not a checkpoint"])
def test_export_of_a_bad_path_is_one_line_and_exit_1(tmp_path, capsys, kind):
    source = tmp_path / "source"
    if kind == "directory without best.pt":
        source.mkdir()
    elif kind == "not a checkpoint":
        source = tmp_path / "photo.pt"
        source.write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint")
    code = main(["export", str(source), "--out", str(tmp_path / "model.onnx")])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and str(source) in captured.err
    assert not (tmp_path / "model.onnx").exists()


def test_onnx_evaluation_gives_the_checkpoint_numbers(tiny_onnx_model, tiny_dataset):
    from_checkpoint = evaluate_model(tiny_onnx_model.parent / "best.pt", tiny_dataset, "test").report
    from_onnx = evaluate_model(tiny_onnx_model, tiny_dataset, "test").report
    for key in ("n_photos", "accuracy", "macro_f1", "confusion_matrix"):
        assert from_onnx[key] == from_checkpoint[key], key
    for key in ("counterfeit_recall", "false_alarm_rate", "refer_rate"):
        assert from_onnx["operating_point"][key] == from_checkpoint["operating_point"][key], key
    assert from_onnx["counterfeit"]["roc_auc"] == pytest.approx(from_checkpoint["counterfeit"]["roc_auc"], abs=1e-9)
    assert from_onnx["calibration"]["nll"] == pytest.approx(from_checkpoint["calibration"]["nll"], abs=1e-4)
    unknown = from_onnx["unknown"]
    assert unknown["n_known"] == from_onnx["n_photos"] and unknown["roc_auc"] > 0.9
    assert "unknown" not in from_checkpoint


def test_the_model_card_describes_the_file(tiny_onnx_model):
    card = tiny_onnx_model.with_suffix(".md").read_text()
    metadata = OnnxModel(tiny_onnx_model).metadata
    assert metadata.model_version in card
    assert all(name in card for name in metadata.class_names)
    assert "Synthetic data caveat" in card and "Unknown-object caveat" in card
    assert f"{metadata.operating_point.refer_high:.4f}" in card


def test_training_cache_and_runtime_decode_give_identical_arrays(tiny_onnx_model, tiny_dataset, tmp_path):
    from longteng.data.layout import scan_dataset
    from longteng.inference.predict import decode_photo
    from longteng.training.cache import decode_images

    runtime = OnnxModel(tiny_onnx_model)
    checkpoint = load_checkpoint(tiny_onnx_model.parent / "best.pt")
    assert runtime.metadata.preprocess == checkpoint.preprocess  # the spec travelled, nothing retyped
    records = scan_dataset(tiny_dataset)[:6]
    first = decode_images(tiny_dataset, records, checkpoint.preprocess, cache_dir=tmp_path / "cache")
    cached = decode_images(tiny_dataset, records, checkpoint.preprocess, cache_dir=tmp_path / "cache")
    for index, record in enumerate(first.records):
        served = decode_photo(tiny_dataset / record.path, runtime.metadata, max_pixels=10**8)
        np.testing.assert_array_equal(first.pixels[index], served)
        np.testing.assert_array_equal(cached.pixels[index], served)


def test_the_runtime_applies_the_score_calibration_the_file_carries(tiny_onnx_model, photos, tmp_path):
    """A file whose metadata says slope 0.5, bias 2: every prediction's probabilities are the
    graph's temperature-scaled ones moved by exactly that, and the verdicts follow them."""
    import json

    from longteng.inference.predict import Predictor

    proto = onnx.load(str(tiny_onnx_model))
    props = {p.key: p.value for p in proto.metadata_props}
    props["longteng.score_calibration"] = json.dumps({"slope": 0.5, "bias": 2.0})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    shifted = tmp_path / "shifted.onnx"
    onnx.save(proto, str(shifted))

    predictor = Predictor(shifted)
    metadata = predictor.metadata
    assert metadata.score_calibration == ScoreCalibration(0.5, 2.0)
    paths = [tmp_path / f"p{i}.png" for i in range(len(photos))]
    predictions = predictor.predict_pixels(paths, photos)
    graph = predictor.model.run(photos)["probabilities"]
    expected = calibrate_scores(graph, ScoreCalibration(0.5, 2.0), metadata.class_names)
    np.testing.assert_allclose(np.stack([p.probabilities for p in predictions]), expected, atol=1e-9)
    assert not np.allclose(expected, graph, atol=1e-3)  # the bias moved mass towards counterfeit
    unknown = np.array([p.decision.refer_reason == "unknown" for p in predictions])  # scikit-image's photos
    assert [p.decision.verdict for p in predictions] == [
        d.verdict for d in decide(expected, metadata.class_names, metadata.operating_point, unknown=unknown)
    ]
    np.testing.assert_allclose([p.decision.counterfeit_score for p in predictions],
                               counterfeit_score(expected, metadata.class_names), atol=1e-9)
