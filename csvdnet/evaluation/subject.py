"""One subject's evaluation: every metric of ``csvdnet evaluate`` from its truth and prediction.

:func:`evaluate_subject` returns a :class:`SubjectEvaluation`: the flat per-subject row (the
columns of ``metrics_per_subject.tsv``) and what the cohort summary pools (matchings with their
confidences for FROC, point regions, rating pairs). Definitions: segmentation as the WMH
challenge (:mod:`~csvdnet.evaluation.segmentation`), detection as VALDO
(:mod:`~csvdnet.evaluation.points`), scores by the rule sets of :mod:`csvdnet.scoring`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np
from nibabel.affines import apply_affine

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.evaluation.inputs import Prediction, Truth, grid_difference
from csvdnet.evaluation.points import (Matching, TrueObjects, match_detections, match_radius,
                                       region_group)
from csvdnet.evaluation.segmentation import challenge_masks, segmentation_metrics
from csvdnet.inference.postprocess import components
from csvdnet.scoring import EPVS_GRADE_LIMITS, Measurements, score

__all__ = ["GRADES", "OBJECT_TASKS", "SCORE_CLASSES", "STAALS_ITEMS", "SubjectEvaluation",
           "evaluate_subject", "measurements_from_ratings", "measurements_from_scores"]

OBJECT_TASKS = DETECTION_TASKS + ("lacune", "rssi")
"""Tasks judged object by object (VALDO): points, and lacunes / RSSI as lesions."""

GRADES = {"fazekas_pv": 4, "fazekas_deep": 4, "epvs_bg_grade": 5}
"""Rated grades and their number of classes."""

COUNTS = ("cmb_count", "lacune_count", "rssi_count")
SCORE_CLASSES = 5
"""Total SVD score (Staals 2014): 0-4."""

STAALS_ITEMS = ("lacunes", "microbleeds", "wmh", "epvs")


@dataclasses.dataclass
class SubjectEvaluation:
    """One subject's results.

    Attributes:
        row: Column -> value (NaN / None where not measured).
        matchings: Object task -> matching.
        confidences: Object task -> confidence of each predicted point.
        regions: Object task -> ``(true point groups, predicted point groups)``.
        problems: What could not be evaluated, and why.
    """

    row: dict[str, object]
    matchings: dict[str, Matching] = dataclasses.field(default_factory=dict)
    confidences: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    regions: dict[str, tuple[list[str], list[str]]] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)


def _int(value: object) -> int | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "n/a")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(round(number)) if math.isfinite(number) else None


def measurements_from_ratings(ratings: Mapping[str, int | None]) -> Measurements:
    """Measurements a rater's ``ratings.csv`` row implies, for the rule sets.

    Ratings give counts without location and the EPVS grade, not the count: microbleeds count
    as deep (location decides only the CAA-SVD score, which ratings.csv cannot give) and the
    EPVS count is the smallest of its grade (the grade is all Staals needs).
    """
    grade = ratings.get("epvs_bg_grade")
    epvs = None if grade is None else (0 if grade == 0 else EPVS_GRADE_LIMITS[grade - 1] + 1)
    cmb = ratings.get("cmb_count")
    return Measurements(fazekas_pv=ratings.get("fazekas_pv"),
                        fazekas_deep=ratings.get("fazekas_deep"), epvs_bg_count=epvs,
                        cmb_lobar=None if cmb is None else 0, cmb_deep=cmb,
                        cmb_infratentorial=None if cmb is None else 0,
                        lacune_count=ratings.get("lacune_count"),
                        rssi_count=ratings.get("rssi_count"))


def measurements_from_scores(row: Mapping[str, str]) -> Measurements:
    """The Measurements ``csvdnet predict`` wrote to a ``scores.tsv`` row."""
    names = [f.name for f in dataclasses.fields(Measurements)]
    return Measurements(**{name: _int(row.get(name)) for name in names})


def _groups(world: np.ndarray, regions: np.ndarray | None, affine: np.ndarray | None
            ) -> list[str]:
    if regions is None or affine is None or not len(world):
        return ["other"] * len(world)
    voxels = np.rint(apply_affine(np.linalg.inv(affine), world)).astype(int)
    inside = np.all((voxels >= 0) & (voxels < regions.shape), axis=1)
    codes = np.zeros(len(world), int)
    codes[inside] = regions[tuple(voxels[inside].T)]
    return [region_group(c) for c in codes]


def _object_row(task: str, matching: Matching) -> dict[str, object]:
    c = matching.counts
    return {f"{task}_det_tp": c.tp, f"{task}_det_fp": c.fp, f"{task}_det_fn": c.fn,
            f"{task}_det_sensitivity": c.sensitivity, f"{task}_det_precision": c.precision,
            f"{task}_det_f1": c.f1, f"{task}_count_true": c.n_true,
            f"{task}_count_pred": c.n_pred, f"{task}_count_error": abs(c.n_true - c.n_pred)}


def _lesion_points(mask: np.ndarray, prob: np.ndarray | None, affine: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    found = components(mask, mask.astype(float) if prob is None else prob, affine)
    world = np.array([c.centroid_world for c in found], float).reshape(-1, 3)
    return world, np.array([c.max_prob for c in found], float)


def _segmentation(task: str, truth: Truth, pred: Prediction, out: SubjectEvaluation,
                  radius_mm: Mapping[str, float] | None) -> None:
    reference, predicted = truth.masks[task], pred.masks[task]
    if reference.shape != predicted.shape or np.abs(truth.affine - pred.affine).max() > 1e-3:
        out.problems.append(f"{task}: prediction and label are on different grids")
        return
    out.row.update(segmentation_metrics(reference, predicted, truth.affine).as_row(task))
    # Lacunes and RSSI are also judged as objects: lesion centres matched like microbleeds.
    if task in OBJECT_TASKS:
        ref, pred_mask = challenge_masks(reference, predicted)
        true_world, _ = _lesion_points(ref, None, truth.affine)
        pred_world, confidence = _lesion_points(pred_mask, pred.probabilities.get(task),
                                                truth.affine)
        objects = TrueObjects(true_world)
        radius, to_extent = match_radius(task, objects, radius_mm)
        _add_matching(task, match_detections(pred_world, objects, radius, to_extent),
                      confidence, true_world, pred_world, truth, pred, out)


def _add_matching(task: str, matching: Matching, confidence: np.ndarray, true_world: np.ndarray,
                  pred_world: np.ndarray, truth: Truth, pred: Prediction,
                  out: SubjectEvaluation) -> None:
    out.matchings[task] = matching
    out.confidences[task] = confidence
    out.row.update(_object_row(task, matching))
    # The cohort's region map first (the truth), else the one predict placed.
    regions, affine = ((truth.regions, truth.affine) if truth.regions is not None
                       else (pred.regions, pred.affine))
    out.regions[task] = (_groups(true_world, regions, affine),
                         _groups(pred_world, regions, affine))


def _ratings(truth: Truth, pred: Prediction, out: SubjectEvaluation) -> None:
    rated = truth.ratings or {}
    predicted = pred.scores or {}
    for name in (*GRADES, *COUNTS):
        out.row[f"{name}_true"] = rated.get(name)
        out.row[f"{name}_pred"] = _int(predicted.get(name))
    true_m = measurements_from_ratings(rated)
    pred_m = measurements_from_scores(predicted)
    true_score, pred_score = score("staals-2014", true_m), score("staals-2014", pred_m)
    for item in STAALS_ITEMS:
        out.row[f"staals_{item}_true"] = true_score.points.get(item)
        out.row[f"staals_{item}_pred"] = pred_score.points.get(item)
    total = rated.get("total_score")
    out.row["total_true"] = total if total is not None else true_score.total
    out.row["total_rule"] = _int(predicted.get("staals_total"))
    out.row["total_ordinal"] = _int(predicted.get("ordinal_total"))
    for kind in ("rule", "ordinal"):
        true_v, pred_v = out.row["total_true"], out.row[f"total_{kind}"]
        out.row[f"total_{kind}_error"] = (None if true_v is None or pred_v is None
                                          else pred_v - true_v)


def _unusable_prediction(truth: Truth, pred: Prediction) -> tuple[str, str] | None:
    """``(prediction state, reason)`` when nothing of ``pred`` may be compared with ``truth``.

    A prediction on another grid than the subject's reference image (or its labels) is of
    another image: another cohort's subject of the same id, or another sequence as reference.
    Comparing its counts and ratings with this subject's would score the wrong patient.
    """
    if pred.affine is not None and pred.shape is not None:
        labels = None if truth.affine is None else (truth.shape, truth.affine)
        for what, grid in (("reference image", truth.reference_grid), ("labels", labels)):
            if grid is None:
                continue
            difference = grid_difference(pred.shape, pred.affine, grid[0], grid[1])
            if difference:
                return ("other grid", f"NOT EVALUATED: the prediction is on another grid than "
                                      f"the subject's {what} ({difference}): a prediction of "
                                      f"another image, cohort or reference sequence?")
    if not pred.masks and not pred.points and pred.scores is None:
        return ("unusable", "NOT EVALUATED: the prediction folder holds no usable output ("
                + "; ".join(f"{name}: {why}" for name, why in pred.problems.items()) + ")")
    return None


def evaluate_subject(subject_id: str, truth: Truth, pred: Prediction | None,
                     radius_mm: Mapping[str, float] | None = None) -> SubjectEvaluation:
    """Every per-subject metric (module docstring); problems are listed, never raised.

    The row's ``prediction`` is ``yes`` (evaluated), ``missing`` (no prediction folder),
    ``other grid`` (on another grid than the subject's reference image or labels: not this
    subject's image, nothing compared) or ``unusable`` (no output could be read).
    """
    out = SubjectEvaluation(row={"subject": subject_id,
                                 "prediction": "yes" if pred is not None else "missing"})
    out.problems += [f"label {name}: {why}" for name, why in truth.problems.items()]
    if pred is None:
        out.problems.append("no prediction folder")
        out.row["problems"] = "; ".join(out.problems)
        return out
    unusable = _unusable_prediction(truth, pred)
    if unusable is not None:
        out.row["prediction"], reason = unusable
        out.problems.append(reason)
        out.row["problems"] = "; ".join(out.problems)
        return out
    out.problems += [f"prediction {name}: {why}" for name, why in pred.problems.items()]
    for task in SEGMENTATION_TASKS:
        if task in truth.masks and task in pred.masks:
            _segmentation(task, truth, pred, out, radius_mm)
        elif task not in truth.masks and task not in truth.problems:
            out.problems.append(f"label {task}: none in the cohort")
    for task in DETECTION_TASKS:
        if task in truth.objects and task in pred.points:
            objects = truth.objects[task]
            radius, to_extent = match_radius(task, objects, radius_mm)
            matching = match_detections(pred.points[task], objects, radius, to_extent)
            _add_matching(task, matching, pred.confidence[task], objects.centres,
                          pred.points[task], truth, pred, out)
        elif task not in truth.objects and task not in truth.problems:
            out.problems.append(f"label {task}: none in the cohort")
    if truth.ratings is None:
        out.problems.append("ratings: subject not in ratings.csv")
    _ratings(truth, pred, out)
    out.row["problems"] = "; ".join(out.problems)
    return out
