"""The model card (``MODEL_CARD.md``) of an exported model, written from its metadata.

Sections follow Mitchell et al., "Model Cards for Model Reporting" (2019): details, intended
use, inputs and outputs, training data, evaluation, limitations, how it was made. Every number
comes from ``metadata.json``; nothing is typed in by hand.
"""

from __future__ import annotations

from typing import Any

__all__ = ["model_card"]

_METRIC_NAMES = {
    "dice_wmh": "WMH Dice", "lesion_f1_wmh": "WMH lesion F1",
    "dice_rssi": "RSSI Dice", "lesion_f1_rssi": "RSSI lesion F1",
    "dice_lacune": "lacune Dice", "lesion_f1_lacune": "lacune lesion F1",
    "f1_cmb": "CMB detection F1", "f1_epvs": "EPVS detection F1",
    "score_accuracy": "ordinal total score accuracy", "score_kappa": "ordinal total score kappa",
    "selection": "selection (mean of one value per marker)",
}


def _metric_rows(metrics: dict[str, Any]) -> list[str]:
    rows = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        shown = f"{value:.3f}" if isinstance(value, (int, float)) else str(value)
        rows.append(f"| {_METRIC_NAMES.get(key, key)} (`{key}`) | {shown} |")
    return rows


def _value(entry: Any) -> str:
    """A pooled figure with its 95 % bootstrap interval when there is one."""
    if isinstance(entry, dict):
        value, low, high = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
        if isinstance(value, (int, float)) and isinstance(low, (int, float)):
            return f"{value:.3f} ({low:.3f}-{high:.3f})"
        entry = value
    return f"{entry:.3f}" if isinstance(entry, (int, float)) else "n/a"


def _native_marker_rows(native: dict[str, Any]) -> list[str]:
    """Per-marker rows of a ``csvdnet evaluate`` summary: pooled Dice and lesion F1 of the
    segmentation markers, pooled detection F1, sensitivity and false positives per subject."""
    lines = ["", "Per marker, pooled over the same subjects (95 % bootstrap interval):", "",
             "| marker | metric | value |", "|---|---|---|"]
    for task, entry in (native.get("segmentation") or {}).items():
        lines.append(f"| {task} | Dice | {_value(entry.get('pooled_dice'))} |")
        lines.append(f"| {task} | lesion F1 | "
                     f"{_value((entry.get('pooled_lesions') or {}).get('f1'))} |")
    for task, entry in (native.get("detection") or {}).items():
        pooled = entry.get("pooled") or {}
        fp = (entry.get("false_positives_per_subject") or {}).get("mean")
        lines.append(f"| {task} | detection F1 ({entry.get('radius_mm', '?')} mm) | "
                     f"{_value(pooled.get('f1'))}; sensitivity {_value(pooled.get('sensitivity'))}"
                     f", {_value(fp)} false positives per subject |")
    return lines


def model_card(metadata: dict[str, Any], notes: str | None = None) -> str:
    """Markdown model card of an export.

    Args:
        metadata: The export's ``metadata.json`` content (``files`` not needed).
        notes: Markdown appended under "How it was made" (commands, seeds).
    """
    m = metadata
    training = m.get("training") or {}
    versions = m.get("versions") or {}
    description = training.get("description") or "(no description given at export)"
    spacing = " x ".join(f"{s:g}" for s in m["spacing"]) + " mm" if m.get("spacing") else \
        "the reference grid's voxel size"
    lines = [
        f"# Model card: {m['name']} version {m['version']}", "",
        "**Research software, not a medical device: not for clinical use.** Every output must "
        "be checked by a qualified reader.", "",
        "## Model details", "",
        f"- Multi-task 3D network of csvdnet {versions.get('csvdnet', '?')}: WMH, RSSI and "
        f"lacune segmentation, CMB and EPVS detection heatmaps, and an ordinal head (CORAL "
        f"cumulative logits) for the total SVD score (0-{m['score_classes'] - 1}).",
        f"- Exported {m.get('created', '?')} from run `{training.get('run', '?')}` "
        f"(`{training.get('weights', '?')}` weights, epoch {training.get('epoch')}, step "
        f"{training.get('step')}); precision {m.get('precision', 'float32')}.",
        f"- TensorFlow {versions.get('tensorflow', '?')}, Keras {versions.get('keras', '?')}, "
        f"Python {versions.get('python', '?')}. TF SavedModel in TF Serving layout; "
        f"`metadata.json` holds the sha256 of every file.", "",
        "## Intended use", "",
        "Research on cerebral small vessel disease: rating the five STRIVE markers and the total "
        "SVD score (Staals et al. 2014) on brain MRI, with `csvdnet predict` (in process) or "
        "behind TensorFlow Serving. Out of scope: any clinical decision; images unlike the "
        "training data (other sequences, field strengths, pathology).", "",
        "## Inputs and outputs", "",
        f"- Input `image` float32 `[batch, x, y, z, {len(m['channels'])}]`, channels in this "
        f"order: {', '.join(m['channels'])}; canonical RAS at {spacing}, each channel clipped "
        f"to the in-brain percentiles {m.get('normalisation', {}).get('clip_percentiles')} and "
        f"z-scored in the brain (`csvdnet predict` does this preprocessing).",
        f"- Dense outputs are predicted window by window: windows of {m['window']} voxels, "
        f"overlap {m['overlap']}, Gaussian blending "
        f"{'on' if m['gaussian_blend'] else 'off'}; the score from one whole-volume call "
        f"of the `score` signature. Any size works (padded to a multiple of {m['stride']} "
        f"inside the graph).",
        "- Signatures: `serving_default` (wmh, rssi, lacune, cmb, epvs, score_logits, "
        "score_probs), `score` (score_logits, score_probs), `serve_bytes` (raw float32 bytes "
        "+ shape in, the outputs of `serving_default` out).",
        f"- Thresholds: {m['thresholds']}; smallest lesion reported (mm3): "
        f"{m['min_lesion_mm3']}; rule sets: {', '.join(m['rule_sets'])}.",
        "- Heatmap peaks, the maximum of their neighbourhood: "
        + ", ".join(f"{task} {(m.get('peak_neighbourhood') or {}).get(task, 'cube')}"
                    for task in ("cmb", "epvs"))
        + "; EPVS peaks on a higher peak's ridge outside the basal ganglia "
        + (f"dropped (ridge fraction {m['peak_ridge']['epvs']:g})."
           if (m.get("peak_ridge") or {}).get("epvs") else "kept (no ridge fraction)."),
        _calibration_line(m.get("training", {}).get("calibration")),
        f"- Modality dropout in training: {m['modality_dropout']} (a missing sequence is "
        f"{'flagged, not refused' if m['modality_dropout'] > 0 else 'refused'}).", "",
        "## Training data", "", description, "",
    ]
    subjects = training.get("subjects") or {}
    if subjects:
        lines += [", ".join(f"{k}: {v} subjects" for k, v in subjects.items()) + ".", ""]
    recipe = training.get("recipe") or {}
    if recipe:
        lines += ["Recipe: " + ", ".join(f"{k} {v}" for k, v in recipe.items()) + ".", ""]
    lines += ["## Evaluation", "", "Validation subjects of the run (the epoch the weights come "
              "from; thresholds as configured in the recipe, before calibration):", ""]
    lines += _metric_rows(training.get("validation") or {}) if training.get("validation") \
        else ["(no validation metrics recorded)"]
    evaluation = m.get("evaluation")
    if evaluation:
        lines += ["", f"Held-out cache `{evaluation['cache']}` ({evaluation['subjects']} "
                      f"subjects the run never saw; "
                      f"{evaluation['seconds_per_subject']:.1f} s per subject):", ""]
        lines += _metric_rows(evaluation["metrics"])
    else:
        lines += ["", "No held-out evaluation was recorded at export (`csvdnet export "
                      "--heldout-cache`)."]
    native = m.get("evaluation_native")
    if native:
        evaluated = (native.get("subjects") or {}).get("evaluated", "?")
        lines += ["", f"Held-out predictions evaluated in each subject's native space "
                      f"(`csvdnet evaluate`, `{native['source']}`, {evaluated} subjects), total "
                      f"SVD score against the truth:", "",
                  "| total score | accuracy | within one | quadratic kappa |", "|---|---|---|---|"]
        for key, entry in (native.get("total_score") or {}).items():
            cells = [entry.get(k) for k in ("accuracy", "within_one", "kappa_quadratic")]
            lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(
                f"{c:.3f}" if isinstance(c, (int, float)) else "n/a" for c in cells) + " |")
        lines += _native_marker_rows(native)
    lines += [
        "", "## Limitations", "",
        "- Accuracy is only what the tables above say, on the data they name.",
        "- RSSI is reported on its own and never added to a total score; cortical superficial "
        "siderosis (CAA-SVD score) is not measured.",
        "- The ordinal head and the rule-based Staals total can disagree; reports flag it.", "",
        "## How it was made", "",
    ]
    if m.get("command"):
        lines += ["```", m["command"], "```", ""]
    if notes:
        lines += [notes.strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def _calibration_line(calibration: dict | None) -> str:
    """How the thresholds were chosen, for the model card."""
    if not calibration:
        return "- Thresholds as configured in the recipe (not calibrated)."
    chosen = [f"{task} {found['metric']} {found['configured']:.2f} -> {found['value']:.2f} "
              + (f"with ridge {found['ridge']:g} " if found.get("ridge") else "")
              + f"({found['lesions']} lesions)"
              for task, found in calibration.get("tasks", {}).items() if found.get("calibrated")]
    kept = [task for task, found in calibration.get("tasks", {}).items()
            if not found.get("calibrated")]
    return (f"- Thresholds and smallest sizes calibrated on the run's "
            f"{calibration.get('subjects', 0)} validation subjects (`csvdnet calibrate`): "
            + ("; ".join(chosen) or "none changed")
            + (f"; kept as configured: {', '.join(kept)}" if kept else "") + ".")
