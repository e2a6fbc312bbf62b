"""WMH grading: the features the Fazekas grades are read from, their thresholds, and the WMH point.

:class:`WmhFeatures` (measured by :func:`csvdnet.inference.measure.wmh_features`),
:func:`fazekas_pv_from` / :func:`fazekas_deep_from` with their calibrated limits, and
:func:`wmh_point`, the WMH item both rule sets share. numpy-free.
"""

from __future__ import annotations

import dataclasses

__all__ = ["FAZEKAS_DEEP_LIMITS", "FAZEKAS_PV_LIMITS", "WmhFeatures", "fazekas_deep_from",
           "fazekas_pv_from", "wmh_point"]


def wmh_point(fazekas_pv: int, fazekas_deep: int) -> bool:
    """WMH point of both rule sets: periventricular Fazekas 3 and/or deep Fazekas >= 2."""
    return fazekas_pv == 3 or fazekas_deep >= 2


@dataclasses.dataclass(frozen=True)
class WmhFeatures:
    """What the Fazekas grades are read from, measured on a WMH mask and a region map.

    Computed by :func:`csvdnet.inference.measure.wmh_features`, which defines them; a WMH
    component is periventricular when it touches the white matter lining of the ventricles or
    lies wholly inside the 10 mm periventricular band, deep otherwise.

    Attributes:
        total_ml: All WMH.
        pv_ml: Periventricular WMH.
        pv_lining_fraction: Share of the white matter lining (within 3 mm of the ventricles)
            covered by periventricular WMH: small for caps, most of it for a halo.
        pv_beyond_band_ml: Periventricular WMH more than 10 mm from the ventricles (irregular
            extension into the deep white matter).
        pv_reach_mm: 99th percentile of the periventricular WMH's distance to the ventricles.
        deep_ml: Deep WMH.
        deep_count: Deep WMH components (26-connected).
        deep_largest_ml: The largest deep component (foci, merging clusters, confluent areas).
    """

    total_ml: float
    pv_ml: float
    pv_lining_fraction: float
    pv_beyond_band_ml: float
    pv_reach_mm: float
    deep_ml: float
    deep_count: int
    deep_largest_ml: float


FAZEKAS_PV_LIMITS = {"pv_ml_1": 0.56, "lining_2": 0.23, "reach_mm_3": 11.9}
"""Periventricular Fazekas thresholds: grade 1 from this many ml of periventricular WMH, grade 2
(halo) from this share of the white matter lining covered (``lining_2``), grade 3 when the
periventricular lesion reaches this far (mm) from the ventricles (past the 10 mm band: the
volume out there varies with the fingers' thickness, the reach does not). Midpoints of the
widest error-free gap (or of the fewest errors) between the planted grades of a synthetic
calibration cohort: true WMH labels, region maps from the template registration as predict
makes them (``lining_2``: grade 1 up to 0.15, grade 2 from 0.31 there; 0.21 / 0.61 with the
true region maps); ``benchmarks/bench_regions.py``, RESULTS.md."""

FAZEKAS_DEEP_LIMITS = {"count_1": 1, "largest_ml_2": 0.125, "largest_ml_3": 1.43}
"""Deep Fazekas thresholds: grade 1 from this many deep components, grade 2 (beginning
confluence) from a largest component of this many ml, grade 3 (large confluent areas) from
``largest_ml_3``. Calibrated as :data:`FAZEKAS_PV_LIMITS`."""


def fazekas_pv_from(features: WmhFeatures) -> int:
    """Periventricular Fazekas grade (0-3) from measured WMH features.

    0 absent; 1 caps or a pencil-thin lining (little of the lining covered); 2 a smooth halo
    (most of the lining covered, inside the band); 3 irregular, extending into the deep white
    matter (the periventricular lesion reaches past the 10 mm band).
    """
    limits = FAZEKAS_PV_LIMITS
    if features.pv_reach_mm >= limits["reach_mm_3"]:
        return 3
    if features.pv_lining_fraction >= limits["lining_2"]:
        return 2
    return 1 if features.pv_ml >= limits["pv_ml_1"] else 0


def fazekas_deep_from(features: WmhFeatures) -> int:
    """Deep white matter Fazekas grade (0-3) from measured WMH features.

    0 absent; 1 punctate foci; 2 beginning confluence (a cluster of merging foci is the largest
    deep lesion); 3 large confluent areas.
    """
    limits = FAZEKAS_DEEP_LIMITS
    if features.deep_count < limits["count_1"]:
        return 0
    if features.deep_largest_ml >= limits["largest_ml_3"]:
        return 3
    return 2 if features.deep_largest_ml >= limits["largest_ml_2"] else 1
