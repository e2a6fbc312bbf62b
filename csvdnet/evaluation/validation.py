"""Validation during training: whole-volume predictions, per-task losses and metrics.

Metrics, pooled over the validation subjects that carry the task's label (pooling keeps a
metric defined on subjects without lesions and weighs subjects by lesion burden, as a cohort
total does):

- ``dice_<task>`` (wmh, rssi, lacune): ``2 |P & T| / (|P| + |T|)`` over all voxels, prediction
  thresholded at ``inference.thresholds[task]`` and stripped of components smaller than
  ``inference.min_lesion_mm3[task]`` (what inference reports); 1 when both are empty.
- ``lesion_f1_<task>`` (wmh, rssi, lacune): lesion-wise F1 of that mask, 26-connected components,
  a true lesion detected by any overlapping predicted voxel (MICCAI 2017 WMH challenge,
  :mod:`csvdnet.evaluation.metrics`), counts pooled over subjects.
- ``f1_<task>`` (cmb, epvs): predicted points are the local maxima (3x3x3) of the heatmap at or
  above ``inference.thresholds[task]`` (a plateau counts once, at its centre;
  :func:`csvdnet.inference.postprocess.find_peaks`); true points are the target's peak voxels.
  Points are matched one-to-one, closest first, when within
  :data:`csvdnet.evaluation.detection.MATCH_DISTANCE_MM`; ``F1 = 2 TP / (2 TP + FP + FN)``, 1
  when there is nothing to find and nothing found.
- ``score_accuracy`` and ``score_kappa`` (quadratic-weighted Cohen's kappa) of the ordinal head's
  class (CORAL decoding) against the rated total SVD score.

The selection score ``selection`` (higher is better; picks ``best/``) is the mean of one value per
marker, every marker counting alike so none is traded away for another: WMH Dice (a burden,
rated by extent), lesion F1 for RSSI and lacunes (few small lesions, rated by whether each is
found), detection F1 for CMB and EPVS, and the score's kappa. A value whose validation reference
is empty (no RSSI in any validation subject, say) is logged but left out of the mean: it only
tells whether anything at all was predicted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from csvdnet import DETECTION_TASKS, SCORE_TASK, SEGMENTATION_TASKS
from csvdnet.evaluation.detection import match_points, quadratic_weighted_kappa
from csvdnet.evaluation.metrics import LesionCounts, dice_from_counts, lesion_counts
from csvdnet.evaluation.points import DetectionCounts
from csvdnet.inference.postprocess import find_peaks, remove_small_components, size_floor_mm3
from csvdnet.losses import PEAK_THRESHOLD, MultiTaskLoss
from csvdnet.models.coral_head import ordinal_decode

LESION_SELECTED = ("rssi", "lacune")
"""Segmentation tasks whose lesion-wise F1 (not Dice) counts towards the selection score."""


def selected_metric(task: str) -> str | None:
    """The metric of ``task`` that counts towards the selection score (None: none does)."""
    if task in SEGMENTATION_TASKS:
        return f"lesion_f1_{task}" if task in LESION_SELECTED else f"dice_{task}"
    if task in DETECTION_TASKS:
        return f"f1_{task}"
    return "score_kappa" if task == SCORE_TASK else None


@dataclasses.dataclass
class _Counts:
    """Pooled sufficient statistics of the validation metrics."""

    overlap: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    lesions: dict[str, LesionCounts] = dataclasses.field(default_factory=dict)
    detection: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    scores: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    losses: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, task: str, true: np.ndarray, pred: np.ndarray, loss: float,
            threshold: float | None, spacing: Sequence[float], min_mm3: float = 0.0) -> None:
        """Add one subject's target and prediction (no batch dimension) for ``task``."""
        total = self.losses.setdefault(task, [0.0, 0.0])
        total[0] += loss
        total[1] += 1.0
        if task in SEGMENTATION_TASKS:
            reference = true[..., 0] > 0.5
            predicted = remove_small_components(pred[..., 0] >= threshold,
                                                min_mm3 / float(np.prod(spacing)))
            stats = self.overlap.setdefault(task, [0.0, 0.0, 0.0])
            stats[0] += float(np.sum(predicted & reference))
            stats[1] += float(np.sum(predicted) + np.sum(reference))
            stats[2] += float(np.sum(reference))
            self.lesions[task] = (self.lesions.get(task, LesionCounts())
                                  + lesion_counts(reference, predicted))
        elif task in DETECTION_TASKS:
            found = match_points(find_peaks(pred[..., 0], threshold)[0],
                                 np.argwhere(true[..., 0] >= PEAK_THRESHOLD), spacing)
            stats = self.detection.setdefault(task, [0, 0, 0])
            for i, n in enumerate(found):
                stats[i] += n
        elif task == SCORE_TASK:  # cumulative levels vs cumulative logits
            predicted_class = int(np.asarray(ordinal_decode(pred[None])[0])[0])
            self.scores.append((int(round(float(np.sum(true)))), predicted_class))

    def merge(self, other: _Counts) -> None:
        """Add another set of counts (one more subject) to these."""
        for task, values in other.overlap.items():
            mine = self.overlap.setdefault(task, [0.0] * len(values))
            self.overlap[task] = [a + b for a, b in zip(mine, values)]
        for task, counts in other.lesions.items():
            self.lesions[task] = self.lesions.get(task, LesionCounts()) + counts
        for task, values in other.detection.items():
            mine = self.detection.setdefault(task, [0] * len(values))
            self.detection[task] = [a + b for a, b in zip(mine, values)]
        self.scores.extend(other.scores)
        for task, values in other.losses.items():
            mine = self.losses.setdefault(task, [0.0, 0.0])
            self.losses[task] = [a + b for a, b in zip(mine, values)]

    def metrics(self, num_classes: int) -> tuple[dict[str, float], list[float]]:
        """The metrics, and the values that count towards the selection score."""
        out: dict[str, float] = {}
        selected: list[float] = []
        for task, (intersection, size, reference) in self.overlap.items():
            out[f"dice_{task}"] = dice_from_counts(intersection, size)
            out[f"lesion_f1_{task}"] = self.lesions[task].f1
            if reference:
                selected.append(out[selected_metric(task)])
        for task, (tp, fp, fn) in self.detection.items():
            out[f"f1_{task}"] = DetectionCounts(tp, fp, fn).f1
            if tp + fn:
                selected.append(out[selected_metric(task)])
        if self.scores:
            true, predicted = zip(*self.scores)
            out["score_accuracy"] = float(np.mean(np.equal(true, predicted)))
            out["score_kappa"] = quadratic_weighted_kappa(true, predicted, num_classes)
            selected.append(out["score_kappa"])
        return out, selected

    def subject_row(self) -> dict[str, float]:
        """One subject's counts as a flat record (per-subject tables of a held-out cohort)."""
        row: dict[str, float] = {}
        for task, (intersection, size, reference) in self.overlap.items():
            row[f"dice_{task}"] = dice_from_counts(intersection, size)
            row[f"volume_voxels_{task}"] = reference
            lesions = self.lesions[task]
            row.update({f"lesions_true_{task}": lesions.true,
                        f"lesions_detected_{task}": lesions.detected,
                        f"lesions_predicted_{task}": lesions.predicted,
                        f"lesions_hit_{task}": lesions.hits})
        for task, (tp, fp, fn) in self.detection.items():
            row.update({f"tp_{task}": tp, f"fp_{task}": fp, f"fn_{task}": fn})
        for true, predicted in self.scores:
            row.update({"score_true": true, "score_predicted": predicted})
        return row


def selection_score(values: Sequence[float]) -> float:
    """Mean of the metric values that pick the best checkpoint (higher is better; NaN if none)."""
    return float(np.mean(values)) if len(values) else float("nan")


@dataclasses.dataclass
class ValidationResult:
    """What one validation pass found.

    Attributes:
        losses: Mean loss per task over the labelled subjects.
        metrics: Per-task metrics (see the module docstring) and ``selection``.
        example: The hardest subject's ``(image, targets, predictions)`` as numpy arrays without
            the batch dimension, for the image summaries: the one whose own selection metrics
            (the score's aside) average lowest.
        example_index: Its position among the validation subjects.
        subjects: Per-subject counts (``_Counts.subject_row``) in input order, when asked for.
    """

    losses: dict[str, float]
    metrics: dict[str, float]
    example: tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]] | None
    subjects: list[dict[str, float]] = dataclasses.field(default_factory=list)
    example_index: int = 0


def validate(predict: Callable[[Any], Mapping[str, Any]],
             batches: Iterable[tuple[Any, Mapping[str, Any], Mapping[str, Any]]],
             loss: MultiTaskLoss, tasks: Sequence[str], spacing: Sequence[Sequence[float]],
             thresholds: Mapping[str, float], num_classes: int,
             min_lesion_mm3: Mapping[str, float] | None = None,
             per_subject: bool = False, progress: bool = False) -> ValidationResult:
    """Predict every validation subject (batch 1, whole volume) and score the predictions.

    Args:
        predict: ``image -> outputs by task`` (inference mode).
        batches: The validation dataset, one subject per batch, in ``spacing`` order.
        loss: The multi-task loss (for per-task validation losses).
        tasks: Tasks validated.
        spacing: Working voxel size (mm) per subject.
        thresholds: Probability / heatmap threshold per dense task.
        num_classes: Ordinal classes of the score.
        min_lesion_mm3: Predicted segmentation components smaller than this are dropped, per
            task (as inference does); none dropped for a task not named.
        per_subject: Also return each subject's counts (``ValidationResult.subjects``).
        progress: Show a progress bar over the subjects (it disappears when done).

    Returns:
        Losses, metrics, the first subject for the image summaries and, if asked, per-subject
        records.
    """
    counts = _Counts()
    rows: list[dict[str, float]] = []
    example, example_index, hardest = None, 0, math.inf
    min_lesion_mm3 = min_lesion_mm3 or {}
    subjects = tqdm(zip(batches, spacing), total=len(spacing), desc="validation", unit="subject",
                    leave=False, disable=not progress, dynamic_ncols=True)
    for index, ((image, targets, weights), voxel) in enumerate(subjects):
        outputs = predict(image)
        subject = _Counts()
        for task in tasks:
            if float(weights[task][0]) > 0.0:
                subject.add(task, np.asarray(targets[task][0]), np.asarray(outputs[task][0]),
                            float(loss.task_loss(task, targets[task], outputs[task])),
                            thresholds.get(task), voxel,
                            size_floor_mm3(task, min_lesion_mm3.get(task, 0.0)))
        counts.merge(subject)
        if per_subject:
            rows.append(subject.subject_row())
        difficulty = selection_score(
            dataclasses.replace(subject, scores=[]).metrics(num_classes)[1])
        difficulty = 1.0 if math.isnan(difficulty) else difficulty
        if example is None or difficulty < hardest:
            example = (np.asarray(image[0]), {t: np.asarray(v[0]) for t, v in targets.items()},
                       {t: np.asarray(v[0]) for t, v in outputs.items()})
            example_index, hardest = index, difficulty
    metrics, selected = counts.metrics(num_classes)
    metrics["selection"] = selection_score(selected)
    losses = {t: total / n for t, (total, n) in counts.losses.items()}
    return ValidationResult(losses, metrics, example, rows, example_index)
