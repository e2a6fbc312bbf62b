"""Voxel and lesion metrics as the field's challenges compute them (../shared/DESIGN.md).

Lesions are 26-connected components. A true lesion is *detected* when any predicted voxel
overlaps it; a predicted component is a *hit* when it overlaps any true lesion (MICCAI 2017 WMH
challenge). Counts are kept as :class:`LesionCounts` so they pool over subjects by addition and
give a cohort F1 as well as per-subject ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

# One definition, in the lowest stage that needs it; re-exported here for older callers.
from csvdnet.inference.postprocess import CONNECTIVITY, remove_small_components

__all__ = ["CONNECTIVITY", "LesionCounts", "dice", "dice_from_counts", "lesion_counts",
           "remove_small_components"]


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """``2 |P & R| / (|P| + |R|)`` of two masks; 1 when both are empty."""
    reference, prediction = reference.astype(bool), prediction.astype(bool)
    return dice_from_counts(float(np.sum(reference & prediction)),
                            float(reference.sum()) + float(prediction.sum()))


def dice_from_counts(overlap: float, size: float) -> float:
    """Dice from ``|P & R|`` and ``|P| + |R|`` (summed over subjects: the pooled Dice); 1 when
    both are 0."""
    return 2.0 * overlap / size if size else 1.0


@dataclasses.dataclass
class LesionCounts:
    """Lesion-wise counts of one subject or of several added together.

    Attributes:
        true: True lesions.
        detected: True lesions that a predicted voxel overlaps.
        predicted: Predicted components.
        hits: Predicted components that overlap a true lesion.
    """

    true: int = 0
    detected: int = 0
    predicted: int = 0
    hits: int = 0

    def __add__(self, other: LesionCounts) -> LesionCounts:
        return LesionCounts(self.true + other.true, self.detected + other.detected,
                            self.predicted + other.predicted, self.hits + other.hits)

    @property
    def recall(self) -> float:
        """Detected / true lesions; 1 when there is no true lesion."""
        return self.detected / self.true if self.true else 1.0

    @property
    def precision(self) -> float:
        """Hits / predicted components; 1 when nothing is predicted."""
        return self.hits / self.predicted if self.predicted else 1.0

    @property
    def f1(self) -> float:
        """``2 p r / (p + r)`` (0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2.0 * p * r / (p + r) if p + r else 0.0


def lesion_counts(reference: np.ndarray, prediction: np.ndarray) -> LesionCounts:
    """Lesion-wise detection counts of ``prediction`` against ``reference`` (boolean masks)."""
    reference, prediction = reference.astype(bool), prediction.astype(bool)
    true_labels, n_true = ndimage.label(reference, structure=CONNECTIVITY)
    pred_labels, n_pred = ndimage.label(prediction, structure=CONNECTIVITY)
    detected = np.unique(true_labels[prediction])
    hits = np.unique(pred_labels[reference])
    return LesionCounts(n_true, int(np.count_nonzero(detected)), n_pred,
                        int(np.count_nonzero(hits)))
