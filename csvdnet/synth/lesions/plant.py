"""Planting a subject's markers and mimics in their fixed order (the order of the random draws),
and the record of what was planted.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from csvdnet.synth.anatomy import PARENCHYMA, Anatomy
from csvdnet.synth.geometry import Grid
from csvdnet.synth.lesions.drawing import _paint_shape
from csvdnet.synth.lesions.epvs import _epvs
from csvdnet.synth.lesions.lacunes import _lacune
from csvdnet.synth.lesions.microbleeds import _microbleeds
from csvdnet.synth.lesions.placer import _Placer
from csvdnet.synth.lesions.rssi import _rssi
from csvdnet.synth.lesions.veins import _veins
from csvdnet.synth.lesions.wmh import _draw_wmh
from csvdnet.synth.ratings import Plan
from csvdnet.synth.shapes import Ellipsoid


@dataclasses.dataclass
class Lesions:
    """What was planted (world mm of the reference frame).

    Attributes:
        cmb: (N, 3) microbleed centres.
        cmb_diameter: Visible (blooming) diameter on SWI, mm.
        epvs: (M, 3) EPVS centres (midpoints of their axes).
        epvs_diameter: EPVS width, mm.
        epvs_length: EPVS length along the vessel, mm.
        epvs_direction: (M, 3) unit vectors along each EPVS's axis (world RAS): with the centre
            and the length they give its centreline, which evaluation matches detections to.
        lacunes: Lacune cavities.
        rssi: Recent small subcortical infarcts.
    """

    cmb: np.ndarray
    cmb_diameter: np.ndarray
    epvs: np.ndarray
    epvs_diameter: np.ndarray
    epvs_length: np.ndarray
    epvs_direction: np.ndarray
    lacunes: list[Ellipsoid]
    rssi: list[Ellipsoid]


def plant_lesions(anat: Anatomy, plan: Plan, reference: Grid, reference_regions: np.ndarray,
                  rng: np.random.Generator) -> Lesions:
    """Draw the plan's markers and the mimics into the anatomy (in place).

    Args:
        anat: The subject's anatomy; its fractions and susceptibility are painted.
        plan: What to plant.
        reference: The reference (label) grid: lacunes are made large enough to show on it
            and far enough apart not to merge on it.
        reference_regions: Region map on the reference grid (the one the ratings use).
        rng: Random generator.

    Returns:
        What was planted.
    """
    placer = _Placer(anat, rng)
    # Lesions closer than two reference voxels could touch (26-connectivity) after resampling.
    gap = 2.0 * float(reference.spacing.max()) + 1.0
    _draw_wmh(anat, plan, reference, rng)
    lacunes = [_lacune(placer, reference, gap, rng) for _ in range(plan.lacune_count)]
    rssi = [_rssi(placer, reference, gap, rng) for _ in range(plan.rssi_count)]
    lacunes, rssi = [s for s in lacunes if s], [s for s in rssi if s]  # None: no room found
    for cavity in lacunes:
        _paint_shape(anat, cavity, "lacune", PARENCHYMA + ("wmh", "gliosis", "csf"))
    for infarct in rssi:
        _paint_shape(anat, infarct, "rssi", PARENCHYMA + ("wmh", "gliosis"))
    cmb, cmb_diameter = _microbleeds(anat, placer, plan, rng)
    epvs, epvs_diameter, epvs_length, epvs_direction = _epvs(anat, placer, plan, reference,
                                                             reference_regions, rng)
    _veins(anat, rng)
    return Lesions(cmb=cmb, cmb_diameter=cmb_diameter, epvs=epvs, epvs_diameter=epvs_diameter,
                   epvs_length=epvs_length, epvs_direction=epvs_direction, lacunes=lacunes, rssi=rssi)
