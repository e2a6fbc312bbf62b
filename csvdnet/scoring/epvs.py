"""EPVS counting and grading: which points count on which side of which axial slice, and the grade.

The one definition of "an EPVS on this side of this slice" (:func:`side_slice_keys`) for the
synthetic truth, ``csvdnet predict`` and ``csvdnet evaluate``; the largest such count
(:func:`max_side_slice_count`) and its grade (:func:`epvs_grade`). numpy only.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from csvdnet.atlas import REGION_CODES

__all__ = ["CSO_EPVS_LIMIT", "EPVS_GRADE_LIMITS", "NON_TISSUE_REGIONS", "POINT_SEARCH_MM",
           "SLICE_TIE_VOXELS", "axial_slice_axis", "epvs_grade", "max_side_slice_count",
           "side_slice_keys", "slices_of"]

EPVS_GRADE_LIMITS = (0, 10, 20, 40)
"""EPVS grade = number of these limits the count exceeds: 0 none, 1 1-10, 2 11-20, 3 21-40,
4 > 40 (count on one side, in the axial slice with the most; Doubal et al., Stroke 2010)."""

CSO_EPVS_LIMIT = 20
"""CAA-SVD score: one point for more than this many centrum semiovale EPVS."""


def epvs_grade(count: int) -> int:
    """EPVS grade (0-4) of a count on one side of one axial slice."""
    return int(sum(count > limit for limit in EPVS_GRADE_LIMITS))


SLICE_TIE_VOXELS = 1e-3
"""A point within this fraction of a slice of the boundary between two axial slices lies on
the boundary: it counts in both slices, as a rater sees a finding that the boundary cuts in
both (and as no rounding rule, half-to-even or float noise, can decide)."""

POINT_SEARCH_MM = 4.0
"""A point in CSF, a ventricle or outside the brain (an EPVS or microbleed a region map misses
by a voxel: the lesion itself is CSF-like or dark) takes the most common tissue region within
this distance: for a count on a slice, in that slice's plane (:func:`side_slice_keys`)."""

NON_TISSUE_REGIONS = (REGION_CODES["background"], REGION_CODES["ventricles"], REGION_CODES["csf"])
"""Region codes that are not brain tissue: no EPVS or microbleed is counted in them as such."""


def axial_slice_axis(affine: np.ndarray) -> int:
    """The voxel axis of a grid closest to world z: its indices are the axial slices."""
    return int(np.argmax(np.abs(np.asarray(affine, dtype=np.float64)[2, :3])))


def slices_of(position: float) -> range:
    """The axial slices a point counts in, from its continuous slice coordinate.

    Slice ``k`` spans ``[k - 0.5, k + 0.5]`` in voxel units. A point inside one slice counts in
    that slice only; a point on the boundary of two (within :data:`SLICE_TIE_VOXELS`) counts in
    both.

    Args:
        position: The point's coordinate along the slice axis, in voxels (not rounded).

    Returns:
        The slice indices (one, or two on a boundary).
    """
    low = int(np.ceil(position - 0.5 - SLICE_TIE_VOXELS))
    high = int(np.floor(position + 0.5 + SLICE_TIE_VOXELS))
    return range(low, high + 1)


def side_slice_keys(world: np.ndarray, sides: Sequence[str], regions: np.ndarray,
                    affine: np.ndarray,
                    region_codes: int | Sequence[int]) -> list[list[tuple[str, int]]]:
    """Per point, the (side, axial slice) pairs in which it counts for an EPVS grade.

    A point counts in each axial slice of the reference grid that holds it (:func:`slices_of`:
    one, or both slices of a boundary it lies on) where the voxel of that slice under the point
    (in-plane position rounded to the nearest voxel) is in one of ``region_codes``; where that
    voxel is not tissue (:data:`NON_TISSUE_REGIONS`: an EPVS is itself CSF-like, so a map a
    voxel off puts it in the ventricle beside the caudate), the most common tissue region within
    :data:`POINT_SEARCH_MM` in that slice's plane decides, as it decides a point's region. The one
    definition of "an EPVS on this side of this slice" for the synthetic truth
    (:mod:`csvdnet.synth`), ``csvdnet predict`` and ``csvdnet evaluate``.

    Args:
        world: (N, 3) point centres, world mm of the reference frame.
        sides: ``"L"`` / ``"R"`` (or ``"M"``, which never counts) per point.
        regions: Region map on the reference grid (codes of :data:`csvdnet.atlas.REGION_CODES`).
        affine: Its voxel -> world affine.
        region_codes: The region code(s) whose points count.

    Returns:
        One list of ``(side, slice)`` keys per point (empty: it counts nowhere).
    """
    world = np.asarray(world, dtype=np.float64).reshape(-1, 3)
    if len(world) == 0:
        return []
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    voxels = world @ inverse[:3, :3].T + inverse[:3, 3]
    nearest = np.rint(voxels).astype(int)
    axis = axial_slice_axis(affine)
    codes = np.atleast_1d(region_codes)
    shape = np.asarray(regions.shape[:3])
    spacing = np.sqrt(np.sum(np.asarray(affine, dtype=np.float64)[:3, :3] ** 2, axis=0))
    reach = np.floor(POINT_SEARCH_MM / spacing).astype(int)
    reach[axis] = 0  # in the slice's own plane
    keys: list[list[tuple[str, int]]] = []
    for voxel, position, side in zip(nearest, voxels[:, axis], sides):
        found = []
        if side in ("L", "R"):
            for k in slices_of(float(position)):
                at = voxel.copy()
                at[axis] = k
                if np.all((at >= 0) & (at < shape)) and np.isin(
                        _tissue_code(regions, at, reach), codes):
                    found.append((str(side), int(k)))
        keys.append(found)
    return keys


def _tissue_code(regions: np.ndarray, at: np.ndarray, reach: np.ndarray) -> int:
    """The region at voxel ``at``; for a non-tissue voxel the most common tissue region within
    ``reach`` voxels (none there: the voxel's own code)."""
    code = int(regions[tuple(at)])
    if code not in NON_TISSUE_REGIONS:
        return code
    lo = np.maximum(at - reach, 0)
    hi = np.minimum(at + reach + 1, regions.shape[:3])
    around = np.asarray(regions[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]).ravel()
    around = around[np.isin(around, NON_TISSUE_REGIONS, invert=True)]
    return int(np.bincount(around.astype(np.int64)).argmax()) if around.size else code


def max_side_slice_count(world: np.ndarray, sides: Sequence[str], regions: np.ndarray,
                         affine: np.ndarray, region_codes: int | Sequence[int]) -> int:
    """Largest number of points in the given regions on one side of one axial slice.

    The EPVS rating convention (basal ganglia for Staals, centrum semiovale for CAA-SVD): count
    the points per hemisphere and per axial slice of the reference grid, take the largest count.
    Which points count where is :func:`side_slice_keys` (a point on a slice boundary counts in
    both slices).

    Args:
        world: (N, 3) point centres, world mm of the reference frame.
        sides: ``"L"`` / ``"R"`` per point (``"M"``: on the midline, not counted).
        regions: Region map on the reference grid (codes of :data:`csvdnet.atlas.REGION_CODES`).
        affine: Its voxel -> world affine.
        region_codes: The region code(s) whose points count.

    Returns:
        The count (0 when no point lies in the regions).
    """
    counts = Counter(key for keys in side_slice_keys(world, sides, regions, affine, region_codes)
                     for key in keys)
    return max(counts.values(), default=0)
