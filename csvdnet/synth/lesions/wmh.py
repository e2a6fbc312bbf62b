"""White matter hyperintensities: periventricular caps, halo and fingers, and deep foci,
clusters and confluent areas, following the planned Fazekas grades.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from csvdnet.atlas import PERIVENTRICULAR_MM
from csvdnet.synth.anatomy import Anatomy
from csvdnet.synth.geometry import Grid, SmoothField
from csvdnet.synth.lesions.drawing import _bumps, _random_rotation
from csvdnet.synth.lesions.placer import (_DEEP_WM, _R, _Placer, _flat, _min_semi_axes,
                                          _visible)
from csvdnet.synth.ratings import Plan
from csvdnet.synth.shapes import Ellipsoid, rasterize

_WHITE_MATTER = (_R["centrum_semiovale"], _R["periventricular"], _R["deep_wm"], _R["juxtacortical"])
# Frontal and occipital horn tips (MNI mm) where periventricular caps form.
_CAP_CENTRES_MNI = np.array([[-14, 24, 12], [14, 24, 12], [-24, -58, 8], [24, -58, 8]],
                            dtype=np.float32)
_CAP_SIGMA_MM = 7.0
# Grades < 3 keep periventricular WMH this far inside the 10 mm band, and deep foci this far
# outside it: half a reference slice of partial volume must not carry a voxel across.
_BAND_CLEARANCE_MM = 3.0
# A deep WMH focus must fill this much of a reference voxel: it is painted into partial WM
# through the fine grid, and must still be labelled (> 0.5) there.
_WMH_VISIBLE = 0.8


def _draw_wmh(anat: Anatomy, plan: Plan, reference: Grid, rng: np.random.Generator) -> None:
    """Turn white matter into WMH following the planned Fazekas grades."""
    load = np.zeros(anat.grid.shape, dtype=np.float32)
    if plan.fazekas_pv:
        box = _bounding_box(anat.ventricle_distance < PERIVENTRICULAR_MM + 25)
        load[box] = _periventricular_load(anat, box, plan.fazekas_pv, _min_semi_axes(reference),
                                          rng)
    if plan.fazekas_deep:
        _deep_wmh(anat, load, plan.fazekas_deep, reference, rng)
    if load.any():
        box = _bounding_box(load > 0)
        white = np.isin(anat.regions[box], _WHITE_MATTER)
        anat.paint(box, load[box] * white, into="wmh", replace=("wm",))


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    where = np.argwhere(mask)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _periventricular_load(anat: Anatomy, box: tuple[slice, ...], grade: int, min_axes: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """Fraction of WM that is WMH around the ventricles, for Fazekas PV 1-3.

    The lesion's thickness from the ventricle wall varies over the brain: caps at the horns
    (at least 1.5x ``min_axes`` thick, so that they show on the reference grid), an even halo,
    and for grade 3 irregular fingers from a band-limited random field.
    """
    mni = anat.mni[(slice(None),) + box]
    caps = np.zeros(mni.shape[1:], dtype=np.float32)
    for centre in _CAP_CENTRES_MNI:
        distance2 = sum((mni[d] - centre[d]) ** 2 for d in range(3))
        np.maximum(caps, np.exp(-0.5 * distance2 / _CAP_SIGMA_MM ** 2), out=caps)
    if grade == 1:  # caps, with or without a pencil-thin lining
        cap = max(rng.uniform(4.0, 6.0), 1.5 * float(min_axes.max()))
        thickness = rng.choice([0.0, rng.uniform(0.8, 1.6)]) + cap * caps
    elif grade == 2:  # smooth halo
        thickness = rng.uniform(2.5, 4.0) + rng.uniform(1.5, 3.0) * caps
    else:  # irregular, extending into the deep white matter
        grid = anat.grid.crop(box)
        fingers = SmoothField.random(rng, grid.voxel_to_world(np.zeros((1, 3)))[0],
                                     grid.voxel_to_world(np.array(grid.shape)[None] - 1)[0],
                                     order=14, rms=1.0, falloff=0.3).on_grid(grid)[0]
        thickness = (rng.uniform(3.0, 5.0) + rng.uniform(2.0, 4.0) * caps
                     + 8.0 * np.clip(fingers, 0, None))
    if grade < 3:
        thickness = np.minimum(thickness, PERIVENTRICULAR_MM - _BAND_CLEARANCE_MM)
    # Ventricle distances are to voxel centres: the wall is half an atlas voxel out.
    wall_distance = anat.ventricle_distance[box] - 0.5
    return np.clip((thickness - wall_distance) / anat.grid.spacing[0] + 0.5, 0, 1)


def _deep_wmh(anat: Anatomy, load: np.ndarray, grade: int, reference: Grid,
              rng: np.random.Generator) -> None:
    """Deep WMH into ``load``: punctate foci (1), merging clusters (2), confluent areas (3).

    Every focus and cluster shows on the reference grid (part of it is more than half lesion
    in some reference voxel), so a deep grade always has labelled deep WMH. Foci and clusters
    keep out of the periventricular band; confluent areas may merge into it.
    """
    placer = _Placer(anat, rng)  # WMH may touch other lesions: a placer of their own
    min_axes = _min_semi_axes(reference)

    def blobs(count: tuple[int, int], clearance: float, extent: float,
              make: Callable[[], list[Ellipsoid]], check: bool) -> None:
        """Place ``make()`` shapes (drawn around the origin) at free deep WM positions."""
        candidates = placer.candidates(
            _DEEP_WM + (_R["juxtacortical"],), tissue_min=0.8,
            where=lambda i: (_flat(anat.ventricle_distance, i) > clearance)
            & (_flat(anat.tissue("wm"), i) > 0.8))
        for _ in range(rng.integers(count[0], count[1] + 1)):
            shapes = make()
            centre = placer.draw(candidates, extent, gap=1.0, valid=lambda p: not check or any(
                _visible(_moved(shape, p), reference, _WMH_VISIBLE) for shape in shapes))
            for shape in shapes if centre is not None else ():
                raster = rasterize(_moved(shape, centre), anat.grid)
                if raster is not None:
                    np.maximum(load[raster[0]], raster[1], out=load[raster[0]])

    def focus(low: float = 1.5, high: float = 3.5,
              centre: tuple[float, ...] = (0.0, 0.0, 0.0)) -> list[Ellipsoid]:
        axes = np.maximum(rng.uniform(low, high, 3), min_axes)
        return [Ellipsoid(np.asarray(centre), axes, _random_rotation(rng, 25), _bumps(rng, 3, 0.2))]

    def cluster() -> list[Ellipsoid]:  # foci beginning to merge
        offsets = rng.normal(0, 2.5, (int(rng.integers(3, 6)), 3))
        return [shape for offset in offsets for shape in focus(2.0, 4.0, tuple(offset))]

    def confluent() -> list[Ellipsoid]:
        axes = np.array([rng.uniform(7, 13), rng.uniform(10, 18), rng.uniform(6, 11)])
        return [Ellipsoid(np.zeros(3), axes, _random_rotation(rng, 25), _bumps(rng, 8, 0.45))]

    outside_band = PERIVENTRICULAR_MM + _BAND_CLEARANCE_MM
    cluster_extent = 10.0 + float(min_axes.max())
    focus_extent = max(3.5, float(min_axes.max())) * 1.2
    blobs({3: (2, 4)}.get(grade, (0, 0)), PERIVENTRICULAR_MM + 5.0, 18.0, confluent, check=False)
    blobs({2: (2, 4), 3: (3, 5)}.get(grade, (0, 0)), outside_band + cluster_extent, cluster_extent,
          cluster, check=True)
    blobs({1: (3, 10), 2: (8, 16), 3: (10, 20)}[grade], outside_band + focus_extent, focus_extent,
          focus, check=True)


def _moved(shape: Ellipsoid, offset: np.ndarray) -> Ellipsoid:
    return dataclasses.replace(shape, centre=shape.centre + offset)
