"""``csvdnet evaluate``: a prediction folder against a labelled cohort, as reviewers expect.

:func:`evaluate` reads the cohort (:func:`csvdnet.io.read_cohort`) and a ``csvdnet predict``
output folder (plain or BIDS derivatives), evaluates every subject
(:func:`~csvdnet.evaluation.subject.evaluate_subject`) and writes to ``out_dir``:

- ``metrics_per_subject.tsv``: one row per cohort subject, a subject without a prediction or a
  label included with its ``problems`` (never dropped);
- ``summary.json``: per marker, per-subject distributions (mean with a 95 % bootstrap interval,
  SD, median, quartiles) and pooled values with bootstrap intervals; FROC; per-region
  sensitivity and precision; count, grade and total-score agreement; the definitions used;
  which subjects were missing what;
- ``evaluation.html``: one offline page with the plots (:mod:`csvdnet.evaluation.html`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from csvdnet import SEGMENTATION_TASKS, __version__
from csvdnet.evaluation.agreement import (bootstrap_ci, count_agreement, mean_ci,
                                          ordinal_agreement, summarise)
from csvdnet.evaluation.detection import quadratic_weighted_kappa
from csvdnet.evaluation.inputs import (is_bids_derivatives, load_prediction, load_truth,
                                       read_scores)
from csvdnet.evaluation.metrics import LesionCounts, dice_from_counts
from csvdnet.evaluation.points import (FROC_RATES, OVERLAP_TOLERANCE_MM, REGION_GROUPS,
                                       DetectionCounts, froc)
from csvdnet.evaluation.segmentation import EXCLUDED_LABEL
from csvdnet.evaluation.subject import (GRADES, OBJECT_TASKS, SCORE_CLASSES, STAALS_ITEMS,
                                        SubjectEvaluation, evaluate_subject)
from csvdnet.evaluation.detection import MATCH_DISTANCE_MM
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import write_text_atomic
from csvdnet.io import Cohort, read_cohort

__all__ = ["EVALUATION_FORMAT_VERSION", "Evaluation", "evaluate", "headline", "parse_radius",
           "summarise_cohort"]

EVALUATION_FORMAT_VERSION = 1
"""Version of the ``summary.json`` layout."""

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


class Evaluation:
    """What :func:`evaluate` wrote: ``rows`` (per subject), ``summary`` and the file paths."""

    def __init__(self, rows: list[dict[str, Any]], summary: dict[str, Any], out_dir: Path):
        self.rows, self.summary, self.out_dir = rows, summary, out_dir
        self.per_subject_tsv = out_dir / "metrics_per_subject.tsv"
        self.summary_json = out_dir / "summary.json"
        self.html = out_dir / "evaluation.html"


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


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}" if math.isfinite(value) else "n/a"
    return str(value)


def _json_safe(value: Any) -> Any:
    """NaN / inf -> null (JSON has neither), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _write_tsv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = ["subject", "prediction"]
    for row in rows:
        columns += [c for c in row if c not in columns and c != "problems"]
    columns.append("problems")
    lines = ["\t".join(columns)]
    lines += ["\t".join(_cell(row.get(c)).replace("\t", " ") for c in columns) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def evaluate(cohort: str | os.PathLike | Cohort, pred_dir: str | os.PathLike,
             out_dir: str | os.PathLike, *, radius_mm: Mapping[str, float] | None = None,
             on_subject: Callable[[str, str], None] | None = None) -> Evaluation:
    """Evaluate ``pred_dir`` against ``cohort`` and write the outputs to ``out_dir``.

    Args:
        cohort: Labelled cohort folder / manifest CSV, or a read :class:`~csvdnet.io.Cohort`.
        pred_dir: Output folder of ``csvdnet predict`` (plain or BIDS derivatives).
        out_dir: Where the three outputs go (created).
        radius_mm: Task -> matching radius in mm, overriding the defaults
            (:func:`csvdnet.evaluation.points.match_radius`).
        on_subject: Called as ``(subject id, state)`` after each subject (progress display);
            state is ``evaluated`` or why not (``no prediction``, ``NOT EVALUATED: ...``).

    Returns:
        The rows, the summary and the paths written.

    A subject whose prediction is on another grid than its reference image is not evaluated
    (``prediction`` = ``other grid``, listed in ``summary["subjects"]["not_evaluated"]``): it
    is another image's prediction, and its counts would be scored against the wrong patient.

    Raises:
        CsvdnetInputError: The cohort cannot be read, ``pred_dir`` is not a folder, or no
            subject could be evaluated (nothing is written then).
    """
    from csvdnet.evaluation.html import write_html

    cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    if not pred_dir.is_dir():
        raise CsvdnetInputError(pred_dir, "prediction folder not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    bids = is_bids_derivatives(pred_dir)
    scores = read_scores(pred_dir)
    evals: list[SubjectEvaluation] = []
    reports: dict[str, Path | None] = {}
    for subject in cohort:
        prediction = load_prediction(pred_dir, subject.id, bids, scores)
        evals.append(evaluate_subject(subject.id, load_truth(subject, cohort.reference),
                                      prediction, radius_mm))
        reports[subject.id] = prediction.report_html if prediction is not None else None
        if on_subject:
            state = str(evals[-1].row["prediction"])
            if state in ("yes", "missing"):
                state = "evaluated" if state == "yes" else "no prediction"
            else:
                state = evals[-1].problems[-1]
            on_subject(subject.id, state)
    _refuse_if_nothing_evaluated(evals, cohort, pred_dir)
    summary = {"format": "csvdnet-evaluation", "version": EVALUATION_FORMAT_VERSION,
               "csvdnet_version": __version__,
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                   timespec="seconds"),
               "cohort": str(cohort.manifest or cohort.root), "predictions": str(pred_dir),
               "layout": "bids" if bids else "plain",
               "froc_rates": list(FROC_RATES), "definitions": DEFINITIONS,
               **summarise_cohort(evals)}
    extra = sorted(set(scores) - {s.id for s in cohort})
    summary["subjects"]["predicted_not_in_cohort"] = extra
    # Subjects the cohort names but could not locate (no reference image, a missing file):
    # reported, never silently dropped.
    summary["subjects"]["unreadable_in_cohort"] = dict(cohort.problems)
    result = Evaluation([e.row for e in evals], _json_safe(summary), out_dir)
    _write_tsv(result.per_subject_tsv, result.rows)
    write_text_atomic(result.summary_json, json.dumps(result.summary, indent=1) + "\n")
    write_html(result.html, result.rows, result.summary, evals, reports)
    return result


def _refuse_if_nothing_evaluated(evals: list[SubjectEvaluation], cohort: Cohort,
                                 pred_dir: Path) -> None:
    """Raise when not one subject was evaluated: a wrong ``--pred`` must not look like a run."""
    if any(e.row.get("prediction") == "yes" for e in evals):
        return
    states: dict[str, list[str]] = {}
    for e in evals:
        states.setdefault(str(e.row.get("prediction")), []).append(str(e.row["subject"]))
    parts = [f"{len(ids)} {_STATE_WORDS.get(state, state)} ({', '.join(ids[:3])}"
             + (", ..." if len(ids) > 3 else "") + ")" for state, ids in states.items()]
    if cohort.problems:
        parts.append(f"{len(cohort.problems)} unusable in the cohort")
    found = "; ".join(parts) or "the cohort has no subject"
    raise CsvdnetInputError(
        pred_dir, f"no subject of the cohort could be evaluated: {found} (is this the csvdnet "
                  "predict output of this cohort?)")


_STATE_WORDS = {"missing": "without a prediction folder here",
                "other grid": "with a prediction on another grid than the cohort's image",
                "unusable": "with no usable prediction output"}


def parse_radius(items: Sequence[str]) -> dict[str, float]:
    """``["cmb=5", "epvs=2"]`` -> ``{"cmb": 5.0, "epvs": 2.0}`` (the CLI's ``--radius``)."""
    radius = {}
    for item in items:
        task, _, value = item.partition("=")
        try:
            mm = float(value)
        except ValueError:
            mm = math.nan
        if task not in OBJECT_TASKS or not math.isfinite(mm) or mm <= 0:
            raise CsvdnetInputError("--radius", f"{item!r}: expected TASK=MM with TASK one of "
                                                f"{', '.join(OBJECT_TASKS)} and MM > 0")
        radius[task] = mm
    return radius


def headline(summary: Mapping[str, Any]) -> list[str]:
    """A few lines for the terminal: who was evaluated, and the main figure of each marker."""
    subjects = summary["subjects"]
    lines = [f"{subjects['evaluated']} of {subjects['cohort']} subjects evaluated"]
    if subjects["missing_prediction"]:
        lines.append("no prediction: " + ", ".join(subjects["missing_prediction"]))
    for subject, reason in subjects.get("not_evaluated", {}).items():
        lines.append(f"{subject}: {reason}")
    other = [s for s in subjects["problems"] if s not in subjects["missing_prediction"]
             and s not in subjects.get("not_evaluated", {})]
    if other:
        lines.append(f"{len(other)} subject(s) with missing or unusable parts (see summary.json)")
    for subject, reason in subjects.get("unreadable_in_cohort", {}).items():
        lines.append(f"not evaluated, cohort entry unusable: {subject}: {reason}")

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for task, entry in summary["segmentation"].items():
        lines.append(f"{task}: Dice median {fmt(entry['per_subject']['dice']['median'])}, "
                     f"pooled {fmt(entry['pooled_dice']['value'])}; lesion F1 pooled "
                     f"{fmt(entry['pooled_lesions']['f1']['value'])}")
    for task, entry in summary["detection"].items():
        lines.append(f"{task}: detection F1 pooled {fmt(entry['pooled']['f1']['value'])}, "
                     f"sensitivity {fmt(entry['pooled']['sensitivity'])}, FP/subject "
                     f"{fmt(entry['false_positives_per_subject']['mean'])}")
    for key, entry in summary["total_score"].items():
        lines.append(f"total score ({key.replace('_', ' ')}): accuracy {fmt(entry['accuracy'])}"
                     f", quadratic kappa {fmt(entry['kappa_quadratic'])}")
    return lines
