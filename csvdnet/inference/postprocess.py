"""From probability maps and heatmaps to masks, lesions and points (numpy / scipy only).

The one definition of each step, used by training validation, the held-out check, ``csvdnet
predict`` and ``csvdnet evaluate`` alike, so that what is validated is what is reported:

- :func:`threshold_mask`: probability >= threshold, then :func:`remove_small_components`;
- :func:`components`: the 26-connected lesions of a mask with their size and place;
- :func:`find_peaks`: heatmap local maxima (plateaus merged) with non-maximum suppression in mm.

Lesions are 26-connected components (the MICCAI 2017 WMH challenge and VALDO 2021 convention).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy import ndimage, spatial

__all__ = ["CONNECTIVITY", "Component", "components", "find_peaks", "remove_small_components",
           "threshold_mask"]

CONNECTIVITY = np.ones((3, 3, 3), bool)
"""26-connectivity: a lesion is one component across faces, edges and corners."""


def remove_small_components(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    """``mask`` without the 26-connected components of fewer than ``min_voxels`` voxels."""
    mask = mask.astype(bool)
    if min_voxels <= 1:
        return mask
    labels, count = ndimage.label(mask, structure=CONNECTIVITY)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def threshold_mask(prob: np.ndarray, threshold: float, min_voxels: float = 0.0) -> np.ndarray:
    """Voxels with ``prob >= threshold``, without components of fewer than ``min_voxels`` voxels.

    Args:
        prob: Probability map.
        threshold: Lowest probability that is lesion.
        min_voxels: Smallest component kept, in voxels (a volume in mm^3 divided by the voxel
            volume; fractional values round up in effect).

    Returns:
        Boolean mask of ``prob``'s shape.
    """
    return remove_small_components(np.asarray(prob) >= threshold, min_voxels)


def find_peaks(heatmap: np.ndarray, threshold: float, spacing: Sequence[float] = (1.0, 1.0, 1.0),
               min_distance_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap peaks: local maxima at or above ``threshold``, plateaus merged, then suppression.

    A peak is a voxel whose value is the maximum of its 3x3x3 neighbourhood; 26-connected peak
    voxels (a plateau) count once, at their centre. Then non-maximum suppression, highest first:
    a peak closer than ``min_distance_mm`` to a higher peak that was kept is dropped (ties go to
    the peak first in voxel order).

    Args:
        heatmap: ``(X, Y, Z)`` heatmap.
        threshold: Lowest peak value.
        spacing: Voxel size in mm along each axis (distances are in mm, so anisotropic voxels
            suppress along each axis by its own size).
        min_distance_mm: Smallest distance between two kept peaks (0: no suppression).

    Returns:
        ``(points, values)``: float ``(N, 3)`` voxel coordinates (plateau centres) and the
        ``(N,)`` heatmap values at the peaks, highest first.
    """
    heatmap = np.asarray(heatmap)
    peaks = (heatmap >= threshold) & (ndimage.maximum_filter(heatmap, size=3) == heatmap)
    labels, count = ndimage.label(peaks, structure=CONNECTIVITY)
    if count == 0:
        return np.zeros((0, 3)), np.zeros((0,))
    index = np.arange(1, count + 1)
    points = np.asarray(ndimage.center_of_mass(peaks, labels, index), float).reshape(-1, 3)
    values = np.asarray(ndimage.maximum(heatmap, labels, index), float)
    order = np.argsort(-values, kind="stable")
    points, values = points[order], values[order]
    if min_distance_mm <= 0.0 or count == 1:
        return points, values
    tree = spatial.cKDTree(points * np.asarray(spacing, float))
    # query_ball_point includes the radius itself; the largest float below it makes "closer than".
    radius = float(np.nextafter(min_distance_mm, 0.0))
    suppressed = np.zeros(count, bool)
    kept = []
    for i in range(count):
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed[tree.query_ball_point(tree.data[i], radius)] = True
    return points[kept], values[kept]


@dataclasses.dataclass(frozen=True)
class Component:
    """One 26-connected lesion of a mask.

    Attributes:
        voxels: Number of voxels.
        volume_mm3: Volume in mm^3 (voxels times the voxel volume of the affine).
        centroid_voxel: Mean voxel coordinate (i, j, k).
        centroid_world: The centroid in world mm (through the affine).
        max_prob: Highest probability inside the component.
    """

    voxels: int
    volume_mm3: float
    centroid_voxel: tuple[float, float, float]
    centroid_world: tuple[float, float, float]
    max_prob: float


def components(mask: np.ndarray, prob: np.ndarray, affine: np.ndarray) -> list[Component]:
    """The 26-connected components of ``mask``, in label (voxel scan) order.

    Args:
        mask: Boolean lesion mask.
        prob: Probability map of the same grid (for each lesion's confidence).
        affine: The grid's voxel -> world affine.

    Returns:
        One :class:`Component` per lesion.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.shape != np.shape(prob):
        raise ValueError(f"mask {mask.shape} and probabilities {np.shape(prob)} differ in shape")
    labels, count = ndimage.label(mask, structure=CONNECTIVITY)
    if count == 0:
        return []
    affine = np.asarray(affine, float)
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    index = np.arange(1, count + 1)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    centroids = np.asarray(ndimage.center_of_mass(mask, labels, index), float).reshape(-1, 3)
    world = centroids @ affine[:3, :3].T + affine[:3, 3]
    peaks = np.asarray(ndimage.maximum(np.asarray(prob, float), labels, index), float)
    return [Component(int(n), float(n) * voxel_mm3, tuple(map(float, c)), tuple(map(float, w)),
                      float(p))
            for n, c, w, p in zip(sizes, centroids, world, peaks)]
