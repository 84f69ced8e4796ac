"""The model card written beside every exported model: what it is for, what it was trained and
measured on, how its decisions are made, and where it must not be trusted.

Rendered from the model's own metadata, so the card cannot drift from the file it describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from longteng.inference.metadata import ModelMetadata

_HEADLINE = (
    ("accuracy", "top-1 accuracy over the product x authenticity classes"),
    ("counterfeit_recall", "counterfeit recall at the operating point (REFER counts as caught)"),
    ("false_alarm_rate", "false-alarm rate (genuine declared COUNTERFEIT)"),
    ("refer_rate", "REFER rate"),
    ("roc_auc", "counterfeit ROC-AUC"),
    ("ece_top_class", "expected calibration error (top class)"),
)


def card_path_for(model_path: Path) -> Path:
    return model_path.with_suffix(".md")


def write_model_card(metadata: ModelMetadata, model_path: Path) -> Path:
    path = card_path_for(model_path)
    path.write_text(render_model_card(metadata, model_path.name))
    return path


def render_model_card(metadata: ModelMetadata, model_name: str) -> str:
    provenance = metadata.provenance
    op = metadata.operating_point
    spec = metadata.preprocess
    lines = [
        f"# Model card: {model_name}",
        "",
        f"Model version `{metadata.model_version}` (content hash of the graph and weights), exported "
        f"{provenance.get('export_date', '?')} by longteng {provenance.get('exporter_version', '?')} "
        f"from a checkpoint of longteng {provenance.get('code_version', '?')}.",
        "",
        "## Intended use",
        "",
        "Triage of customs inspection photos of smartphones, drones and USB flash drives: the model "
        "answers GENUINE, COUNTERFEIT or REFER (send to an expert), with the product type and a "
        "calibrated confidence. It supports an officer's decision; it does not replace the expert "
        "examination that REFER and every seizure require. Not intended for other products, for "
        "photos that do not show one item, or for any decision about people.",
        "",
        "## Model",
        "",
        f"* Backbone: `{provenance.get('backbone', '?')}` (initial weights: {provenance.get('initial_weights') or '?'}), "
        "global average pooling, one linear head.",
        f"* Classes, in output order: {', '.join(f'`{name}`' for name in metadata.class_names)}.",
        f"* Input: `{spec.input_size}x{spec.input_size}` RGB, {spec.resize_mode} resize ({spec.interpolation}), "
        f"normalised with mean {list(spec.mean)} and std {list(spec.std)}; the runtime reads this from the file.",
        f"* ONNX opset {provenance.get('opset', '?')}, exporter: {provenance.get('exporter', '?')}; "
        f"precision: {'int8 (static QDQ)' if provenance.get('int8') else 'float32'}.",
        "* Outputs: `logits`, calibrated `probabilities`, `class_maps` (where the model looked; their "
        "spatial mean equals the logits) and `embedding` (for the unknown-object score).",
        "",
        "## Training data",
        "",
        f"* Dataset manifest hash: `{provenance.get('manifest_hash') or 'unknown'}`.",
        f"* Dataset root at training time: `{provenance.get('training_data') or 'unknown'}`.",
        "* Splits are made by seizure case, so photos of one shipment never appear in two splits.",
        *_synthetic_line(provenance.get("synthetic_data")),
        "",
        "## Metrics (test split of the training dataset, from the checkpoint)",
        "",
        *_metrics_table(provenance.get("metrics", {})),
        "",
        "## Calibration and operating point",
        "",
        f"* Temperature {metadata.temperature:.4f}, fitted on the validation split (the `probabilities` output applies it).",
        f"* Score calibration: slope {metadata.score_calibration.slope:.4f}, bias {metadata.score_calibration.bias:.4f} "
        "(Platt scaling of the counterfeit-vs-genuine log-odds, fitted on the validation split after the temperature; "
        "the runtime applies it to the `probabilities` output: longteng.decision.calibrate_scores).",
        f"* Counterfeit score = summed probability of the `*/counterfeit` classes. GENUINE below "
        f"{op.refer_low:.4f}, COUNTERFEIT from {op.refer_high:.4f}, REFER in between.",
        f"* Chosen on validation for a false-alarm rate of at most {op.max_false_alarm_rate:.1%} "
        f"and a counterfeit recall of at least {op.min_counterfeit_recall:.1%} (REFER counts as caught).",
        "",
        "## Unknown objects",
        "",
        *_unknown_lines(metadata, provenance.get("unknown")),
        "",
        "## Text check",
        "",
        *_text_lines(metadata, provenance.get("text_check")),
        "",
        "## Artwork check",
        "",
        *_artwork_lines(metadata),
        "",
        "## Aligned check",
        "",
        *_aligned_lines(metadata, provenance.get("aligned_check")),
        "",
        "## Export checks",
        "",
        *_check_lines(provenance),
        "",
        "## Limits",
        "",
        "* **Synthetic data caveat**: if the training data was produced by `longteng data synth` "
        "(fictional brands, procedurally drawn products), the model knows nothing about real products "
        "and its metrics say nothing about real seizures. Retrain and re-evaluate on real, case-split "
        "photos before any operational use.",
        "* **Unknown-object caveat**: the unknown score is measured against scikit-image photos and "
        "drawn stand-ins (documents, empty cardboard, flat colours, noise). A real-world object close to "
        "the products (another electronic device, a product photographed from an unseen angle) can "
        "look familiar and receive a confident verdict. Low scores are no proof that a photo is in scope.",
        "* Calibration and the operating point hold for photos like the validation split; a new camera, "
        "site or product generation shifts them. Re-check with `longteng evaluate` on fresh labelled photos.",
        "* Counterfeits whose tells were never seen in training (a new forgery technique) can be missed.",
    ]
    return "\n".join(lines) + "\n"


def _synthetic_line(synthetic: bool | None) -> list[str]:
    if synthetic:
        return ["* **The training data is synthetic** (written by `longteng data synth`): fictional brands, drawn products."]
    if synthetic is None:
        return ["* Whether the training data is synthetic could not be checked (the dataset was not available at export)."]
    return []


def _metrics_table(metrics: Mapping[str, Any]) -> list[str]:
    test = metrics.get("test") if isinstance(metrics, Mapping) else None
    if not test:
        return ["No test metrics were recorded in the checkpoint (empty test split)."]
    rows = ["| metric | value |", "| --- | --- |"]
    for key, label in _HEADLINE:
        value = test.get(key)
        rows.append(f"| {label} | {'n/a' if value is None else f'{value:.4f}'} |")
    return rows


def _text_lines(metadata: ModelMetadata, summary: Mapping[str, Any] | None) -> list[str]:
    registry = metadata.text_registry
    if registry is None:
        return ["No text check: the model does not read the print (no training data at export, or --text-references 0)."]
    lines = [
        "The runtime reads the print on each focus crop (OCR) and compares it with what the genuine "
        "reference photos print; a misspelt word or a wrong format raises the counterfeit score s to "
        f"1 - (1 - s)(1 - {registry.mismatch_probability:g}) (inference/text_check.py).",
    ]
    references = (summary or {}).get("reference_photos") or {}
    for product, entry in sorted(registry.products.items()):
        lines.append(
            f"* `{product}` ({references.get(product, '?')} reference photos): words "
            f"{', '.join(f'`{w}`' for w in entry['words']) or 'none'}; formats {', '.join(f'`{f}`' for f in entry['formats']) or 'none'}."
        )
    return lines


def _artwork_lines(metadata: ModelMetadata) -> list[str]:
    check = metadata.artwork_check
    if check is None:
        return ["No artwork check (no text check, exported with --artwork-references 0 or too few genuine photos, or no logo read on them)."]
    lines = [
        "The runtime measures the logo OCR finds on each focus crop (its length, height to length, place beside the "
        "product's anchor print and ink against the shell) against the genuine references; a measure "
        f"{check.fires_at:g} or more of the references' spreads off raises the counterfeit score s to "
        f"1 - (1 - s)(1 - {check.mismatch_probability:g}) (inference/artwork_check.py).",
    ]
    for product, entry in sorted(check.products.items()):
        measures = ", ".join(f"{name} {entry.medians[name]:.3f} ± {entry.spreads[name]:.3f}" for name in entry.medians)
        lines.append(f"* `{product}` ({entry.references} reference photos): logo `{entry.logo}`, anchor `{entry.anchor}`; {measures}; "
                     f"{len(entry.inks)} reference inks.")
    return lines


def _aligned_lines(metadata: ModelMetadata, summary: Mapping[str, Any] | None) -> list[str]:
    check = metadata.aligned_check
    if check is None:
        reason = (summary or {}).get("skipped") or "no training data at export, or --aligned-references 0"
        return [f"No aligned check ({reason})."]
    a, b, c = check.fusion
    counts = ", ".join(f"`{name}` {len(r.pixels)}" for name, r in sorted(check.products.items()))
    return [
        "The runtime registers each focus crop onto its product's genuine references and scores how it differs, "
        "place by place (inference/aligned_check.py); the counterfeit log-odds become "
        f"{a:.3f} * logit(s) + {b:.3f} * max(0, score - {check.fires_above:.3f}) + {c:.3f}, fitted on validation "
        "photos (the check adds evidence only where it fires), and the operating point above was chosen on those "
        "fused scores.",
        f"* References per product: {counts} (at {check.size} px).",
        f"* It reports evidence (fires) above a score of {check.fires_above:.3f}: what 2% of genuine validation photos reach.",
    ]


def _unknown_lines(metadata: ModelMetadata, summary: Mapping[str, Any] | None) -> list[str]:
    detector = metadata.unknown
    if detector is None:
        return ["No unknown-object detector: no training data was available at export, so every photo gets a verdict."]
    lines = [
        f"* Method: `{detector.method}` on the `embedding` output; a photo scoring above "
        f"{detector.threshold:.4g} is *unknown* and goes to REFER whatever the classifier says.",
        f"* Threshold: the {detector.parameters.get('percentile', 99):g}th percentile of the scores of "
        "in-distribution validation photos (about 1% of ordinary photos are referred as unknown).",
    ]
    if summary and summary.get("roc_auc") is not None:
        lines.append(
            f"* ROC-AUC {summary['roc_auc']:.4f} separating {summary['n_known']} in-distribution "
            f"{summary.get('known_split', 'test')} photos from {summary['n_unrelated']} unrelated images; "
            f"{summary['unrelated_flagged_rate']:.1%} of the unrelated ones and "
            f"{summary['known_flagged_rate']:.1%} of the in-distribution ones are flagged."
        )
        for method, auc in summary.get("baselines_roc_auc", {}).items():
            lines.append(f"* For comparison, the `{method}` score reaches ROC-AUC {auc:.4f} on the same photos.")
    return lines


def _check_lines(provenance: Mapping[str, Any]) -> list[str]:
    lines = []
    parity = provenance.get("parity")
    if parity:
        lines.append(
            f"* Parity with the PyTorch checkpoint on {parity['n_photos']} photos: max |logit difference| "
            f"{parity['max_abs_logit_difference']:.2e} (allowed {parity['tolerance']:g}), top-1 agreement "
            f"{parity['top1_agreement']:.2%}."
        )
    int8 = provenance.get("int8")
    if int8:
        change = int8.get("accuracy_change")
        lines.append(
            f"* int8 (`{int8['mode']}`, {int8['n_calibration']} calibration photos): top-1 agreement with "
            f"float32 {int8['top1_agreement']:.2%} on {int8['n_photos']} validation photos"
            + (f", accuracy change {change:+.4f}" if change is not None else "")
            + (" — **below the required agreement, shipped with --force**" if int8.get("forced") else "")
            + "."
        )
    return lines or ["None recorded."]
