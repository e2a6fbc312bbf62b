"""Recent small subcortical infarcts: lobulated ovoid acute infarcts in the perforator
territories (basal ganglia, thalamus, corona radiata, pons).
"""

from __future__ import annotations

import numpy as np

from csvdnet.synth.geometry import Grid
from csvdnet.synth.lesions.drawing import _bumps, _random_rotation
from csvdnet.synth.lesions.placer import (_DEEP_WM, _LACUNE_REGIONS,
                                          _PERFORATOR_MAX_VENTRICLE_MM, _R, _Placer, _flat,
                                          _visible, _within)
from csvdnet.synth.shapes import Ellipsoid


def _rssi(placer: _Placer, reference: Grid, gap: float,
          rng: np.random.Generator) -> Ellipsoid | None:
    """An acute lacunar infarct in a perforator territory."""
    anat = placer.anat
    territory = rng.choice(["deep", "basal_ganglia", "thalamus", "pons"], p=[0.45, 0.25, 0.2, 0.1])
    axial = float(np.clip(rng.lognormal(np.log(10.0), 0.3), 5.0, 17.0))
    axes = axial / 2 * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.7)])
    bumps = _bumps(rng, 6, 0.25)
    # Axially under 20 mm: bulges included, and the long axis tilted by up to 15 degrees
    # widening the axial section by up to 6 %.
    axes[:2] = np.minimum(axes[:2], 8.5 / (1 + np.clip(bumps[:, 3], 0, None).sum()))
    if territory == "pons":
        regions = (_R["infratentorial"],)

        def where(i: np.ndarray) -> np.ndarray:
            x, y, z = (_flat(anat.mni[axis], i) for axis in range(3))
            return (np.abs(x) < 8) & (y > -38) & (z < -15)
    else:  # near the ventricles: the territory of the deep perforators, not the cortex's
        regions = _DEEP_WM + (_R["periventricular"],) if territory == "deep" else (_R[territory],)

        def where(i: np.ndarray) -> np.ndarray:
            distance = _flat(anat.ventricle_distance, i)
            return (distance > axes.max() + 1) & (distance < _PERFORATOR_MAX_VENTRICLE_MM)
    rotation = _random_rotation(rng, 15)
    allowed = regions if territory == "pons" else _LACUNE_REGIONS
    centre = placer.draw(
        placer.candidates(regions, where=where), float(axes.max()) * 1.3, gap,
        valid=lambda p: (_within(anat, Ellipsoid(p, axes, rotation), allowed)
                         and _visible(Ellipsoid(p, axes, rotation, bumps), reference)))
    return None if centre is None else Ellipsoid(centre, axes, rotation, bumps)
