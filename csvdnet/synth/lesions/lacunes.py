"""Lacunes: CSF-filled cavities in the basal ganglia, thalamus or deep white matter, most with a
gliotic rim.
"""

from __future__ import annotations

import numpy as np

from csvdnet.synth.anatomy import PARENCHYMA
from csvdnet.synth.geometry import Grid
from csvdnet.synth.lesions.drawing import _paint_shape, _random_rotation
from csvdnet.synth.lesions.placer import (_DEEP_WM, _LACUNE_REGIONS,
                                          _PERFORATOR_MAX_VENTRICLE_MM, _R, _Placer, _flat,
                                          _min_semi_axes, _visible, _within)
from csvdnet.synth.shapes import Ellipsoid


def _lacune(placer: _Placer, reference: Grid, gap: float,
            rng: np.random.Generator) -> Ellipsoid | None:
    """A lacune cavity (its gliotic rim is painted here too), large enough to be labelled."""
    region = rng.choice(["basal_ganglia", "thalamus", "deep"], p=[0.4, 0.2, 0.4])
    regions = _DEEP_WM + (_R["periventricular"],) if region == "deep" else (_R[region],)
    diameter = float(np.clip(rng.lognormal(np.log(6.0), 0.35), 3.0, 15.0))
    axes = diameter / 2 * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.6)])
    axes = np.clip(np.maximum(axes, _min_semi_axes(reference)), 1.5, 7.5)
    rim = rng.uniform(1.0, 2.0) if rng.random() < 0.7 else 0.0
    rotation = _random_rotation(rng, 15)
    anat = placer.anat
    candidates = placer.candidates(regions, where=lambda i: (
        (_flat(anat.ventricle_distance, i) > axes.max() + rim + 2)
        & (_flat(anat.ventricle_distance, i) < _PERFORATOR_MAX_VENTRICLE_MM)))
    centre = placer.draw(candidates, float(axes.max()) + rim, gap, valid=lambda p: (
        _within(anat, Ellipsoid(p, axes + rim, rotation), _LACUNE_REGIONS)
        and _visible(Ellipsoid(p, axes, rotation), reference)))
    if centre is None:
        return None
    if rim:
        rim_shape = Ellipsoid(centre, axes + rim, rotation)
        _paint_shape(anat, rim_shape, "gliosis", PARENCHYMA + ("wmh",))
    return Ellipsoid(centre, axes, rotation)
