"""From probability maps and heatmaps to masks, lesions and points (numpy / scipy only).

The one definition of each step, used by training validation, the held-out check, ``csvdnet
predict`` and ``csvdnet evaluate`` alike, so that what is validated is what is reported:

- :func:`threshold_mask`: probability >= threshold, then :func:`remove_small_components`;
- :func:`mask_to_reference`: a mask decided on the working grid carried back, each lesion whole;
- :func:`components`: the 26-connected lesions of a mask with their size and place;
- :func:`find_peaks`: heatmap local maxima at sub-voxel positions (plateaus merged) with
  non-maximum suppression in mm; :func:`on_a_ridge`: which of them are one long finding's.

Lesions are 26-connected components (the MICCAI 2017 WMH challenge and VALDO 2021 convention).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage, spatial

from csvdnet.inference.peak_shape import (RIDGE_EXEMPT_REGIONS, RIDGE_RADIUS_MM,
                                          SHOULDER_RELATIVE, SUBVOXEL_FLOOR, on_a_ridge,
                                          peak_widths, shoulder_peaks, subvoxel_offsets)

__all__ = ["CONNECTIVITY", "Component", "PEAK_MIN_DISTANCE_MM", "PEAK_NEIGHBOURHOODS",
           "RIDGE_EXEMPT_REGIONS", "RIDGE_RADIUS_MM", "SHOULDER_RELATIVE", "SMALLEST_LESION_MM3",
           "SUBVOXEL_FLOOR", "components", "find_peaks", "mask_to_reference", "off_ridges",
           "on_a_ridge", "peak_widths", "per_label", "remove_small_components",
           "shoulder_peaks", "size_floor_mm3", "subvoxel_offsets", "threshold_mask"]

CONNECTIVITY = np.ones((3, 3, 3), bool)
"""26-connectivity: a lesion is one component across faces, edges and corners."""

PEAK_NEIGHBOURHOODS = {"cube": CONNECTIVITY, "faces": ndimage.generate_binary_structure(3, 1)}
"""What a heatmap peak is the maximum of (:func:`find_peaks`), by name: its 3x3x3 ``cube``, or
itself and its six ``faces`` neighbours. Two findings whose nearest working voxels are diagonal
neighbours (EPVS 3.1-4.5 mm apart on the 1.5 mm grid) are one peak in a cube and two with faces,
while an isolated Gaussian is one peak either way (every other voxel has a face neighbour nearer
its centre). Measured (RESULTS.md, "Rating layer ... peak neighbourhood"): on a perfect
network's heatmaps faces find the EPVS the cube loses, but the shipped network's heatmaps ridge
along oblique EPVS, where faces find a peak per step (held-out EPVS false positives 302 -> 608):
a model names its own (``inference.peak_neighbourhood``), ``cube`` unless it says."""

PEAK_MIN_DISTANCE_MM = {"cube": 3.0, "faces": 2.5}
"""Two CMB / EPVS peaks closer than this (mm) are one finding in predict (:func:`find_peaks`'
suppression), by peak neighbourhood. In a cube, the heatmaps' Gaussians (sigma 2 mm) of two
findings this close merge into one peak anyway. With faces, 2.5 mm keeps two peaks on corner
diagonal voxels of the 1.5 mm grid (2.6 mm) and drops those on edge diagonals (2.1 mm): on a
perfect network's heatmaps it loses 1 of 313 EPVS where 2 mm loses none, but 2 mm doubled a
real network's extra peaks (RESULTS.md)."""


SMALLEST_LESION_MM3 = {"lacune": float(np.pi / 6 * 3.0 ** 3)}
"""The smallest lesion a definition admits, by task: a lacune is 3-15 mm across (STRIVE), so the
smallest is a 3 mm sphere (~14.1 mm^3). A size floor above it deletes real lesions whatever
the network does (a 30 mm^3 floor deleted true lacunes of 26-43 mm^3 at probability 1), so
predict and calibration never use a larger one; false positives are for the threshold."""


def size_floor_mm3(task: str, configured: float) -> float:
    """The smallest component kept for ``task``: ``configured``, at most the task's
    :data:`SMALLEST_LESION_MM3`."""
    return min(float(configured), SMALLEST_LESION_MM3.get(task, np.inf))


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


def per_label(reduce, values: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """``reduce`` (``ndimage.maximum`` / ``minimum``) of ``values`` over labels 1..``count``,
    given only the labelled voxels: scipy sorts every voxel it is given, and the background is
    most of a volume (1.6 of 2.9 CPU s of a clinical subject's post-processing). Same values."""
    if count == 0:
        return np.zeros(0)
    labelled = labels > 0
    return np.asarray(reduce(np.asarray(values)[labelled], labels[labelled],
                             np.arange(1, count + 1)), float).reshape(-1)


def find_peaks(heatmap: np.ndarray, threshold: float, spacing: Sequence[float] = (1.0, 1.0, 1.0),
               min_distance_mm: float = 0.0, shoulders: bool = False,
               neighbourhood: str = "cube") -> tuple[np.ndarray, np.ndarray]:
    """Heatmap peaks at sub-voxel positions: local maxima at or above ``threshold``, plateaus
    merged, then suppression.

    A peak is a voxel whose value is the maximum of its ``neighbourhood``
    (:data:`PEAK_NEIGHBOURHOODS`: its 3x3x3 cube, or its six face neighbours); peak voxels
    connected through that neighbourhood (a plateau) count once, at their centre. A peak is placed between voxels (along the
    axes its plateau does not span: all three for a single voxel) by :func:`subvoxel_offsets` (a parabola through the logarithms of the peak and its
    two neighbours along each axis: exact for an isolated Gaussian), so a finding keeps the
    position the network drew it at, not the nearest voxel's (which decides, e.g., the axial
    slice an EPVS is counted in). Non-maximum suppression comes first, on the peak voxels,
    highest first: a peak closer than ``min_distance_mm`` to a higher peak that was kept is
    dropped (ties go to the peak first in voxel order).

    Args:
        heatmap: ``(X, Y, Z)`` heatmap.
        threshold: Lowest peak value.
        spacing: Voxel size in mm along each axis (distances are in mm, so anisotropic voxels
            suppress along each axis by its own size).
        min_distance_mm: Smallest distance between two kept peaks (0: no suppression).
        shoulders: Also report findings hidden in a found peak's shoulder
            (:func:`shoulder_peaks`: two findings whose nearest voxels touch make one local
            maximum), with their residual height as value. Off by default: it assumes the
            heatmap is max-combined Gaussians, as the targets are; the shipped network's
            heatmaps are not (held-out EPVS false positives 336 -> 1,273 with it, 24 demo
            subjects of seed 7), so it is for a network whose peaks look like its targets.
        neighbourhood: ``"cube"`` or ``"faces"`` (:data:`PEAK_NEIGHBOURHOODS`).

    Returns:
        ``(points, values)``: float ``(N, 3)`` voxel coordinates (sub-voxel positions, plateau
        centres) and the ``(N,)`` heatmap values at the peak voxels, highest first.
    """
    heatmap = np.asarray(heatmap)
    if neighbourhood not in PEAK_NEIGHBOURHOODS:
        raise ValueError(f"peak neighbourhood must be one of {', '.join(PEAK_NEIGHBOURHOODS)}, "
                         f"got {neighbourhood!r}")
    footprint = PEAK_NEIGHBOURHOODS[neighbourhood]
    peaks = ((heatmap >= threshold)
             & (ndimage.maximum_filter(heatmap, footprint=footprint) == heatmap))
    labels, count = ndimage.label(peaks, structure=footprint)
    if count == 0:
        return np.zeros((0, 3)), np.zeros((0,))
    index = np.arange(1, count + 1)
    points = np.asarray(ndimage.center_of_mass(peaks, labels, index), float).reshape(-1, 3)
    values = per_label(ndimage.maximum, heatmap, labels, count)
    order = np.argsort(-values, kind="stable")
    points, values = points[order], values[order]
    if min_distance_mm > 0.0 and count > 1:
        # Suppression on the peak voxels, before the sub-voxel step: where two findings' heatmaps
        # overlap, the neighbour between them belongs to the other and pulls the parabola's
        # vertex towards it (two EPVS 3.1 mm apart would come out 2.8 mm apart and merge).
        tree = spatial.cKDTree(points * np.asarray(spacing, float))
        # query_ball_point includes the radius itself; the largest float below it: "closer than".
        radius = float(np.nextafter(min_distance_mm, 0.0))
        suppressed = np.zeros(count, bool)
        kept = []
        for i in range(count):
            if suppressed[i]:
                continue
            kept.append(i)
            suppressed[tree.query_ball_point(tree.data[i], radius)] = True
        points, values = points[kept], values[kept]
    # Along an axis the plateau does not extend in (its centre is a voxel index), the vertex of
    # the log-parabola through the centre voxel and its neighbours; a plateau keeps its centre
    # along the axes it spans (two equal voxels: the finding lies half-way).
    voxels = np.rint(points).astype(int)
    integral = np.abs(points - voxels) < 1e-9
    points = np.where(integral, voxels + subvoxel_offsets(heatmap, voxels), points)
    if shoulders:
        # Only single-voxel peaks are Gaussians to model; near a plateau (a saturated output)
        # a residual means nothing.
        single = integral.all(axis=1)
        plateaus = peaks & (np.bincount(labels.ravel())[labels] > 1)
        extra, extra_values = shoulder_peaks(heatmap, points[single], values[single], threshold,
                                             exclude=ndimage.maximum_filter(plateaus, size=5))
        if len(extra):
            points, values = np.vstack([points, extra]), np.concatenate([values, extra_values])
            order = np.argsort(-values, kind="stable")
            points, values = points[order], values[order]
    return points, values


def off_ridges(heatmap: np.ndarray, points: np.ndarray, values: np.ndarray, ridge: float,
               spacing: Sequence[float], regions: Sequence[str]) -> np.ndarray:
    """Which of :func:`find_peaks`' peaks are findings of their own: not on a higher peak's
    ridge (:func:`on_a_ridge` with ``ridge``), or in :data:`RIDGE_EXEMPT_REGIONS` (``regions``:
    each peak's region name), where two peaks are two EPVS.

    Returns:
        bool ``(N,)``: True for the peaks kept.
    """
    exempt = np.isin(np.asarray(regions, dtype=object), RIDGE_EXEMPT_REGIONS)
    return ~on_a_ridge(heatmap, points, values, ridge, spacing, exempt=exempt)


def mask_to_reference(mask: np.ndarray, invert: Callable[[np.ndarray, int], np.ndarray],
                      working_to_reference: np.ndarray) -> np.ndarray:
    """A lesion mask decided on the working grid, carried back to the reference grid whole.

    The mask (thresholded where the network decided it, with its small components removed
    there) is resampled linearly and kept where at least half of a reference voxel's
    interpolation weight is lesion, which keeps each lesion's volume; thresholding the
    resampled probabilities instead shrinks a small lesion (a 117 mm^3 lacune at probability 1
    kept 22 mm^3 above 0.95 once interpolated). A lesion that no reference voxel samples at
    half weight (thinner than a reference voxel) keeps the one voxel under its centroid, so no
    decided lesion is lost on the way back.

    Args:
        mask: Boolean mask on the working grid.
        invert: ``invert(array, order)`` puts a working-grid array on the reference grid
            (:meth:`csvdnet.preprocessing.PreprocessMeta.invert`).
        working_to_reference: 4x4 map from working voxel to reference voxel indices.

    Returns:
        Boolean mask on the reference grid.
    """
    mask = np.asarray(mask).astype(bool)
    carried = np.asarray(invert(mask.astype(np.float32), 1)) >= 0.5
    labels, count = ndimage.label(mask, structure=CONNECTIVITY)
    if count == 0:
        return carried
    nearest = np.asarray(invert(labels.astype(np.int32), 0))
    present = np.zeros(count + 1, bool)
    present[np.unique(nearest[carried])] = True
    missing = np.flatnonzero(~present[1:]) + 1
    if len(missing):
        centroids = np.asarray(ndimage.center_of_mass(mask, labels, missing), float).reshape(-1, 3)
        matrix = np.asarray(working_to_reference, float)
        voxels = np.rint(centroids @ matrix[:3, :3].T + matrix[:3, 3]).astype(int)
        inside = np.all((voxels >= 0) & (voxels < np.asarray(carried.shape)), axis=1)
        carried[tuple(voxels[inside].T)] = True
    return carried


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
    peaks = per_label(ndimage.maximum, np.asarray(prob, float), labels, count)
    return [Component(int(n), float(n) * voxel_mm3, tuple(map(float, c)), tuple(map(float, w)),
                      float(p))
            for n, c, w, p in zip(sizes, centroids, world, peaks)]
