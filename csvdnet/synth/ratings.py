"""What a synthetic subject should show (the plan) and what it does show (the ratings).

The plan is drawn target-first so that the total SVD score is balanced for training an ordinal
head: the total score (0-4) is sampled from the prevalence, then which of its four markers are
positive, then each marker's severity within the range that makes it positive or negative.

The ratings written to ``ratings.csv`` are not the plan but a recount of the written ground
truth, by the same definitions a rater uses, so they agree with the labels exactly:

- lacunes, RSSI: 26-connected components of ``labels/lacune`` / ``labels/rssi``;
- microbleeds: rows of ``labels/cmb.csv``;
- basal ganglia EPVS: points of ``labels/epvs.csv`` counted per hemisphere (the CSV's ``side``
  column) and per axial slice of the reference grid (the voxel axis closest to world z) where
  the slice's voxel under the point is basal ganglia; a point on the boundary of two slices
  counts in both (:func:`csvdnet.scoring.side_slice_keys`, the rule predict and evaluate use);
  the largest count is graded;
- Fazekas grades: read from ``labels/wmh`` on the cohort's own region map by the rule predict
  uses (:func:`fazekas_grades`: :func:`csvdnet.inference.measure.wmh_features`, then
  :func:`csvdnet.scoring.fazekas_pv_from` / ``fazekas_deep_from``). The WMH are drawn to match
  the planned grades, but a drawing can show another one (a cluster whose foci did not merge on
  the reference grid, a periventricular finger cut off into the deep white matter, a confluent
  area grown into the periventricular lesion): the rating is what the label shows, the plan
  stays in ``synth.json``;
- total score: :func:`csvdnet.scoring.staals_total` (Staals et al., Neurology 2014); RSSI are
  never added.

The rating definitions themselves live in :mod:`csvdnet.scoring` (one home for synth, predict and
evaluate); the names re-exported here keep old imports working.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy import ndimage

from csvdnet.atlas import REGION_CODES
from csvdnet.errors import CsvdnetInputError
from csvdnet.io import Ratings
from csvdnet.scoring import (EPVS_GRADE_LIMITS, epvs_grade, fazekas_deep_from, fazekas_pv_from,
                             max_side_slice_count, staals_total, wmh_point)

__all__ = ["DEFAULT_PREVALENCE", "EPVS_GRADE_LIMITS", "Plan", "check_prevalence",
           "count_components", "epvs_bg_count", "epvs_grade", "fazekas_grades", "recount", "sample_plan",
           "staals_total", "wmh_point"]

DEFAULT_PREVALENCE = (0.2, 0.2, 0.2, 0.2, 0.2)
"""Probability of a total SVD score of 0, 1, 2, 3, 4: balanced, for training an ordinal head."""

_MARKERS = ("wmh", "lacune", "cmb", "epvs")
# How often each marker is the positive one when only some are (WMH and EPVS are the most
# common findings in a stroke cohort, microbleeds the least).
_MARKER_WEIGHTS = np.array([0.3, 0.22, 0.18, 0.3])
# (PV, deep) Fazekas pairs and weights, split by whether they score the WMH point.
_WMH_POSITIVE = (((3, 1), 0.12), ((3, 2), 0.25), ((3, 3), 0.2), ((2, 2), 0.2), ((2, 3), 0.1),
                 ((1, 2), 0.1), ((0, 2), 0.03))
_WMH_NEGATIVE = (((0, 0), 0.12), ((1, 0), 0.25), ((1, 1), 0.28), ((2, 0), 0.12), ((2, 1), 0.2),
                 ((0, 1), 0.03))
# Basal ganglia EPVS count ranges per grade; grade 4 is capped so that the count fits on one
# side of one axial slice.
_EPVS_COUNT_RANGE = {0: (0, 0), 1: (1, 10), 2: (11, 20), 3: (21, 40), 4: (41, 46)}


@dataclasses.dataclass(frozen=True)
class Plan:
    """The markers to plant in one subject.

    Attributes:
        target_score: Total SVD score the plan aims at.
        fazekas_pv: Periventricular Fazekas grade of the WMH to draw.
        fazekas_deep: Deep Fazekas grade.
        epvs_bg_count: Basal ganglia EPVS on the rated side and slice.
        epvs_cso_count: Centrum semiovale EPVS.
        cmb_count: Microbleeds.
        cmb_lobar_fraction: Share of the microbleeds that are lobar (the rest deep or
            infratentorial).
        lacune_count: Lacunes.
        rssi_count: Recent small subcortical infarcts.
    """

    target_score: int
    fazekas_pv: int
    fazekas_deep: int
    epvs_bg_count: int
    epvs_cso_count: int
    cmb_count: int
    cmb_lobar_fraction: float
    lacune_count: int
    rssi_count: int


def check_prevalence(prevalence: Sequence[float] | None) -> np.ndarray:
    """The score prevalence as probabilities of scores 0..4 (normalised to sum 1).

    Raises:
        CsvdnetInputError: Not five non-negative numbers with a positive sum.
    """
    if prevalence is None:
        return np.asarray(DEFAULT_PREVALENCE)
    values = np.asarray(prevalence, dtype=np.float64)
    if (values.shape != (5,) or not np.all(np.isfinite(values)) or np.any(values < 0)
            or values.sum() <= 0):
        raise CsvdnetInputError("prevalence", f"needs 5 non-negative weights for total scores 0-4 "
                                              f"with a positive sum, got {prevalence!r}")
    return values / values.sum()


def _choose(rng: np.random.Generator, table: tuple) -> tuple:
    options, weights = zip(*table)
    weights = np.asarray(weights)
    return options[rng.choice(len(options), p=weights / weights.sum())]


def sample_plan(rng: np.random.Generator, prevalence: np.ndarray, rssi_prevalence: float) -> Plan:
    """Draw a subject's plan: total score first, then positive markers, then severities.

    Args:
        rng: Random generator.
        prevalence: Probabilities of total scores 0..4 (see :func:`check_prevalence`).
        rssi_prevalence: Probability of at least one RSSI (independent of the score).

    Returns:
        The plan.
    """
    score = int(rng.choice(5, p=prevalence))
    positive = set(rng.choice(_MARKERS, size=score, replace=False,
                              p=_MARKER_WEIGHTS / _MARKER_WEIGHTS.sum()).tolist())
    pv, deep = _choose(rng, _WMH_POSITIVE if "wmh" in positive else _WMH_NEGATIVE)
    bg_grade = int(rng.choice([2, 3, 4], p=[0.5, 0.33, 0.17]) if "epvs" in positive
                   else rng.choice([0, 1], p=[0.25, 0.75]))
    low, high = _EPVS_COUNT_RANGE[bg_grade]
    epvs_bg = int(rng.integers(low, high + 1))
    # Centrum semiovale EPVS go with the basal ganglia burden, loosely.
    epvs_cso = int(rng.poisson(4 + 0.4 * epvs_bg))
    cmb = min(int(rng.geometric(0.35)), 12) if "cmb" in positive else 0
    lacunes = min(int(rng.geometric(0.5)), 5) if "lacune" in positive else 0
    rssi = int(rng.random() < rssi_prevalence) * (1 + int(rng.random() < 0.1))
    return Plan(target_score=score, fazekas_pv=int(pv), fazekas_deep=int(deep),
                epvs_bg_count=epvs_bg, epvs_cso_count=epvs_cso, cmb_count=cmb,
                cmb_lobar_fraction=float(rng.random()), lacune_count=lacunes, rssi_count=rssi)


def count_components(mask: np.ndarray) -> int:
    """Number of 26-connected components of a mask (the VALDO / WMH challenge convention)."""
    return int(ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3, 3)))[1])


def epvs_bg_count(world: np.ndarray, sides: Sequence[str], regions: np.ndarray,
                  affine: np.ndarray) -> int:
    """Largest number of basal ganglia EPVS on one side of one axial reference slice.

    Args:
        world: (N, 3) EPVS centres, world mm of the reference frame.
        sides: ``"L"`` / ``"R"`` per point.
        regions: Region map on the reference grid.
        affine: Its voxel -> world affine.

    Returns:
        The count the basal ganglia EPVS grade is taken from.
    """
    return max_side_slice_count(world, sides, regions, affine, REGION_CODES["basal_ganglia"])


def fazekas_grades(wmh_mask: np.ndarray, regions: np.ndarray,
                   affine: np.ndarray) -> tuple[int, int]:
    """(periventricular, deep) Fazekas grades of a WMH mask on its region map, by the rule
    ``csvdnet predict`` rates with (one definition for synth, predict and evaluate).

    Args:
        wmh_mask: WMH mask on the reference grid.
        regions: Region map on the same grid.
        affine: Its voxel -> world affine.
    """
    from csvdnet.inference.measure import wmh_features

    features = wmh_features(wmh_mask, regions, affine)
    return fazekas_pv_from(features), fazekas_deep_from(features)


def recount(plan: Plan, wmh_mask: np.ndarray, lacune_mask: np.ndarray, rssi_mask: np.ndarray,
            cmb_count: int, epvs_world: np.ndarray, epvs_sides: Sequence[str],
            regions: np.ndarray, affine: np.ndarray) -> Ratings:
    """The ratings of the ground truth as written (see the module docstring).

    Args:
        plan: The plan (kept in ``synth.json``; the ratings are what the labels show).
        wmh_mask: WMH mask on the reference grid.
        lacune_mask: Lacune mask on the reference grid.
        rssi_mask: RSSI mask on the reference grid.
        cmb_count: Number of microbleed points.
        epvs_world: (N, 3) EPVS centres, world mm of the reference frame.
        epvs_sides: ``"L"`` / ``"R"`` per EPVS.
        regions: Region map on the reference grid.
        affine: The reference grid's voxel -> world affine.

    Returns:
        The subject's ratings with the Staals total score.
    """
    bg_grade = epvs_grade(epvs_bg_count(epvs_world, epvs_sides, regions, affine))
    lacunes = count_components(lacune_mask)
    pv, deep = fazekas_grades(wmh_mask, regions, affine)
    total = staals_total(pv, deep, bg_grade, cmb_count, lacunes)
    return Ratings(fazekas_pv=pv, fazekas_deep=deep,
                   epvs_bg_grade=bg_grade, cmb_count=int(cmb_count), lacune_count=lacunes,
                   rssi_count=count_components(rssi_mask), total_score=total)
