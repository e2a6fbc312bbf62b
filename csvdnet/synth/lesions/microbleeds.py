"""Microbleeds: susceptibility blooms, lobar or deep / infratentorial as planned."""

from __future__ import annotations

import numpy as np

from csvdnet.synth.anatomy import Anatomy
from csvdnet.synth.lesions.drawing import _add_susceptibility
from csvdnet.synth.lesions.placer import _DEEP_WM, _R, _Placer, _flat
from csvdnet.synth.ratings import Plan
from csvdnet.synth.shapes import Bloom

_SUSCEPTIBILITY_AT_EDGE = 0.28  # SWI halves (exp(-2.5 * 0.28)) at a microbleed's visible edge


def _microbleeds(anat: Anatomy, placer: _Placer, plan: Plan,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Microbleed blooms, lobar or deep as planned; returns their centres and diameters."""
    def junction(i: np.ndarray) -> np.ndarray:  # the cortico-subcortical junction
        return (_flat(anat.tissue("gm"), i) > 0.2) & (_flat(anat.tissue("wm"), i) > 0.2)

    pools = {
        "lobar": placer.candidates((_R["juxtacortical"],), tissue_min=0.8, where=junction),
        "deep_grey": placer.candidates((_R["basal_ganglia"], _R["thalamus"])),
        "deep_white": placer.candidates(_DEEP_WM + (_R["periventricular"],)),
        "infratentorial": placer.candidates((_R["infratentorial"],), tissue_min=0.8),
    }
    deep_split = np.array([0.6, 0.25, 0.15])
    lobar = plan.cmb_lobar_fraction
    weights = np.concatenate([[lobar], (1 - lobar) * deep_split])
    centres, diameters = [], []
    for _ in range(plan.cmb_count):
        pool = list(pools)[rng.choice(4, p=weights)]
        diameter = float(np.clip(rng.lognormal(np.log(4.0), 0.4), 2.0, 10.0))
        centre = placer.draw(pools[pool], diameter / 2, gap=2.0)
        if centre is None:
            continue
        # Gaussian bloom with the visible edge (SWI at half signal) at the diameter.
        amplitude = rng.uniform(1.8, 2.6)
        sigma = diameter / 2 / np.sqrt(2 * np.log(amplitude / _SUSCEPTIBILITY_AT_EDGE))
        _add_susceptibility(anat, Bloom(centre, sigma, amplitude))
        centres.append(centre)
        diameters.append(diameter)
    return np.array(centres).reshape(-1, 3), np.array(diameters)
