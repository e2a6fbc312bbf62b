"""Segmentation metrics exactly as the MICCAI 2017 WMH Segmentation Challenge computes them.

The challenge's public ``evaluation.py`` (hjkuijf/wmhchallenge, Python 3 version) is the
definition followed here, voxel for voxel (../shared/DESIGN.md, "Evaluation conventions"):

- **Reference and prediction.** In a reference label map, label 1 is the lesion and label 2
  "other pathology": label-2 voxels are removed from the prediction before every metric and are
  not part of the reference (:func:`challenge_masks`). A float prediction counts from 0.5, an
  integer one from 1.
- **Dice** ``2 |P & R| / (|P| + |R|)`` (:func:`csvdnet.evaluation.metrics.dice`).
- **HD95** (:func:`hausdorff95`), mm: the boundary of a mask is the mask minus its erosion by a
  3x3 square in the plane of the first two voxel axes (SimpleITK ``BinaryErode`` with radius
  (1, 1, 0): no erosion across slices; the image edge counts as inside, as ITK's
  ``BoundaryToForeground``), boundary voxels are taken to world mm through the affine, and HD95
  is the larger of the two directed 95th percentiles (numpy's linear interpolation) of
  nearest-neighbour distances between the two boundaries.
- **AVD** (:func:`absolute_volume_difference`), %: ``|V_R - V_P| / V_R x 100``.
- **Lesion recall, precision, F1**: 26-connected components; a true lesion is detected if any
  predicted voxel overlaps it (:func:`csvdnet.evaluation.metrics.lesion_counts`).

Empty masks, where the challenge (whose references always hold lesions) is silent or divides by
zero, are defined so that every value is a number or NaN, never an error:

====================  =====  ========  ======  ===============  ==============
case                  Dice   HD95 mm   AVD %   lesion recall    lesion prec.
====================  =====  ========  ======  ===============  ==============
both empty            1      NaN       0       1                1
empty prediction      0      NaN       100     0                1
empty reference       0      NaN       NaN     1                0
====================  =====  ========  ======  ===============  ==============

HD95 is NaN whenever either side is empty (the challenge returns NaN for an empty prediction;
a distance to nothing is undefined). Summaries report how many values were NaN.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage, spatial

from csvdnet.evaluation.metrics import LesionCounts, dice, lesion_counts

__all__ = ["EXCLUDED_LABEL", "IN_PLANE_SQUARE", "SegmentationMetrics", "absolute_volume_difference",
           "boundary", "challenge_masks", "hausdorff95", "segmentation_metrics"]

EXCLUDED_LABEL = 2
"""Reference label of "other pathology": neither lesion nor background (WMH challenge)."""

IN_PLANE_SQUARE = np.ones((3, 3, 1), bool)
"""The erosion element of the challenge's boundary: 3x3 in plane, nothing across slices."""


def challenge_masks(reference: np.ndarray, prediction: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The challenge's boolean reference and prediction masks from raw arrays.

    Args:
        reference: Reference label map: 1 = lesion, 2 = excluded, 0 = background (a boolean or
            0/1 mask is a reference without exclusions).
        prediction: Binary mask, integer labels (>= 1 is lesion) or probabilities (>= 0.5).

    Returns:
        ``(reference == 1, prediction >= cut and reference != 2)``.
    """
    reference = np.asarray(reference)
    prediction = np.asarray(prediction)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference {reference.shape} and prediction {prediction.shape} differ")
    labels = np.rint(reference.astype(np.float64)).astype(np.int64)
    cut = 0.5 if np.issubdtype(prediction.dtype, np.floating) else 1
    predicted = (prediction >= cut) & (labels != EXCLUDED_LABEL)
    return labels == 1, predicted


def boundary(mask: np.ndarray) -> np.ndarray:
    """Mask minus its erosion by :data:`IN_PLANE_SQUARE` (the image edge counts as inside)."""
    mask = np.asarray(mask, bool)
    return mask & ~ndimage.binary_erosion(mask, IN_PLANE_SQUARE, border_value=1)


def _affine(affine_or_spacing: np.ndarray | Sequence[float]) -> np.ndarray:
    value = np.asarray(affine_or_spacing, np.float64)
    return value if value.shape == (4, 4) else np.diag([*value, 1.0])


def hausdorff95(reference: np.ndarray, prediction: np.ndarray,
                affine_or_spacing: np.ndarray | Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """95th-percentile Hausdorff distance (mm) between the boundaries of two boolean masks.

    Args:
        reference: Reference mask.
        prediction: Predicted mask, same grid.
        affine_or_spacing: The grid's 4x4 voxel -> world affine, or its voxel sizes.

    Returns:
        ``max(P95(d(R -> P)), P95(d(P -> R)))`` in mm; NaN if either mask is empty.
    """
    edges = [boundary(m) for m in (reference, prediction)]
    if not edges[0].any() or not edges[1].any():
        return math.nan
    affine = _affine(affine_or_spacing)
    ref_points, pred_points = (apply_affine(affine, np.argwhere(e)) for e in edges)
    to_pred = spatial.cKDTree(pred_points).query(ref_points, k=1)[0]
    to_ref = spatial.cKDTree(ref_points).query(pred_points, k=1)[0]
    return float(max(np.percentile(to_pred, 95), np.percentile(to_ref, 95)))


def absolute_volume_difference(reference: np.ndarray, prediction: np.ndarray) -> float:
    """``|V_R - V_P| / V_R x 100``; 0 when both are empty, NaN for an empty reference only."""
    v_ref, v_pred = int(np.count_nonzero(reference)), int(np.count_nonzero(prediction))
    if v_ref == 0:
        return 0.0 if v_pred == 0 else math.nan
    return abs(v_ref - v_pred) / v_ref * 100.0


@dataclasses.dataclass(frozen=True)
class SegmentationMetrics:
    """One subject's segmentation metrics (WMH challenge definitions, module docstring).

    Attributes:
        dice: Dice coefficient.
        hd95_mm: 95th-percentile Hausdorff distance, mm (NaN: a side is empty).
        avd_pct: Absolute volume difference, % of the reference (NaN: empty reference).
        lesions: Lesion-wise counts (recall, precision, F1 as properties).
        volume_true_ml: Reference volume, ml.
        volume_pred_ml: Predicted volume (label-2 voxels removed), ml.
    """

    dice: float
    hd95_mm: float
    avd_pct: float
    lesions: LesionCounts
    volume_true_ml: float
    volume_pred_ml: float

    def as_row(self, prefix: str) -> dict[str, float]:
        """Flat ``{prefix}_<metric>`` values for a per-subject table."""
        values = {"dice": self.dice, "hd95_mm": self.hd95_mm, "avd_pct": self.avd_pct,
                  "lesion_recall": self.lesions.recall,
                  "lesion_precision": self.lesions.precision, "lesion_f1": self.lesions.f1,
                  "lesions_true": self.lesions.true, "lesions_detected": self.lesions.detected,
                  "lesions_pred": self.lesions.predicted, "lesions_hit": self.lesions.hits,
                  "volume_true_ml": self.volume_true_ml, "volume_pred_ml": self.volume_pred_ml}
        return {f"{prefix}_{name}": value for name, value in values.items()}


def segmentation_metrics(reference: np.ndarray, prediction: np.ndarray,
                         affine_or_spacing: np.ndarray | Sequence[float] = (1.0, 1.0, 1.0)
                         ) -> SegmentationMetrics:
    """Every WMH-challenge metric of one subject.

    Args:
        reference: Reference label map or mask (label 2 excluded, see :func:`challenge_masks`).
        prediction: Predicted mask / labels / probabilities on the same grid.
        affine_or_spacing: The grid's affine or voxel sizes (distances and volumes in mm).
    """
    ref, pred = challenge_masks(reference, prediction)
    affine = _affine(affine_or_spacing)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    return SegmentationMetrics(
        dice=dice(ref, pred), hd95_mm=hausdorff95(ref, pred, affine),
        avd_pct=absolute_volume_difference(ref, pred), lesions=lesion_counts(ref, pred),
        volume_true_ml=float(ref.sum()) * voxel_ml, volume_pred_ml=float(pred.sum()) * voxel_ml)
