"""Enlarged perivascular spaces: CSF tubes along the perforating vessels in the basal ganglia
(the rated side and slice first) and the centrum semiovale.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from csvdnet.scoring import side_slice_keys
from csvdnet.synth.anatomy import PARENCHYMA, Anatomy
from csvdnet.synth.geometry import Grid
from csvdnet.synth.lesions.drawing import _paint_shape, _random_rotation, _unit
from csvdnet.synth.lesions.placer import _R, _Placer
from csvdnet.synth.ratings import Plan
from csvdnet.synth.shapes import Tube

_MIDLINE_MM = 2.0  # EPVS this close to the midline are not given a side


def _epvs(anat: Anatomy, placer: _Placer, plan: Plan, reference: Grid,
          reference_regions: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Basal ganglia EPVS (the rated side and slice first) and centrum semiovale EPVS: centres,
    diameters, lengths and unit directions."""
    tubes: list[Tube] = []

    def rating_keys(positions: np.ndarray) -> list[list[tuple[str, int]]]:
        """(side, reference slice) pairs each point counts in (the rule of
        :func:`csvdnet.scoring.side_slice_keys`); empty outside the basal ganglia."""
        mni_x = anat.warp(positions)[:, 0]
        sides = ["M" if abs(x) < _MIDLINE_MM else "L" if x < 0 else "R" for x in mni_x]
        return side_slice_keys(positions, sides, reference_regions, reference.affine,
                               _R["basal_ganglia"])

    def plant(position: np.ndarray, direction: np.ndarray, length: float, diameter: float) -> None:
        half = direction * length / 2
        tube = Tube(position - half, position + half, diameter / 2)
        _paint_shape(anat, tube, "csf", PARENCHYMA + ("wmh",))
        tubes.append(tube)

    def plant_bg(pool: np.ndarray,
                 accept: Callable[[list[tuple[str, int]]], bool]) -> list[tuple[str, int]]:
        """A lenticulostriate EPVS: near-vertical, so a dot on axial slices. Returns the keys
        it counts in (none when no place was found)."""
        position = placer.draw(pool, 1.4, gap=0.3, valid=lambda p: accept(rating_keys(p[None])[0]))
        if position is None:
            return []
        direction = _random_rotation(rng, 20)[:, 2]
        plant(position, direction, rng.uniform(3.0, 10.0), rng.uniform(1.0, 2.8))
        return rating_keys(position[None])[0]

    candidates = placer.candidates((_R["basal_ganglia"],), tissue_min=0.8)
    keys = rating_keys(anat.grid.flat_to_world(candidates))
    rateable = [key for point_keys in keys for key in point_keys]
    if plan.epvs_bg_count and rateable:
        rated = max(sorted(set(rateable)), key=rateable.count)  # the roomiest side and slice
        pool = candidates[[rated in point_keys for point_keys in keys]]
        counts: dict[tuple[str, int], int] = {}
        for _ in range(plan.epvs_bg_count):
            for key in plant_bg(pool, lambda found: rated in found):
                counts[key] = counts.get(key, 0) + 1
        # Elsewhere in the basal ganglia: fewer per side and slice than on the rated one.
        for _ in range(int(plan.epvs_bg_count * rng.uniform(0.5, 1.5))):
            for key in plant_bg(candidates, lambda found: bool(found) and all(
                    counts.get(k, 0) + 1 < counts.get(rated, 0) for k in found)):
                counts[key] = counts.get(key, 0) + 1

    cso = placer.candidates((_R["centrum_semiovale"],), tissue_min=0.8)
    for _ in range(plan.epvs_cso_count):
        position = placer.draw(cso, 4.0, gap=0.5)
        if position is not None:  # medullary arteries: radial between the ventricles and the cortex
            plant(position, _unit(position - anat.warp.centre), rng.uniform(6.0, 16.0),
                  rng.uniform(1.0, 2.6))

    if not tubes:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros((0, 3))
    axes = np.array([t.end - t.start for t in tubes])
    lengths = np.linalg.norm(axes, axis=1)
    return (np.array([t.centre for t in tubes]), np.array([2 * t.radius for t in tubes]),
            lengths, axes / lengths[:, None])
