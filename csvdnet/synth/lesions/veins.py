"""Veins, the mimics a model must ignore: dark tubes on SWI (deep, medullary and cortical
veins).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from csvdnet.synth.anatomy import Anatomy
from csvdnet.synth.lesions.drawing import _add_susceptibility, _unit
from csvdnet.synth.lesions.placer import _DEEP_WM, _R, _flat
from csvdnet.synth.shapes import Tube

_VEIN_BLOOM = 1.4  # a vein's dark line on SWI is wider than the vein
# Deep veins in MNI mm: internal cerebral veins (paired, roof of the third ventricle) and
# thalamostriate veins (caudothalamic groove), as (start, end, radius).
_DEEP_VEINS_MNI = (((-2.5, 0, 16), (-2.0, -38, 10), 1.2), ((2.5, 0, 16), (2.0, -38, 10), 1.2),
                   ((-15, -12, 20), (-4, -2, 16), 0.8), ((15, -12, 20), (4, -2, 16), 0.8))


def _veins(anat: Anatomy, rng: np.random.Generator) -> None:
    """Susceptibility of veins: deep veins, medullary veins in the WM, cortical veins."""
    for start, end, radius in _DEEP_VEINS_MNI:
        world = anat.warp.inverse(np.array([start, end], dtype=np.float64))
        _add_susceptibility(anat, Tube(world[0], world[1], radius * _VEIN_BLOOM))
    medullary = anat.region_voxels(_DEEP_WM + (_R["periventricular"],))
    medullary = medullary[(_flat(anat.ventricle_distance, medullary) > 4)
                          & (_flat(anat.tissue("wm"), medullary) > 0.8)]
    sulci = anat.region_voxels((_R["csf"],))
    sulci = sulci[(_flat(anat.tissue("csf"), sulci) > 0.7) & (_flat(anat.mni[2], sulci) > 0)]
    # Medullary veins drain the deep WM towards the ventricles; cortical veins run along the
    # surface (perpendicular to the outward direction).
    _random_veins(anat, rng, medullary, int(rng.integers(15, 30)), (10, 25), (0.4, 0.8),
                  lambda out: -out)
    _random_veins(anat, rng, sulci, int(rng.integers(8, 16)), (20, 40), (0.7, 1.4),
                  lambda out: _unit(np.cross(out, rng.standard_normal(3))))


def _random_veins(anat: Anatomy, rng: np.random.Generator, pool: np.ndarray, count: int,
                  length: tuple[float, float], radius: tuple[float, float],
                  direction: Callable[[np.ndarray], np.ndarray]) -> None:
    """``count`` straight veins starting in random ``pool`` voxels, heading along ``direction``
    (a function of the unit vector from the ventricles' centre to the start)."""
    if len(pool) == 0:
        return
    picks = pool[rng.integers(len(pool), size=count)]
    starts = anat.grid.flat_to_world(picks)
    for start in starts:
        end = start + direction(_unit(start - anat.warp.centre)) * rng.uniform(*length)
        _add_susceptibility(anat, Tube(start, end, rng.uniform(*radius) * _VEIN_BLOOM))
