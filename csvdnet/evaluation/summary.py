"""The cohort summary of ``summary.json``: per marker, per-subject distributions and pooled
values with bootstrap intervals, FROC, per-region detection, count / grade / total-score
agreement, and the definitions of every figure (:data:`DEFINITIONS`).

:func:`summarise_cohort` turns the subjects' evaluations
(:func:`~csvdnet.evaluation.subject.evaluate_subject`) into it; :func:`csvdnet.evaluation.evaluate`
adds the run's description and writes it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from csvdnet import SEGMENTATION_TASKS
from csvdnet.evaluation.agreement import (bootstrap_ci, count_agreement, mean_ci,
                                          ordinal_agreement, summarise)
from csvdnet.evaluation.detection import MATCH_DISTANCE_MM, quadratic_weighted_kappa
from csvdnet.evaluation.metrics import LesionCounts, dice_from_counts
from csvdnet.evaluation.points import (OVERLAP_TOLERANCE_MM, REGION_GROUPS, DetectionCounts,
                                       froc)
from csvdnet.evaluation.segmentation import EXCLUDED_LABEL
from csvdnet.evaluation.subject import (GRADES, OBJECT_TASKS, SCORE_CLASSES, STAALS_ITEMS,
                                        SubjectEvaluation)

__all__ = ["DEFINITIONS", "SEGMENTATION_METRICS", "summarise_cohort"]

SEGMENTATION_METRICS = ("dice", "hd95_mm", "avd_pct", "lesion_recall", "lesion_precision",
                        "lesion_f1")
DEFINITIONS = {
    "segmentation": "MICCAI 2017 WMH challenge evaluation.py: reference label 1, label "
                    f"{EXCLUDED_LABEL} removed from the prediction; Dice; HD95 = max of both "
                    "directed 95th percentiles of boundary distances in world mm, boundary = "
                    "mask minus its erosion by a 3x3 in-plane square; AVD % = |Vr - Vp| / Vr x "
                    "100; lesions 26-connected, a true lesion found by any overlapping voxel",
    "detection": "one-to-one matching (most matches, then shortest distances); CMB, lacune and "
                 f"RSSI centres within {MATCH_DISTANCE_MM:g} mm; EPVS within "
                 f"{OVERLAP_TOLERANCE_MM:g} mm of the EPVS itself (voxels, centreline, or the "
                 "length/2 ball about its midpoint) when the label gives its extent, else like "
                 "CMB; F1 = 2TP / (2TP + FP + FN)",
    "froc": "sensitivity (pooled) at 1, 2, 4, 8 false positives per subject, the best "
            "threshold not exceeding the rate; score = their mean",
    "icc": "ICC(A,1), McGraw & Wong 1996: two-way random effects, absolute agreement, single "
           "measurement",
    "bland_altman": "bias = mean(predicted - true), limits = bias +/- 1.96 SD",
    "kappa": "Cohen's kappa, quadratic weights",
    "confidence_intervals": "95 % percentile bootstrap over subjects, 1000 resamples, seed 0",
    "regions": "points assigned by the cohort's region map (else the predicted one): "
               + ", ".join(REGION_GROUPS),
}


def _finite(values: Sequence[Any]) -> np.ndarray:
    return np.array([float(v) for v in values if v is not None and math.isfinite(float(v))])


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    return [r.get(key) for r in rows]


def _pairs(rows: Sequence[Mapping[str, Any]], true_key: str, pred_key: str
           ) -> tuple[list[float], list[float]]:
    pairs = [(r[true_key], r[pred_key]) for r in rows
             if r.get(true_key) is not None and r.get(pred_key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _with_ci(value: float, statistic: Callable[[np.ndarray], float], n: int) -> dict[str, float]:
    low, high = bootstrap_ci(statistic, n)
    return {"value": value, "ci_low": low, "ci_high": high}


def _segmentation_summary(rows: list[dict[str, Any]], task: str) -> dict[str, Any] | None:
    have = [r for r in rows if f"{task}_dice" in r]
    if not have:
        return None
    per = {m: summarise(_column(have, f"{task}_{m}")) for m in SEGMENTATION_METRICS}
    true_ml = np.array(_column(have, f"{task}_volume_true_ml"), float)
    pred_ml = np.array(_column(have, f"{task}_volume_pred_ml"), float)
    dice = np.array(_column(have, f"{task}_dice"), float)
    # Pooled Dice from each subject's overlap |P & R| = Dice (|P| + |R|) / 2 (ml).
    overlap = dice * (true_ml + pred_ml) / 2

    def pooled(i: np.ndarray) -> float:
        return dice_from_counts(float(np.sum(overlap[i])), float(np.sum(true_ml[i] + pred_ml[i])))

    lesions = [LesionCounts(*(int(r[f"{task}_lesions_{k}"])
                              for k in ("true", "detected", "pred", "hit"))) for r in have]
    total = sum(lesions, LesionCounts())

    def pooled_f1(i: np.ndarray) -> float:
        return sum((lesions[j] for j in i), LesionCounts()).f1

    n = len(have)
    return {"n_subjects": n, "per_subject": per,
            "pooled_dice": _with_ci(pooled(np.arange(n)), pooled, n),
            "pooled_lesions": {"true": total.true, "detected": total.detected,
                               "predicted": total.predicted, "hits": total.hits,
                               "recall": total.recall, "precision": total.precision,
                               "f1": _with_ci(total.f1, pooled_f1, n)},
            "volume_ml": count_agreement(true_ml, pred_ml)}


def _detection_summary(evals: list[SubjectEvaluation], task: str) -> dict[str, Any] | None:
    have = [e for e in evals if task in e.matchings]
    if not have:
        return None
    counts = [e.matchings[task].counts for e in have]
    total = sum(counts, DetectionCounts())
    n = len(have)

    def pooled_f1(i: np.ndarray) -> float:
        return sum((counts[j] for j in i), DetectionCounts()).f1

    curve = froc([e.matchings[task] for e in have], [e.confidences[task] for e in have])
    regions: dict[str, dict[str, Any]] = {}
    for group in (*REGION_GROUPS, "other"):
        true_n = found = pred_n = hits = 0
        for e in have:
            true_groups, pred_groups = e.regions[task]
            m = e.matchings[task]
            in_true = np.array([g == group for g in true_groups], bool)
            in_pred = np.array([g == group for g in pred_groups], bool)
            true_n += int(in_true.sum())
            found += int(np.sum(m.true_matched[in_true])) if len(in_true) else 0
            pred_n += int(in_pred.sum())
            hits += int(np.sum(m.predicted_matched[in_pred])) if len(in_pred) else 0
        if true_n or pred_n:
            regions[group] = {"true": true_n, "found": found,
                              "sensitivity": found / true_n if true_n else math.nan,
                              "predicted": pred_n, "hits": hits,
                              "precision": hits / pred_n if pred_n else math.nan}
    return {"n_subjects": n, "radius_mm": have[0].matchings[task].radius_mm,
            "pooled": {"tp": total.tp, "fp": total.fp, "fn": total.fn,
                       "sensitivity": total.sensitivity, "precision": total.precision,
                       "f1": _with_ci(total.f1, pooled_f1, n)},
            "per_subject": {k: summarise([getattr(c, k) for c in counts])
                            for k in ("sensitivity", "precision", "f1")},
            "false_positives_per_subject": summarise([c.fp for c in counts]),
            "count_error": summarise([abs(c.n_true - c.n_pred) for c in counts]),
            "count": count_agreement([c.n_true for c in counts], [c.n_pred for c in counts]),
            "froc": {"at": {f"{k:g}": v for k, v in curve.at.items()}, "score": curve.score,
                     "fp_per_subject": curve.fp_per_subject.tolist(),
                     "sensitivity": curve.sensitivity.tolist()},
            "regions": regions}


def _ordinal_summary(true: list[int], pred: list[int], classes: int) -> dict[str, Any] | None:
    if not true:
        return None
    out = ordinal_agreement(true, pred, classes)
    t, p = np.asarray(true, int), np.asarray(pred, int)
    out["kappa_quadratic_ci"] = list(bootstrap_ci(
        lambda i: quadratic_weighted_kappa(t[i], p[i], classes), len(t)))
    out["accuracy_ci"] = list(mean_ci(t == p))
    return out


def summarise_cohort(evals: list[SubjectEvaluation]) -> dict[str, Any]:
    """The cohort summary of ``summary.json`` (without the run description)."""
    rows = [e.row for e in evals]
    evaluated = [e for e in evals if e.row.get("prediction") == "yes"]
    ok_rows = [e.row for e in evaluated]
    summary: dict[str, Any] = {
        "subjects": {"cohort": len(evals), "evaluated": len(evaluated),
                     "missing_prediction": [r["subject"] for r in rows
                                            if r.get("prediction") == "missing"],
                     "not_evaluated": {e.row["subject"]: e.problems[-1] for e in evals
                                       if e.row.get("prediction") not in ("yes", "missing")},
                     "problems": {e.row["subject"]: e.problems for e in evals if e.problems}},
        "segmentation": {}, "detection": {}, "counts": {}, "grades": {},
        "staals_components": {}, "total_score": {}}
    for task in SEGMENTATION_TASKS:
        if (value := _segmentation_summary(ok_rows, task)) is not None:
            summary["segmentation"][task] = value
    for task in OBJECT_TASKS:
        if (value := _detection_summary(evaluated, task)) is not None:
            summary["detection"][task] = value
    for name in ("cmb_count", "lacune_count", "rssi_count"):
        true, pred = _pairs(ok_rows, f"{name}_true", f"{name}_pred")
        if true:
            summary["counts"][name] = count_agreement(true, pred)
    for name, classes in GRADES.items():
        if (value := _ordinal_summary(*_pairs(ok_rows, f"{name}_true", f"{name}_pred"),
                                      classes)) is not None:
            summary["grades"][name] = value
    for item in STAALS_ITEMS:
        if (value := _ordinal_summary(*_pairs(ok_rows, f"staals_{item}_true",
                                              f"staals_{item}_pred"), 2)) is not None:
            summary["staals_components"][item] = value
    for key, true_key, pred_key in (("rule", "total_true", "total_rule"),
                                    ("ordinal", "total_true", "total_ordinal"),
                                    ("rule_vs_ordinal", "total_rule", "total_ordinal")):
        if (value := _ordinal_summary(*_pairs(ok_rows, true_key, pred_key),
                                      SCORE_CLASSES)) is not None:
            summary["total_score"][key] = value
    return summary
