"""Run a model over decoded photos and turn its outputs into the evaluation report.

`ModelOutputs` is what any scorer (a PyTorch checkpoint or an exported ONNX file)
produces; the report is computed from it by torch-free code, so both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from longteng.data.layout import SPLITS, scan_dataset
from longteng.decision import OperatingPoint, ScoreCalibration, calibrated_probabilities
from longteng.errors import CheckpointError, ConfigError, DatasetError
from longteng.preprocess import PreprocessSpec, normalize
from longteng.training.cache import decode_images
from longteng.training.progress import Reporter, SilentReporter


@dataclass
class ModelOutputs:
    logits: np.ndarray  # (N, C) raw logits
    labels: np.ndarray  # (N,) class index, -1 for a class the model does not know


@torch.inference_mode()
def torch_logits(
    model: torch.nn.Module,
    pixels: np.ndarray,
    spec: PreprocessSpec,
    device: torch.device,
    *,
    batch_size: int = 64,
    channels_last: bool = True,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Logits for uint8 (N, S, S, 3) photos, normalised by the runtime's own function."""
    model.eval()
    chunks = []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(pixels), batch_size):
        batch = torch.from_numpy(normalize(np.asarray(pixels[start : start + batch_size]), spec))
        batch = batch.to(device).contiguous(memory_format=memory_format)
        chunks.append(model(batch).float().cpu().numpy())
        if progress:
            progress(len(batch))
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks)


@dataclass
class EvaluationRun:
    report: dict
    probabilities: np.ndarray  # calibrated
    labels: np.ndarray
    records: list  # the evaluated Records, in order
    class_names: list[str]


def evaluate_model(
    model_path: Path | str,
    data_root: Path | str,
    split: str = "test",
    *,
    device: str = "auto",
    workers: int = 1,
    batch_size: int = 64,
    reporter: Reporter | None = None,
) -> EvaluationRun:
    """Score one split of a dataset with a calibrated model and build the full report.

    ``model_path`` is a checkpoint (or run directory) or an exported ``.onnx`` file; both give
    the same numbers. For an ONNX file the report also has an ``unknown`` section: how well
    the model's unknown-object score separates these photos from unrelated ones.
    """
    from longteng.training.report import evaluation_report

    reporter = reporter or SilentReporter()
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"--split {split!r} unknown; allowed: {', '.join(SPLITS)}, all")
    is_onnx = Path(model_path).suffix.lower() == ".onnx"
    if not is_onnx:
        _refuse_two_stage_checkpoint(model_path)
    model = _OnnxScorer(model_path, device, batch_size) if is_onnx else _CheckpointScorer(model_path, device, batch_size)
    classes = model.class_names
    index = {name: i for i, name in enumerate(classes)}
    records = [r for r in scan_dataset(data_root) if split in (r.split, "all")]
    unknown = sum(1 for r in records if r.label not in index)
    if unknown:
        reporter.warning(f"{unknown} photos of classes the model does not know are left out")
    records = [r for r in records if r.label in index]
    if not records:
        raise DatasetError(f"{data_root}: no photos of the model's classes in split {split!r}")
    localisation = None
    if isinstance(model, _OnnxScorer) and model.model.metadata.two_stage:
        with reporter.task(f"glance and focus {split}", len(records)) as advance:
            decoded, logits, localisation = model.two_stage_logits(Path(data_root), records, advance)
    else:
        with reporter.task(f"decode {split}", len(records)) as advance:
            decoded = decode_images(Path(data_root), records, model.preprocess, workers=workers, progress=advance)
        with reporter.task(f"score {split}", len(decoded.records)) as advance:
            logits = model.logits(decoded.pixels, advance)
    for failure in decoded.failures:
        reporter.warning(f"skipped {failure.path}: {failure.detail}")
    labels = np.array([index[r.label] for r in decoded.records], dtype=np.int64)
    probabilities = calibrated_probabilities(logits, model.temperature, model.score_calibration, classes)
    text_check = detectors = aligned_report = artwork_report = None
    metadata = model.model.metadata if isinstance(model, _OnnxScorer) else None
    if metadata is not None and (metadata.text_registry is not None or metadata.aligned_check is not None):
        from longteng.inference.checks import apply_checks

        # The runtime's own fusions (Predictor.predict_pixels calls the same function): the probabilities officers get.
        supervised = probabilities
        reads = model.reads if metadata.text_registry is not None else None
        checked = apply_checks(metadata, model.crops, reads, probabilities, classes)
        probabilities = checked.probabilities
        if metadata.aligned_check is not None:
            aligned_report = {"fired": {"genuine": sum(f is not None for f, r in zip(checked.aligned, decoded.records) if not r.is_counterfeit),
                                        "counterfeit": sum(f is not None for f, r in zip(checked.aligned, decoded.records) if r.is_counterfeit)},
                              "not_registered": int(np.isnan(checked.aligned_scores).sum())}
        if metadata.text_registry is not None:
            text_check = text_check_report(checked.mismatches, decoded.records)
        if checked.artwork_scores is not None:
            artwork_report = artwork_check_report(checked.artwork, decoded.records)
        detectors = model.detector_report(supervised, probabilities, checked.mismatches if metadata.text_registry is not None else None,
                                          decoded.records, checked.aligned_scores, checked.artwork_scores)
    report = evaluation_report(
        probabilities, labels, classes, model.operating_point,
        tells=[r.tells() for r in decoded.records], case_ids=[r.case_id for r in decoded.records], logits=logits,
    )
    report["split"] = split
    report["model"] = str(model_path)
    report["temperature"] = model.temperature
    report["score_calibration"] = model.score_calibration.to_dict()
    report["skipped"] = [f.__dict__ for f in decoded.failures]
    if localisation is not None:
        report["localisation"] = localisation
    if text_check is not None:
        report["text_check"] = text_check
    if aligned_report is not None:
        report["aligned_check"] = aligned_report
    if artwork_report is not None:
        report["artwork_check"] = artwork_report
    if detectors is not None:
        report["detectors"] = detectors
    if isinstance(model, _OnnxScorer) and model.pointing is not None:
        report["heatmap_pointing"] = model.pointing
    if isinstance(model, _OnnxScorer):
        report["model_version"] = model.model.metadata.model_version
        report["unknown"] = model.unknown_report(reporter)
    return EvaluationRun(report, probabilities, labels, decoded.records, classes)


def text_check_report(mismatches: list, records: list) -> dict:
    """How often the text check fired: on genuine photos (false alarms), on counterfeits, per tell."""
    flagged = np.array([m is not None for m in mismatches], dtype=bool)
    genuine = np.array([not r.is_counterfeit for r in records], dtype=bool)
    return {
        "genuine_flagged": int(flagged[genuine].sum()), "n_genuine": int(genuine.sum()),
        "counterfeit_flagged": int(flagged[~genuine].sum()), "n_counterfeit": int((~genuine).sum()),
        "by_kind": {kind: sum(1 for m in mismatches if m is not None and m.kind == kind) for kind in ("spelling", "format")},
        "per_tell": _rate_per_tell(flagged, records, "flagged_rate"),
        "false_alarms": [
            {"path": r.path, "read": m.read, "expected": m.expected}
            for r, m, g in zip(records, mismatches, genuine) if m is not None and g
        ][:20],
    }


def artwork_check_report(findings: list, records: list) -> dict:
    """How often the artwork check fired: on genuine photos (false alarms), on counterfeits, by
    measure and per tell."""
    fired = np.array([f is not None for f in findings], dtype=bool)
    genuine = np.array([not r.is_counterfeit for r in records], dtype=bool)
    by_measure: dict[str, dict[str, int]] = {}
    for finding, g in zip(findings, genuine):
        if finding is not None:
            counts = by_measure.setdefault(finding.measure, {"genuine": 0, "counterfeit": 0})
            counts["genuine" if g else "counterfeit"] += 1
    return {
        "genuine_fired": int(fired[genuine].sum()), "n_genuine": int(genuine.sum()),
        "counterfeit_fired": int(fired[~genuine].sum()), "n_counterfeit": int((~genuine).sum()),
        "by_measure": by_measure, "per_tell": _rate_per_tell(fired, records, "fired_rate"),
        "false_alarms": [{"path": r.path, "finding": f.describe()} for r, f, g in zip(records, findings, genuine)
                         if f is not None and g][:20],
    }


def _rate_per_tell(fired: np.ndarray, records: list, name: str) -> dict:
    """Per tell: how many counterfeits carry it, and the share of them a check fired on."""
    per_tell = {}
    for tell in sorted({t for r in records for t in r.tells()}):
        carrying = np.array([tell in r.tells() and r.is_counterfeit for r in records], dtype=bool)
        if carrying.any():
            per_tell[tell] = {"n": int(carrying.sum()), name: float(fired[carrying].mean())}
    return per_tell


def _refuse_two_stage_checkpoint(model_path: Path | str) -> None:
    from longteng.model.checkpoint import load_checkpoint, resolve_checkpoint_path

    checkpoint = load_checkpoint(resolve_checkpoint_path(model_path))
    if checkpoint.model_config.get("architecture") == "two_stage":
        raise ConfigError(
            f"{model_path}: a two-stage model is evaluated through its exported file, the path officers run: "
            "longteng export RUN --out model.onnx, then longteng evaluate model.onnx DATA"
        )


class _CheckpointScorer:
    """A PyTorch checkpoint, scored exactly as training evaluates it."""

    def __init__(self, model_path: Path | str, device: str, batch_size: int) -> None:
        from longteng.model.checkpoint import build_model, load_checkpoint, resolve_checkpoint_path
        from longteng.training.distributed import resolve_device

        checkpoint = load_checkpoint(resolve_checkpoint_path(model_path))
        if checkpoint.operating_point is None:
            raise CheckpointError(f"{model_path}: model is not calibrated yet (use best.pt of a finished run)")
        self.class_names = checkpoint.class_names
        self.preprocess = checkpoint.preprocess
        self.temperature = checkpoint.temperature
        self.score_calibration = ScoreCalibration.from_dict(checkpoint.score_calibration)
        self.operating_point = OperatingPoint.from_dict(checkpoint.operating_point)
        self.device = resolve_device(device)
        self.network = build_model(checkpoint).to(self.device).to(memory_format=torch.channels_last)
        self.batch_size = batch_size

    def logits(self, pixels: np.ndarray, progress: Callable[[int], None]) -> np.ndarray:
        return torch_logits(self.network, pixels, self.preprocess, self.device, batch_size=self.batch_size, progress=progress)


class _OnnxScorer:
    """An exported model, scored through the officer's runtime (OnnxModel.run)."""

    def __init__(self, model_path: Path | str, device: str, batch_size: int) -> None:
        from longteng.inference.session import OnnxModel, RuntimeOptions

        self.model = OnnxModel(model_path, RuntimeOptions(device=device))
        metadata = self.model.metadata
        self.class_names = metadata.class_names
        self.preprocess = metadata.preprocess
        self.temperature = metadata.temperature
        self.score_calibration = metadata.score_calibration
        self.operating_point = metadata.operating_point
        self.batch_size = batch_size
        self.outputs: dict[str, np.ndarray] = {}
        self.pointing: dict | None = None  # heatmap peaks on the marked tells (two-stage, with evidence)
        self.reads: list[list] = []  # OCR of each focus crop, when the model reads print
        self.crops = np.zeros((0, 1, 1, 3), np.uint8)  # the focus crops, when the model compares them (aligned, artwork checks)

    def logits(self, pixels: np.ndarray, progress: Callable[[int], None]) -> np.ndarray:
        from longteng.training.onnx_scoring import onnx_outputs

        self.outputs = onnx_outputs(self.model, pixels, batch_size=self.batch_size, progress=progress)
        return self.outputs["logits"]

    def two_stage_logits(self, root: Path, records: list, progress: Callable[[int], None]):
        """Through the runtime's two-stage path; IoU against the dataset's boxes where it has them."""
        from longteng.focus import iou_summary, parse_quad, polygon_iou
        from longteng.inference.two_stage import outputs_for_paths
        from longteng.training.pointing import pointing_report
        from longteng.training.cache import DecodeFailure, DecodedImages

        result = outputs_for_paths(
            self.model, [root / record.path for record in records], ("logits", "embedding", "class_maps"),
            batch_size=self.batch_size, progress=progress, read_print=self.model.metadata.text_registry is not None,
            keep_crops=self.model.metadata.aligned_check is not None or self.model.metadata.artwork_check is not None,
        )
        self.outputs = result.outputs
        self.reads = result.reads
        self.crops = np.stack(result.crops) if result.crops else np.zeros((0, 1, 1, 3), np.uint8)
        good = [records[k] for k in result.kept]
        self.pointing = pointing_report(
            good, self.outputs.get("class_maps", np.zeros((0, 1, 1, 1))), [v.box_in_original for v in result.views],
            [v.original_size for v in result.views], self.class_names, self.model.metadata.focus,
        )
        failures = [DecodeFailure(str(Path(f.path).relative_to(root)), f.reason, f.detail) for f in result.failures]
        ious = []
        for record, view in zip(good, result.views):
            try:
                quad = parse_quad(record.extra.get("quad", ""), view.original_size)
            except ValueError:
                quad = None
            if quad is not None:
                box = view.box_in_original
                ious.append(0.0 if box is None else polygon_iou(quad, box.corners()))
        logits = self.outputs.get("logits", np.zeros((0, len(self.class_names)), np.float32))
        decoded = DecodedImages(good, np.zeros((len(good), 1, 1, 3), np.uint8), failures)
        return decoded, logits, iou_summary(ious) if ious else None

    def detector_report(self, supervised: np.ndarray, fused: np.ndarray, mismatches: list | None, records: list,
                        aligned: np.ndarray | None = None, artwork: np.ndarray | None = None) -> dict:
        """Recall at FA <= 0.02 of each detector alone and fused, per tell (training/detectors.py)."""
        from longteng.inference.unknown import MAHALANOBIS
        from longteng.training.detectors import detector_report, detector_scores, novelty_scores

        detector = self.model.metadata.unknown
        novelty = None
        if detector is not None and detector.method == MAHALANOBIS and "embedding" in self.outputs:
            novelty = novelty_scores(self.outputs["embedding"], supervised, self.class_names, detector.parameters)
        flagged = None if mismatches is None else np.array([m is not None for m in mismatches], dtype=bool)
        scores = detector_scores(supervised, fused, flagged, novelty, self.class_names, aligned, artwork)
        return detector_report(scores, np.array([r.is_counterfeit for r in records]), [r.tells() for r in records])

    def unknown_report(self, reporter: Reporter) -> dict | None:
        """The unknown-object score on the photos just scored vs generated unrelated photos."""
        import tempfile

        from longteng.training.onnx_scoring import onnx_outputs
        from longteng.training.unknown_fit import unknown_evaluation
        from longteng.training.unrelated_photos import write_unrelated_photos

        detector = self.model.metadata.unknown
        if detector is None:
            reporter.warning("the model has no unknown-object detector; the report has no unknown section")
            return None
        with tempfile.TemporaryDirectory(prefix="longteng-unrelated-") as directory:
            unrelated = write_unrelated_photos(Path(directory))
            if self.model.metadata.two_stage:
                from longteng.inference.two_stage import outputs_for_paths

                unrelated_outputs = outputs_for_paths(self.model, [photo.path for photo in unrelated]).outputs
            else:
                from longteng.preprocess import load_resized

                pixels = np.stack([load_resized(photo.path, self.preprocess) for photo in unrelated])
                unrelated_outputs = onnx_outputs(self.model, pixels, batch_size=self.batch_size)
        return unknown_evaluation(detector, self.outputs, unrelated_outputs, [photo.kind for photo in unrelated])
