"""`longteng export`: one ONNX file that carries everything the officer's runtime needs.

Readable top to bottom: load the checkpoint -> export the graph (four outputs, dynamic batch)
-> parity gate against the checkpoint on real photos -> optional int8 and its gate -> fit the
unknown-object detector with the model that ships -> metadata (classes, preprocessing,
temperature, operating point, detector, version, provenance) -> the file and its model card.
Nothing is written at ``out`` unless every gate passed.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from longteng import __version__
from longteng.data.layout import Record, scan_dataset
from longteng.decision import OperatingPoint, ScoreCalibration
from longteng.errors import CheckpointError, ConfigError, DatasetError
from longteng.focus import FocusSpec
from longteng.inference.metadata import ModelMetadata, UnknownDetector
from longteng.inference.model_file import check_model_out, save_with_metadata
from longteng.inference.session import OnnxModel, RuntimeOptions
from longteng.inference.aligned_check import DEFAULT_REFERENCES as DEFAULT_ALIGNED_REFERENCES
from longteng.inference.artwork_check import DEFAULT_REFERENCES as DEFAULT_ARTWORK_REFERENCES, ArtworkCheck
from longteng.inference.text_check import DEFAULT_REFERENCES, TextRegistry
from longteng.model.checkpoint import Checkpoint, build_model, load_checkpoint, resolve_checkpoint_path
from longteng.export.model_card import write_model_card
from longteng.export.onnx_graph import to_onnx
from longteng.export.parity import ParityResult, load_photos, parity_gate
from longteng.export.quantize import DEFAULT_INT8_MODE, Int8Result, compare_int8, int8_mode, quantize_int8, require_int8_agreement
from longteng.training.cache import decode_images
from longteng.training.onnx_scoring import onnx_outputs
from longteng.training.progress import Reporter, SilentReporter
from longteng.training.unknown_fit import UnknownFitConfig, fit_unknown_detector, unknown_evaluation
from longteng.training.unrelated_photos import write_skimage_photos, write_unrelated_photos


TWO_STAGE_FIT_PHOTOS = 300


@dataclass(frozen=True)
class ExportOptions:
    # 18 is what the dynamo exporter writes natively; below it the TorchScript exporter is used.
    opset: int = 18
    int8: bool = False
    calibration: Path | None = None  # dataset root for int8 calibration; default: the training data
    force: bool = False  # ship an int8 model below the agreement gate
    parity_data: Path | None = None  # dataset root when the checkpoint's training data is not here
    int8_mode: str = DEFAULT_INT8_MODE
    unknown: UnknownFitConfig = field(default_factory=UnknownFitConfig)
    parity_sample: int = 48  # dataset photos added to scikit-image's photos in the parity gate
    max_fit_photos: int = 2000  # training photos the unknown detector is fitted on
    max_calibration_photos: int = 200
    # Genuine training photos per product whose print the text check learns (two-stage models;
    # 0: the model reads no print). OCR costs about 0.4 s a photo on 2 cores.
    text_references: int = DEFAULT_REFERENCES
    # Genuine training photos per product kept as references of the aligned comparison
    # (inference/aligned_check.py; two-stage models; 0: the model compares nothing).
    aligned_references: int = DEFAULT_ALIGNED_REFERENCES
    # Genuine training photos per product the artwork check (inference/artwork_check.py) learns
    # from, read in the text check's OCR pass (so only with text_references > 0; 0: no check).
    artwork_references: int = DEFAULT_ARTWORK_REFERENCES
    seed: int = 0

    def __post_init__(self) -> None:
        if not 13 <= self.opset <= 23:
            raise ConfigError(f"--opset must lie between 13 and 23, got {self.opset}")
        int8_mode(self.int8_mode)
        if self.text_references < 0:
            raise ConfigError(f"--text-references cannot be negative, got {self.text_references}")
        if self.artwork_references < 0:
            raise ConfigError(f"--artwork-references cannot be negative, got {self.artwork_references}")
        if self.aligned_references < 0 or self.aligned_references == 1:
            raise ConfigError(f"--aligned-references must be 0 (none) or at least 2, got {self.aligned_references}")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    card_path: Path
    metadata: ModelMetadata
    exporter: str
    exporter_note: str  # why the fallback exporter was used, or ""
    parity: ParityResult
    int8: Int8Result | None
    unknown: dict[str, Any] | None  # the detector's ROC-AUC and flag rates, None without data

    @property
    def model_version(self) -> str:
        return self.metadata.model_version


def export_model(
    checkpoint: Path, out: Path, options: ExportOptions = ExportOptions(), reporter: Reporter | None = None
) -> ExportResult:
    reporter = reporter or SilentReporter()
    out = check_model_out(Path(out))
    checkpoint_path = resolve_checkpoint_path(checkpoint)
    source = load_checkpoint(checkpoint_path)
    if source.operating_point is None:
        raise CheckpointError(f"{checkpoint}: model is not calibrated yet (export best.pt of a finished run)")
    data = _training_data(source, checkpoint_path.parent, options, reporter)
    if source.model_config.get("architecture") == "two_stage":
        return _export_two_stage(source, data, out, options, reporter)

    with tempfile.TemporaryDirectory(prefix="longteng-export-") as scratch_name:
        scratch = Path(scratch_name)
        with reporter.task("export the graph", 1) as advance:
            graph, exporter, note = to_onnx(build_model(source), source.temperature, source.preprocess.input_size, options.opset)
            advance(1)
        if note:
            reporter.warning(f"used the {exporter} exporter: {note}")
        fp32_path = save_with_metadata(graph, _metadata(source, None, "unversioned", {}), scratch / "fp32.onnx")

        parity = parity_gate(fp32_path, source, _parity_pixels(source, data, scratch, options))
        reporter.message(
            f"parity with the checkpoint on {parity.n_photos} photos: max |logit difference| "
            f"{parity.max_abs_logit_difference:.2e}, top-1 agreement {parity.top1_agreement:.0%}"
        )

        shipped, int8 = fp32_path, None
        if options.int8:
            shipped, int8 = _int8(fp32_path, source, checkpoint_path.parent, data, scratch, options, reporter)

        detector, unknown = None, None
        if data is not None:
            detector, unknown = _unknown_detector(shipped, data, scratch, options, reporter)
        else:
            reporter.warning("no training data found: the model ships without an unknown-object detector")

        final = onnx.load(str(shipped))
        provenance = _provenance(source, data, exporter, options.opset, parity, int8, unknown)
        metadata = _metadata(source, detector, model_version(final), provenance)
        save_with_metadata(final, metadata, out)
    card = write_model_card(metadata, out)
    return ExportResult(out, card, metadata, exporter, note, parity, int8, unknown)


def _export_two_stage(
    source: Checkpoint, data: "_TrainingData | None", out: Path, options: ExportOptions, reporter: Reporter
) -> ExportResult:
    """One graph with both stages; parity over decode -> glance -> box -> crop -> focus."""
    from longteng.inference.two_stage import outputs_for_paths
    from longteng.export.two_stage import require_two_stage_parity, two_stage_parity, two_stage_to_onnx
    from longteng.model.checkpoint import focus_spec_of

    if options.int8:
        raise ConfigError("--int8 is not available for two-stage models yet (export fp32)")
    focus = focus_spec_of(source)
    glance_trained = bool(source.extra.get("glance_trained", True))
    with tempfile.TemporaryDirectory(prefix="longteng-export-") as scratch_name:
        scratch = Path(scratch_name)
        with reporter.task("export the graph", 1) as advance:
            graph = two_stage_to_onnx(source, options.opset)
            advance(1)
        fp32_path = save_with_metadata(graph, _metadata(source, None, "unversioned", {}, focus, glance_trained), scratch / "fp32.onnx")
        photos = write_skimage_photos(scratch / "parity")
        if data is not None:
            photos = photos + data.paths("train", options.parity_sample)
        with reporter.task("parity: decode, glance, crop, focus", len(photos)) as advance:
            parity = two_stage_parity(fp32_path, source, photos)
            advance(len(photos))
        require_two_stage_parity(parity)
        reporter.message(
            f"parity with the checkpoint on {parity.n_photos} photos (whole two-stage path): max |logit difference| "
            f"{parity.max_abs_logit_difference:.2e}, top-1 agreement {parity.top1_agreement:.0%}, "
            f"lowest box IoU {parity.min_box_iou:.3f}"
        )
        model = OnnxModel(fp32_path, RuntimeOptions(device="cpu"))
        detector, unknown = None, None
        aligned, aligned_summary, operating_point = None, None, None
        compares = data is not None and options.aligned_references > 0
        if data is not None:
            # Each photo runs the whole runtime path here: a sample fits the detector as well.
            limit = min(options.max_fit_photos, TWO_STAGE_FIT_PHOTOS)
            train_paths, train_labels = data.paths_and_labels("train", limit)
            val_paths, _ = data.paths_and_labels("val", limit)
            known_paths, _ = data.paths_and_labels("test", limit)
            with reporter.task("fit the unknown-object detector", len(train_paths) + len(val_paths) + len(known_paths)) as advance:
                train = outputs_for_paths(model, train_paths, progress=advance, keep_crops=compares)
                val = outputs_for_paths(model, val_paths, progress=advance, keep_crops=compares)
                detector = fit_unknown_detector(train.outputs, train_labels[train.kept], val.outputs, options.unknown)
                known = outputs_for_paths(model, known_paths or val_paths, progress=advance)
            unrelated = write_unrelated_photos(scratch / "unrelated", seed=options.seed)
            unrelated_outputs = outputs_for_paths(model, [photo.path for photo in unrelated]).outputs
            unknown = unknown_evaluation(detector, known.outputs, unrelated_outputs, [p.kind for p in unrelated])
            unknown["known_split"] = "test" if known_paths else "val"
            reporter.message(
                f"unknown objects ({detector.method}): ROC-AUC {unknown['roc_auc']:.3f}; flagged "
                f"{unknown['unrelated_flagged_rate']:.0%} of unrelated, {unknown['known_flagged_rate']:.0%} of known photos"
            )
            if compares:
                from longteng.export.aligned_fit import fit_aligned_check

                base = _metadata(source, None, "unversioned", {}, focus, glance_trained)
                aligned, operating_point, aligned_summary = fit_aligned_check(
                    model, base, data.genuine_references(options.aligned_references), data.record_of,
                    (train, [train_paths[k] for k in train.kept]), (val, [val_paths[k] for k in val.kept]), reporter,
                )
                if aligned is None:
                    reporter.message(f"no aligned check: {aligned_summary['skipped']}")
        else:
            reporter.warning("no training data found: the model ships without an unknown-object detector")
        registry, text_summary, artwork = None, None, None
        if data is not None and options.text_references > 0:
            registry, artwork, text_summary = _text_registry(model, data, options, reporter)
        final = onnx.load(str(fp32_path))
        provenance = _provenance(source, data, "torch.onnx dynamo (two-stage)", options.opset, parity, None, unknown)
        provenance["text_check"] = text_summary
        provenance["aligned_check"] = aligned_summary
        metadata = _metadata(source, detector, model_version(final), provenance, focus, glance_trained)
        metadata = replace(metadata, text_registry=registry, aligned_check=aligned, artwork_check=artwork)
        if operating_point is not None:
            metadata = replace(metadata, operating_point=operating_point)
        save_with_metadata(final, metadata, out)
    card = write_model_card(metadata, out)
    return ExportResult(out, card, metadata, "torch.onnx dynamo (two-stage)", "", parity, None, unknown)


def model_version(model: onnx.ModelProto) -> str:
    """First 16 hex digits of the sha256 of the model without its metadata: same weights, same version."""
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()[:16]


# --------------------------------------------------------------------------- data


class _TrainingData:
    """A dataset root's photos of the model's classes, decoded once per split, sampled reproducibly."""

    def __init__(self, root: Path, checkpoint: Checkpoint, run_dir: Path, seed: int) -> None:
        self.root = root
        self.spec = checkpoint.preprocess
        self.index = {name: i for i, name in enumerate(checkpoint.class_names)}
        self.records = [r for r in scan_dataset(root) if r.label in self.index]
        self._by_path = {str(root / r.path): r for r in self.records}
        self.seed = seed
        self._decoded: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        # Training decoded every split of its dataset once into the run's cache; exporting
        # from that run reads the same arrays instead of decoding the photos again.
        trained_on = checkpoint.train_config.get("data")
        cache = run_dir / "cache"
        same_data = trained_on is not None and Path(trained_on).resolve() == root.resolve()
        self.run_cache = cache if same_data and cache.is_dir() else None

    def paths_and_labels(self, split: str, limit: int) -> tuple[list[Path], np.ndarray]:
        """Files of at most ``limit`` photos of ``split`` (a reproducible sample beyond it) and their labels."""
        chosen = self._sample(split, limit)
        return [self.root / r.path for r in chosen], np.array([self.index[r.label] for r in chosen], dtype=np.int64)

    def paths(self, split: str, limit: int) -> list[Path]:
        return self.paths_and_labels(split, limit)[0]

    def record_of(self, path: Path) -> Record:
        """The record of one of this dataset's photos, by its file path."""
        return self._by_path[str(path)]

    def genuine_references(self, per_product: int) -> dict[str, list[Path]]:
        """Up to ``per_product`` genuine training photos of each product, a reproducible sample."""
        rng = np.random.default_rng(self.seed)
        chosen: dict[str, list[Path]] = {}
        for product in sorted({r.product for r in self.records}):
            genuine = [r for r in self.records if r.split == "train" and r.product == product and r.authenticity == "genuine"]
            keep = sorted(rng.choice(len(genuine), min(per_product, len(genuine)), replace=False)) if genuine else []
            chosen[product] = [self.root / genuine[i].path for i in keep]
        return chosen

    def _sample(self, split: str, limit: int) -> list[Record]:
        chosen: list[Record] = [r for r in self.records if r.split == split]
        if len(chosen) > limit:
            keep = np.random.default_rng(self.seed).choice(len(chosen), limit, replace=False)
            chosen = [chosen[i] for i in sorted(keep)]
        return chosen

    def split(self, split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 pixels, labels) of at most ``limit`` photos of ``split`` (a random sample beyond it)."""
        key = (split, limit)
        if key not in self._decoded:
            records, pixels = self._decode(split, self._sample(split, limit))
            labels = np.array([self.index[r.label] for r in records], dtype=np.int64)
            self._decoded[key] = (pixels, labels)
        return self._decoded[key]

    def _decode(self, split: str, chosen: list[Record]) -> tuple[list[Record], np.ndarray]:
        workers = os.cpu_count() or 1
        if self.run_cache is None:
            decoded = decode_images(self.root, chosen, self.spec, workers=workers)
            return decoded.records, np.asarray(decoded.pixels)
        whole = decode_images(
            self.root, [r for r in self.records if r.split == split], self.spec, cache_dir=self.run_cache, workers=workers,
        )
        row = {record.path: i for i, record in enumerate(whole.records)}
        kept = [record for record in chosen if record.path in row]
        return kept, np.asarray(whole.pixels[[row[record.path] for record in kept]])


def _training_data(
    checkpoint: Checkpoint, run_dir: Path, options: ExportOptions, reporter: Reporter
) -> _TrainingData | None:
    candidates = [options.parity_data, checkpoint.train_config.get("data")]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return _TrainingData(Path(candidate), checkpoint, run_dir, options.seed)
    if options.parity_data is not None:
        raise DatasetError(f"--parity-data {options.parity_data}: no such dataset directory")
    reporter.warning(
        f"the training data {checkpoint.train_config.get('data')!r} is not here: parity is checked on "
        "scikit-image's photos only (pass a dataset root with --parity-data for the full checks)"
    )
    return None


def _parity_pixels(checkpoint: Checkpoint, data: _TrainingData | None, scratch: Path, options: ExportOptions) -> np.ndarray:
    photos = load_photos(write_skimage_photos(scratch / "parity"), checkpoint.preprocess)
    if data is None:
        return photos
    sample, _ = data.split("train", options.parity_sample)
    return np.concatenate([photos, sample])


# --------------------------------------------------------------------------- int8


def _int8(
    fp32_path: Path, checkpoint: Checkpoint, run_dir: Path, data: _TrainingData | None, scratch: Path,
    options: ExportOptions, reporter: Reporter,
) -> tuple[Path, Int8Result]:
    if options.calibration is not None:
        if not Path(options.calibration).is_dir():
            raise DatasetError(f"--calibration {options.calibration}: no such dataset directory")
        data = _TrainingData(Path(options.calibration), checkpoint, run_dir, options.seed)
    if data is None:
        raise ConfigError("--int8 needs calibration photos: pass --calibration DATA (a dataset root)")
    calibration, _ = data.split("train", options.max_calibration_photos)
    val_pixels, val_labels = data.split("val", 10**9)
    if len(calibration) == 0 or len(val_pixels) == 0:
        raise DatasetError(f"{data.root}: int8 needs photos in the train split (calibration) and the val split (the gate)")
    mode = int8_mode(options.int8_mode)
    int8_path = scratch / "int8.onnx"
    with reporter.task(f"int8 calibration ({mode.name})", len(calibration)) as advance:
        quantize_int8(fp32_path, int8_path, calibration, checkpoint.preprocess, mode)
        advance(len(calibration))
    runtime = RuntimeOptions(device="cpu")
    fp32_logits = onnx_outputs(OnnxModel(fp32_path, runtime), val_pixels, ("logits",))["logits"]
    int8_logits = onnx_outputs(OnnxModel(_with_metadata_of(int8_path, fp32_path), runtime), val_pixels, ("logits",))["logits"]
    result = compare_int8(fp32_logits, int8_logits, val_labels, mode.name, len(calibration))
    result = require_int8_agreement(result, options.force)
    if result.forced:
        reporter.warning(f"int8 agrees with fp32 on only {result.top1_agreement:.2%}; shipped because of --force")
    return int8_path, result


def _with_metadata_of(target: Path, source: Path) -> Path:
    """Give the quantized file the fp32 file's metadata, so the runtime can open it."""
    model = onnx.load(str(target))
    props = {entry.key: entry.value for entry in onnx.load(str(source), load_external_data=False).metadata_props}
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(target))
    return target


# --------------------------------------------------------------------------- the text check


def _text_registry(
    model: OnnxModel, data: "_TrainingData", options: ExportOptions, reporter: Reporter
) -> tuple[TextRegistry, ArtworkCheck | None, dict[str, Any]]:
    """What genuine print reads like (the text check) and how its logo is printed (the artwork
    check), learnt through the runtime's own path (decode, glance, crop, OCR) on genuine training
    photos: one OCR pass over both checks' references."""
    from longteng.inference.two_stage import outputs_for_paths

    text_paths = data.genuine_references(options.text_references)
    artwork_paths = data.genuine_references(options.artwork_references) if options.artwork_references else {}
    products = sorted(set(text_paths) | set(artwork_paths))
    paths_of = {product: list(dict.fromkeys([*text_paths.get(product, []), *artwork_paths.get(product, [])])) for product in products}
    reads: dict[str, list] = {}
    artwork_references: dict[str, list] = {}
    with reporter.task("learn the print of genuine photos (OCR)", sum(map(len, paths_of.values()))) as advance:
        for product in products:
            paths = paths_of[product]
            found = outputs_for_paths(model, paths, ("logits",), read_print=True, keep_crops=bool(artwork_paths), progress=advance)
            read_of = {paths[k]: photo_reads for k, photo_reads in zip(found.kept, found.reads)}
            reads[product] = [read_of[path] for path in text_paths.get(product, []) if path in read_of]
            if artwork_paths:
                crop_of = {paths[k]: crop for k, crop in zip(found.kept, found.crops)}
                artwork_references[product] = [(crop_of[path], read_of[path]) for path in artwork_paths.get(product, [])
                                               if path in read_of]
    registry = TextRegistry.learn(reads)
    artwork = ArtworkCheck.learn(artwork_references) if artwork_paths else None
    if artwork is not None and not artwork.products:
        artwork = None
    summary = {"reference_photos": {product: len(photo_reads) for product, photo_reads in reads.items()},
               "mismatch_probability": registry.mismatch_probability,
               "artwork_reference_photos": {product: len(photos) for product, photos in artwork_references.items()}}
    reporter.message(
        "text check: " + "; ".join(f"{product} prints {', '.join(entry['words']) or 'no word'}"
                                   for product, entry in registry.products.items())
    )
    if artwork is not None:
        reporter.message("artwork check: " + "; ".join(f"{product}: logo {entry.logo}, anchor {entry.anchor}"
                                                       for product, entry in sorted(artwork.products.items())))
    return registry, artwork, summary


# --------------------------------------------------------------------------- unknown objects


def _unknown_detector(
    model_path: Path, data: _TrainingData, scratch: Path, options: ExportOptions, reporter: Reporter
) -> tuple[UnknownDetector, dict[str, Any]]:
    model = OnnxModel(model_path, RuntimeOptions(device="cpu"))
    train_pixels, train_labels = data.split("train", options.max_fit_photos)
    val_pixels, _ = data.split("val", 10**9)
    if len(train_pixels) == 0 or len(val_pixels) == 0:
        raise DatasetError(f"{data.root}: the unknown-object detector needs photos in the train and val splits")
    with reporter.task("fit the unknown-object detector", len(train_pixels) + len(val_pixels)) as advance:
        train_outputs = onnx_outputs(model, train_pixels, progress=advance)
        val_outputs = onnx_outputs(model, val_pixels, progress=advance)
        detector = fit_unknown_detector(train_outputs, train_labels, val_outputs, options.unknown)

    known_split = "test"
    known_pixels, _ = data.split("test", 10**9)
    if len(known_pixels) == 0:
        known_split, known_pixels = "val", val_pixels
    unrelated = write_unrelated_photos(scratch / "unrelated", seed=options.seed)
    unrelated_outputs = onnx_outputs(model, load_photos([photo.path for photo in unrelated], data.spec))
    summary = unknown_evaluation(detector, onnx_outputs(model, known_pixels), unrelated_outputs, [p.kind for p in unrelated])
    summary["known_split"] = known_split
    reporter.message(
        f"unknown objects ({detector.method}): ROC-AUC {summary['roc_auc']:.3f} on {summary['n_known']} {known_split} "
        f"vs {summary['n_unrelated']} unrelated photos; flagged {summary['unrelated_flagged_rate']:.0%} of unrelated, "
        f"{summary['known_flagged_rate']:.0%} of {known_split}"
    )
    return detector, summary


# --------------------------------------------------------------------------- metadata and files


def _metadata(
    checkpoint: Checkpoint, detector: UnknownDetector | None, version: str, provenance: dict[str, Any],
    focus: "FocusSpec | None" = None, glance_trained: bool = False,
) -> ModelMetadata:
    return ModelMetadata(
        focus=focus,
        glance_trained=glance_trained,
        class_names=list(checkpoint.class_names),
        preprocess=checkpoint.preprocess,
        temperature=checkpoint.temperature,
        score_calibration=ScoreCalibration.from_dict(checkpoint.score_calibration),
        operating_point=OperatingPoint.from_dict(checkpoint.operating_point or {}),
        unknown=detector,
        model_version=version,
        provenance=provenance,
    )


def _provenance(
    checkpoint: Checkpoint, data: _TrainingData | None, exporter: str, opset: int, parity: ParityResult,
    int8: Int8Result | None, unknown: dict[str, Any] | None,
) -> dict[str, Any]:
    from longteng.data.synth.generate import CONFIG_NAME as SYNTH_CONFIG_NAME

    return _json_safe({
        "backbone": checkpoint.model_config.get("backbone"),
        "initial_weights": checkpoint.train_config.get("weights"),
        # None: the training data was not here to tell.
        "synthetic_data": None if data is None else (data.root / SYNTH_CONFIG_NAME).is_file(),
        "model_config": checkpoint.model_config,
        "manifest_hash": checkpoint.manifest_hash,
        "training_data": checkpoint.train_config.get("data"),
        "epoch": checkpoint.epoch,
        "metrics": checkpoint.metrics,
        "export_date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": checkpoint.code_version,
        "exporter_version": __version__,
        "exporter": exporter,
        "torch_version": torch.__version__,
        "opset": opset,
        "parity": parity.to_dict(),
        "int8": int8.to_dict() if int8 else None,
        "unknown": unknown,
    })


def _json_safe(value: Any) -> Any:
    """Plain JSON: NaN and infinities (e.g. an AUC undefined on a split) become null."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
