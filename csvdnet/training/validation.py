"""Validation during training: whole-volume predictions, per-task losses and metrics.

Metrics, pooled over the validation subjects that carry the task's label (pooling keeps a
metric defined on subjects without lesions and weighs subjects by lesion burden, as a cohort
total does):

- ``dice_<task>`` (wmh, rssi, lacune): ``2 |P & T| / (|P| + |T|)`` over all voxels, prediction
  thresholded at ``inference.thresholds[task]``; 1 when both are empty.
- ``f1_<task>`` (cmb, epvs): predicted points are the local maxima (3x3x3) of the heatmap at or
  above ``inference.thresholds[task]`` (a plateau counts once, at its centre); true points are
  the target's peak voxels. Points are matched one-to-one, closest first, when within
  :data:`MATCH_DISTANCE_MM`; ``F1 = 2 TP / (2 TP + FP + FN)``, 1 when there is nothing to find
  and nothing found.
- ``score_accuracy`` and ``score_kappa`` (quadratic-weighted Cohen's kappa) of the ordinal head's
  class (CORAL decoding) against the rated total SVD score.

The selection score ``selection`` (higher is better; picks ``best/``) is the mean of the Dice,
F1 and kappa values above, every marker counting alike so none is traded away for another. A
Dice or F1 whose validation reference is empty (no RSSI in any validation subject, say) is
logged but left out of the mean: it only tells whether anything at all was predicted.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage, optimize, spatial

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.losses import PEAK_THRESHOLD, SCORE_TASK, MultiTaskLoss, ordinal_decode

MATCH_DISTANCE_MM = 4.0
"""A predicted point within this distance of a true point finds it: about the radius of a
blooming microbleed plus one working voxel (1.5 mm) of localisation error."""


def find_peaks(heatmap: np.ndarray, threshold: float) -> np.ndarray:
    """Local maxima (3x3x3 neighbourhood) at or above ``threshold``, plateaus merged.

    Args:
        heatmap: ``(X, Y, Z)`` heatmap.
        threshold: Minimum peak value.

    Returns:
        float ``(N, 3)`` voxel coordinates (plateau centres).
    """
    peaks = (heatmap >= threshold) & (ndimage.maximum_filter(heatmap, size=3) == heatmap)
    labels, count = ndimage.label(peaks, structure=np.ones((3, 3, 3)))
    if count == 0:
        return np.zeros((0, 3))
    return np.asarray(ndimage.center_of_mass(peaks, labels, range(1, count + 1)), float)


def match_points(predicted: np.ndarray, true: np.ndarray, spacing: Sequence[float],
                 max_distance_mm: float = MATCH_DISTANCE_MM) -> tuple[int, int, int]:
    """One-to-one matching of predicted to true points within ``max_distance_mm``.

    A minimum-cost assignment where pairs farther than the limit cost more than any set of
    valid pairs maximises the number of matches, then minimises their distances.

    Returns:
        ``(true positives, false positives, false negatives)``.
    """
    if len(predicted) == 0 or len(true) == 0:
        return 0, len(predicted), len(true)
    scale = np.asarray(spacing, float)
    distance = spatial.distance.cdist(predicted * scale, true * scale)
    too_far = distance > max_distance_mm
    rows, cols = optimize.linear_sum_assignment(np.where(too_far, 1e9, distance))
    matched = int(np.sum(~too_far[rows, cols]))
    return matched, len(predicted) - matched, len(true) - matched


def quadratic_weighted_kappa(true: Sequence[int], predicted: Sequence[int],
                             num_classes: int) -> float:
    """Cohen's kappa with quadratic disagreement weights ``(i - j)^2 / (K - 1)^2``.

    1 for perfect agreement; 0 for chance-level; 1 if both raters use one and the same class
    (no disagreement possible), 0 if they use one class each that differ.
    """
    observed = np.zeros((num_classes, num_classes))
    np.add.at(observed, (np.asarray(true, int), np.asarray(predicted, int)), 1.0)
    classes = np.arange(num_classes)
    weights = (classes[:, None] - classes[None, :]) ** 2 / (num_classes - 1) ** 2
    expected = np.outer(observed.sum(1), observed.sum(0)) / max(observed.sum(), 1.0)
    chance = float(np.sum(weights * expected))
    if chance == 0.0:
        return float(np.sum(weights * observed) == 0.0)
    return 1.0 - float(np.sum(weights * observed)) / chance


@dataclasses.dataclass
class _Counts:
    """Pooled sufficient statistics of the validation metrics."""

    overlap: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    detection: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    scores: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    losses: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, task: str, true: np.ndarray, pred: np.ndarray, loss: float,
            threshold: float | None, spacing: Sequence[float]) -> None:
        """Add one subject's target and prediction (no batch dimension) for ``task``."""
        total = self.losses.setdefault(task, [0.0, 0.0])
        total[0] += loss
        total[1] += 1.0
        if task in SEGMENTATION_TASKS:
            predicted, reference = pred >= threshold, true > 0.5
            stats = self.overlap.setdefault(task, [0.0, 0.0, 0.0])
            stats[0] += float(np.sum(predicted & reference))
            stats[1] += float(np.sum(predicted) + np.sum(reference))
            stats[2] += float(np.sum(reference))
        elif task in DETECTION_TASKS:
            found = match_points(find_peaks(pred[..., 0], threshold),
                                 np.argwhere(true[..., 0] >= PEAK_THRESHOLD), spacing)
            stats = self.detection.setdefault(task, [0, 0, 0])
            for i, n in enumerate(found):
                stats[i] += n
        elif task == SCORE_TASK:  # cumulative levels vs cumulative logits
            predicted_class = int(np.asarray(ordinal_decode(pred[None])[0])[0])
            self.scores.append((int(round(float(np.sum(true)))), predicted_class))

    def metrics(self, num_classes: int) -> tuple[dict[str, float], list[float]]:
        """The metrics, and the values that count towards the selection score."""
        out: dict[str, float] = {}
        selected: list[float] = []
        for task, (intersection, size, reference) in self.overlap.items():
            out[f"dice_{task}"] = 2.0 * intersection / size if size else 1.0
            if reference:
                selected.append(out[f"dice_{task}"])
        for task, (tp, fp, fn) in self.detection.items():
            out[f"f1_{task}"] = 2.0 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
            if tp + fn:
                selected.append(out[f"f1_{task}"])
        if self.scores:
            true, predicted = zip(*self.scores)
            out["score_accuracy"] = float(np.mean(np.equal(true, predicted)))
            out["score_kappa"] = quadratic_weighted_kappa(true, predicted, num_classes)
            selected.append(out["score_kappa"])
        return out, selected


def selection_score(values: Sequence[float]) -> float:
    """Mean of the metric values that pick the best checkpoint (higher is better; NaN if none)."""
    return float(np.mean(values)) if len(values) else float("nan")


@dataclasses.dataclass
class ValidationResult:
    """What one validation pass found.

    Attributes:
        losses: Mean loss per task over the labelled subjects.
        metrics: Per-task metrics (see the module docstring) and ``selection``.
        example: The first subject's ``(image, targets, predictions)`` as numpy arrays without
            the batch dimension, for the image summaries.
    """

    losses: dict[str, float]
    metrics: dict[str, float]
    example: tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]] | None


def validate(predict: Callable[[Any], Mapping[str, Any]],
             batches: Iterable[tuple[Any, Mapping[str, Any], Mapping[str, Any]]],
             loss: MultiTaskLoss, tasks: Sequence[str], spacing: Sequence[Sequence[float]],
             thresholds: Mapping[str, float], num_classes: int) -> ValidationResult:
    """Predict every validation subject (batch 1, whole volume) and score the predictions.

    Args:
        predict: ``image -> outputs by task`` (inference mode).
        batches: The validation dataset, one subject per batch, in ``spacing`` order.
        loss: The multi-task loss (for per-task validation losses).
        tasks: Tasks validated.
        spacing: Working voxel size (mm) per subject.
        thresholds: Probability / heatmap threshold per dense task.
        num_classes: Ordinal classes of the score.

    Returns:
        Losses, metrics and the first subject for the image summaries.
    """
    counts = _Counts()
    example = None
    for (image, targets, weights), voxel in zip(batches, spacing):
        outputs = predict(image)
        for task in tasks:
            if float(weights[task][0]) > 0.0:
                counts.add(task, np.asarray(targets[task][0]), np.asarray(outputs[task][0]),
                           float(loss.task_loss(task, targets[task], outputs[task])),
                           thresholds.get(task), voxel)
        if example is None:
            example = (np.asarray(image[0]), {t: np.asarray(v[0]) for t, v in targets.items()},
                       {t: np.asarray(v[0]) for t, v in outputs.items()})
    metrics, selected = counts.metrics(num_classes)
    metrics["selection"] = selection_score(selected)
    losses = {t: total / n for t, (total, n) in counts.losses.items()}
    return ValidationResult(losses, metrics, example)
