"""The shape of a heatmap peak: its sub-voxel centre, its Gaussian width, and findings hidden
in its shoulder, and peaks that are one finding's ridge.

Used by :func:`csvdnet.inference.postprocess.find_peaks` (which re-exports these names): the
parabola through the logarithms of a peak and its neighbours (:func:`subvoxel_offsets`: exact
for a Gaussian), the width from the same curvature (:func:`peak_widths`), and the shoulder
search (:func:`shoulder_peaks`) for two findings whose nearest voxels touch. numpy / scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["RIDGE_EXEMPT_REGIONS", "RIDGE_RADIUS_MM", "RIDGE_STEP_VOXELS", "SHOULDER_RELATIVE",
           "SUBVOXEL_FLOOR", "on_a_ridge", "peak_widths", "shoulder_peaks", "subvoxel_offsets"]

_CONNECTIVITY = np.ones((3, 3, 3), bool)  # 26-connected, as postprocess.CONNECTIVITY

SUBVOXEL_FLOOR = 1e-6
"""Heatmap values are clipped to at least this before their logarithm is taken."""


def subvoxel_offsets(heatmap: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """Sub-voxel offsets of local maxima: per axis, the vertex of the parabola through the
    logarithms of the heatmap at the voxel and its two neighbours.

    For a Gaussian ``exp(-(x - c)^2 / (2 s^2))`` the logarithm is a parabola, so the vertex is
    ``c`` exactly, whatever ``s``; for other peak shapes it is the usual quadratic estimate.
    An axis whose neighbour lies outside the volume, or along which the values are flat, gets
    offset 0; offsets are clipped to [-0.5, 0.5] (a local maximum's peak lies within half a
    voxel of it).

    Args:
        heatmap: ``(X, Y, Z)`` heatmap.
        voxels: int ``(N, 3)`` indices of local maxima.

    Returns:
        float ``(N, 3)`` offsets in voxels.
    """
    voxels = np.asarray(voxels, dtype=int).reshape(-1, 3)
    offsets = np.zeros(voxels.shape, dtype=np.float64)
    for axis, inside, (low, centre, high) in _log_neighbours(heatmap, voxels):
        curvature = low - 2 * centre + high
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(curvature < 0, 0.5 * (low - high) / curvature, 0.0)
        offsets[inside, axis] = np.clip(vertex, -0.5, 0.5)
    return offsets


def _log_neighbours(heatmap: np.ndarray, voxels: np.ndarray):
    """Per axis: ``(axis, inside, (log h[v - 1], log h[v], log h[v + 1]))`` for the voxels
    whose two neighbours along it are in the volume (``inside`` selects them); values clipped
    to :data:`SUBVOXEL_FLOOR` first."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    shape = np.asarray(heatmap.shape[:3])
    for axis in range(3):
        step = np.zeros(3, dtype=int)
        step[axis] = 1
        inside = (voxels[:, axis] >= 1) & (voxels[:, axis] <= shape[axis] - 2)
        at = voxels[inside]
        yield axis, inside, tuple(np.log(np.maximum(heatmap[tuple((at + d * step).T)],
                                                    SUBVOXEL_FLOOR)) for d in (-1, 0, 1))


SHOULDER_RELATIVE = 0.25
"""A shoulder peak must rise above the found peaks' Gaussians by at least this fraction of the
heatmap there (and by the threshold): a heatmap blob merely wider or noisier than a Gaussian
leaves less."""


def peak_widths(heatmap: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """Gaussian width (sigma, voxels) of each peak from the curvature of the logarithm of the
    heatmap at its voxel: the narrowest of the three axes (a neighbouring finding's Gaussian
    only widens the axes towards it); ``nan`` where no axis curves down."""
    voxels = np.asarray(voxels, dtype=int).reshape(-1, 3)
    widths = np.full((len(voxels), 3), np.nan)
    for axis, inside, (low, centre, high) in _log_neighbours(heatmap, voxels):
        curvature = low - 2 * centre + high
        with np.errstate(divide="ignore", invalid="ignore"):
            widths[inside, axis] = np.where(curvature < 0, np.sqrt(-1.0 / curvature), np.nan)
    with np.errstate(all="ignore"):
        return np.nanmin(np.where(np.isnan(widths), np.inf, widths), axis=1)


def shoulder_peaks(heatmap: np.ndarray, points: np.ndarray, values: np.ndarray,
                   threshold: float,
                   exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Findings hidden in the shoulder of a found peak: two findings ~2 voxels apart whose
    nearest voxels touch make one local maximum.

    Each found peak is modelled as a Gaussian (its sub-voxel position, its width from
    :func:`peak_widths`, the amplitude that gives its peak value) and the models combined by
    maximum, as the heatmap targets are. A local maximum of the residual (heatmap minus model)
    of at least ``threshold`` and at least :data:`SHOULDER_RELATIVE` of the heatmap there is a
    further finding, with the residual as its value, placed where the heatmap peaks in the
    domain the models do not explain (then between voxels, as :func:`find_peaks` places any
    peak: within 0.4 mm of the finding when its neighbour's Gaussian overlaps it).

    Measured on the true EPVS of 40 demo subjects (seed 51; 1,658 points, max-combined Gaussians
    of sigma 2 mm on the 1.5 mm grid): the local maxima alone miss 49, all 3.1-3.6 mm from
    another EPVS; with the shoulders 6 are missed and none is false. On isolated noisy blobs
    wider than a 2 mm Gaussian (sigma 2.5 / 3 / 4 mm, amplitude 0.3-0.9, noise sd 0.05): 0 / 1 /
    8 false findings per 600 blobs.

    Args:
        heatmap: ``(X, Y, Z)`` heatmap.
        points: ``(N, 3)`` found peaks (voxel coordinates, sub-voxel).
        values: ``(N,)`` their heatmap values.
        threshold: Lowest residual that is a finding.
        exclude: Voxels where no shoulder finding may be (e.g. around plateaus).

    Returns:
        ``(points, values)`` of the shoulder findings (voxel coordinates; residual heights).
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        return np.zeros((0, 3)), np.zeros((0,))
    voxels = np.rint(points).astype(int)
    widths = peak_widths(heatmap, voxels)
    model = np.zeros(heatmap.shape, dtype=np.float64)
    support = np.zeros(heatmap.shape, dtype=bool)
    shape = np.asarray(heatmap.shape)
    for point, voxel, value, width in zip(points, voxels, np.asarray(values, float), widths):
        if not np.isfinite(width):
            continue
        radius = int(np.ceil(3 * width))
        low = np.maximum(voxel - radius, 0)
        high = np.minimum(voxel + radius + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        grid = np.meshgrid(*[np.arange(a, b) for a, b in zip(low, high)], indexing="ij")
        distance2 = sum((g - c) ** 2 for g, c in zip(grid, point))
        amplitude = value / np.exp(-0.5 * np.sum((point - voxel) ** 2) / width ** 2)
        model[box] = np.maximum(model[box], amplitude * np.exp(-0.5 * distance2 / width ** 2))
        support[box] = True
    if exclude is not None:
        support &= ~np.asarray(exclude, bool)
    residual = np.where(support, heatmap - model, 0.0)
    own = residual >= SHOULDER_RELATIVE * heatmap  # where no found peak explains the heatmap
    candidates = ((residual >= threshold) & own & support
                  & (ndimage.maximum_filter(residual, size=3) == residual))
    if not candidates.any():
        return np.zeros((0, 3)), np.zeros((0,))
    # The residual peaks away from the other finding; the finding itself is where the heatmap
    # peaks within the domain it explains, placed between voxels as any peak is.
    domains, _ = ndimage.label(own & support, structure=_CONNECTIVITY)
    found: dict[tuple[int, ...], float] = {}
    for candidate in np.argwhere(candidates):
        low = np.maximum(candidate - 2, 0)
        high = np.minimum(candidate + 3, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        values_here = np.where(domains[box] == domains[tuple(candidate)], heatmap[box], -np.inf)
        voxel = tuple(int(v) for v in low + np.unravel_index(np.argmax(values_here),
                                                             values_here.shape))
        found[voxel] = max(found.get(voxel, 0.0), float(residual[tuple(candidate)]))
    voxels = np.array(list(found), int).reshape(-1, 3)
    heights = np.array(list(found.values()), float)
    return voxels + subvoxel_offsets(heatmap, voxels), heights


RIDGE_RADIUS_MM = 9.0
"""Two peaks farther apart than this (mm) are never one finding's ridge (:func:`on_a_ridge`):
about the length of the longest EPVS on an axial-oblique course."""

RIDGE_EXEMPT_REGIONS = ("basal_ganglia",)
"""Regions whose peaks :func:`on_a_ridge` never drops in predict and calibration: basal-ganglia
EPVS are short and dense (the Staals count: 11-20 on one slice of one side is grade 2), so two
peaks there are two EPVS even when the network's heatmap joins them."""

RIDGE_STEP_VOXELS = 0.5
"""Spacing of the samples taken along the segment between two peaks (voxels)."""


def on_a_ridge(heatmap: np.ndarray, points: np.ndarray, values: np.ndarray, ridge: float,
               spacing=(1.0, 1.0, 1.0), radius_mm: float = RIDGE_RADIUS_MM,
               exempt: np.ndarray | None = None) -> np.ndarray:
    """Which peaks are a higher peak's ridge: the heatmap along the straight segment from the
    peak to a higher kept peak within ``radius_mm`` never falls below ``ridge`` times the
    peak's own value.

    A network's heatmap of a long or oblique EPVS is a ridge along the tube with several local
    maxima on it; each would count as a finding. Two findings side by side leave a valley
    between their peaks, but a shallow one on the working grid: for max-combined Gaussians of
    sigma 2 mm sampled every 1.5 mm and read trilinearly between voxels, a ridge fraction of
    0.5 calls every pair 3.1-5 mm apart one finding and 8 of 40 pairs 6 mm apart, 0.6 keeps
    every pair 6 mm apart and 13 of 40 at 5 mm. So the test is for where EPVS are long and
    sparse (the centrum semiovale), not where they are short and dense: predict exempts the
    peaks in :data:`RIDGE_EXEMPT_REGIONS` (``exempt``). Peaks are taken highest first
    (``values`` descending, as :func:`find_peaks` orders them); one on a ridge is dropped and
    is no-one's reference; an exempt peak is never dropped but is a reference.

    Args:
        heatmap: ``(X, Y, Z)`` heatmap.
        points: ``(N, 3)`` peaks, voxel coordinates (sub-voxel), highest first.
        values: ``(N,)`` their heatmap values.
        ridge: Fraction of the lower peak the path must stay at or above (0: nothing dropped).
        spacing: Voxel size in mm per axis.
        radius_mm: Farthest pair compared (:data:`RIDGE_RADIUS_MM`).
        exempt: ``(N,)`` bool, peaks never dropped (None: none).

    Returns:
        bool ``(N,)``: True where the peak lies on a higher peak's ridge.
    """
    from scipy import spatial

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    dropped = np.zeros(len(points), bool)
    if ridge <= 0.0 or len(points) < 2:
        return dropped
    heatmap = np.asarray(heatmap, dtype=np.float32)
    tree = spatial.cKDTree(points * np.asarray(spacing, float))
    kept = np.zeros(len(points), bool)
    exempt = np.zeros(len(points), bool) if exempt is None else np.asarray(exempt, bool)
    for i in range(len(points)):
        if exempt[i]:
            kept[i] = True
            continue
        for j in sorted(tree.query_ball_point(tree.data[i], radius_mm)):
            if j >= i or not kept[j]:
                continue
            steps = max(2, int(np.ceil(np.linalg.norm(points[j] - points[i])
                                       / RIDGE_STEP_VOXELS)))
            t = np.linspace(0.0, 1.0, steps + 1)[1:-1]
            path = points[i] + t[:, None] * (points[j] - points[i])
            along = ndimage.map_coordinates(heatmap, path.T, order=1, mode="nearest")
            if along.min() >= ridge * values[i]:
                dropped[i] = True
                break
        kept[i] = not dropped[i]
    return dropped
