"""Rating definitions: named, versioned rule sets over one record of measured quantities.

Every stage that rates a subject (the synthetic cohort's ground truth, ``csvdnet predict``,
``csvdnet evaluate``) imports the definitions from here; none keeps a copy. numpy only.

- :class:`Measurements`: what was measured in one subject (``None`` = not measured);
- :data:`RULE_SETS`: ``"staals-2014"`` (total SVD score 0-4, Staals et al., Neurology 2014) and
  ``"caa-svd-2016"`` (CAA-SVD score 0-6, Charidimou et al., JAMA Neurology 2016);
  :func:`score` applies one by name and returns a :class:`RuleScore`;
- the grading helpers the rule sets are made of (:func:`epvs_grade`, :func:`wmh_point`,
  :func:`staals_total`) and the EPVS count they grade (:func:`max_side_slice_count`);
- :func:`ordinal_probabilities`: the numpy twin of the CORAL head's decoding
  (:func:`csvdnet.models.coral_head.ordinal_decode`), for reports written without TensorFlow.

A point whose inputs were not measured is not guessed: it is left out of ``RuleScore.points``,
named in ``RuleScore.notes``, and the total is ``None``. A point that the measured inputs decide
on their own (one lacune measured, another count missing) is still given.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np

from csvdnet.atlas import REGION_CODES
from csvdnet.errors import CsvdnetInputError

__all__ = ["CSO_EPVS_LIMIT", "EPVS_GRADE_LIMITS", "FAZEKAS_DEEP_LIMITS", "FAZEKAS_PV_LIMITS",
           "Measurements", "RULE_SETS", "RuleScore", "RuleSet", "SLICE_TIE_VOXELS", "POINT_SEARCH_MM", "NON_TISSUE_REGIONS", "WmhFeatures",
           "axial_slice_axis", "epvs_grade", "fazekas_deep_from", "fazekas_pv_from",
           "max_side_slice_count", "ordinal_class", "ordinal_probabilities", "score",
           "side_slice_keys", "slices_of", "staals_total", "wmh_point"]

EPVS_GRADE_LIMITS = (0, 10, 20, 40)
"""EPVS grade = number of these limits the count exceeds: 0 none, 1 1-10, 2 11-20, 3 21-40,
4 > 40 (count on one side, in the axial slice with the most; Doubal et al., Stroke 2010)."""

CSO_EPVS_LIMIT = 20
"""CAA-SVD score: one point for more than this many centrum semiovale EPVS."""


def epvs_grade(count: int) -> int:
    """EPVS grade (0-4) of a count on one side of one axial slice."""
    return int(sum(count > limit for limit in EPVS_GRADE_LIMITS))


def wmh_point(fazekas_pv: int, fazekas_deep: int) -> bool:
    """WMH point of both rule sets: periventricular Fazekas 3 and/or deep Fazekas >= 2."""
    return fazekas_pv == 3 or fazekas_deep >= 2


def staals_total(fazekas_pv: int, fazekas_deep: int, epvs_bg_grade: int, cmb_count: int,
                 lacune_count: int) -> int:
    """Total SVD score (Staals et al., Neurology 2014), 0-4; RSSI are not part of it.

    One point each for: >= 1 lacune; >= 1 microbleed; periventricular Fazekas 3 and/or deep
    Fazekas >= 2; basal ganglia EPVS grade >= 2. The same rule as ``score("staals-2014", m)``
    for a fully measured ``m``.
    """
    return (int(lacune_count >= 1) + int(cmb_count >= 1) + int(wmh_point(fazekas_pv, fazekas_deep))
            + int(epvs_bg_grade >= 2))


SLICE_TIE_VOXELS = 1e-3
"""A point within this fraction of a slice of the boundary between two axial slices lies on
the boundary: it counts in both slices, as a rater sees a finding that the boundary cuts in
both (and as no rounding rule, half-to-even or float noise, can decide)."""

POINT_SEARCH_MM = 4.0
"""A point in CSF, a ventricle or outside the brain (an EPVS or microbleed a region map misses
by a voxel: the lesion itself is CSF-like or dark) takes the most common tissue region within
this distance: for a count on a slice, in that slice's plane (:func:`side_slice_keys`)."""

NON_TISSUE_REGIONS = (REGION_CODES["background"], REGION_CODES["ventricles"], REGION_CODES["csf"])
"""Region codes that are not brain tissue: no EPVS or microbleed is counted in them as such."""


def axial_slice_axis(affine: np.ndarray) -> int:
    """The voxel axis of a grid closest to world z: its indices are the axial slices."""
    return int(np.argmax(np.abs(np.asarray(affine, dtype=np.float64)[2, :3])))


def slices_of(position: float) -> range:
    """The axial slices a point counts in, from its continuous slice coordinate.

    Slice ``k`` spans ``[k - 0.5, k + 0.5]`` in voxel units. A point inside one slice counts in
    that slice only; a point on the boundary of two (within :data:`SLICE_TIE_VOXELS`) counts in
    both.

    Args:
        position: The point's coordinate along the slice axis, in voxels (not rounded).

    Returns:
        The slice indices (one, or two on a boundary).
    """
    low = int(np.ceil(position - 0.5 - SLICE_TIE_VOXELS))
    high = int(np.floor(position + 0.5 + SLICE_TIE_VOXELS))
    return range(low, high + 1)


def side_slice_keys(world: np.ndarray, sides: Sequence[str], regions: np.ndarray,
                    affine: np.ndarray,
                    region_codes: int | Sequence[int]) -> list[list[tuple[str, int]]]:
    """Per point, the (side, axial slice) pairs in which it counts for an EPVS grade.

    A point counts in each axial slice of the reference grid that holds it (:func:`slices_of`:
    one, or both slices of a boundary it lies on) where the voxel of that slice under the point
    (in-plane position rounded to the nearest voxel) is in one of ``region_codes``; where that
    voxel is not tissue (:data:`NON_TISSUE_REGIONS`: an EPVS is itself CSF-like, so a map a
    voxel off puts it in the ventricle beside the caudate), the most common tissue region within
    :data:`POINT_SEARCH_MM` in that slice's plane decides, as it decides a point's region. The one
    definition of "an EPVS on this side of this slice" for the synthetic truth
    (:mod:`csvdnet.synth`), ``csvdnet predict`` and ``csvdnet evaluate``.

    Args:
        world: (N, 3) point centres, world mm of the reference frame.
        sides: ``"L"`` / ``"R"`` (or ``"M"``, which never counts) per point.
        regions: Region map on the reference grid (codes of :data:`csvdnet.atlas.REGION_CODES`).
        affine: Its voxel -> world affine.
        region_codes: The region code(s) whose points count.

    Returns:
        One list of ``(side, slice)`` keys per point (empty: it counts nowhere).
    """
    world = np.asarray(world, dtype=np.float64).reshape(-1, 3)
    if len(world) == 0:
        return []
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    voxels = world @ inverse[:3, :3].T + inverse[:3, 3]
    nearest = np.rint(voxels).astype(int)
    axis = axial_slice_axis(affine)
    codes = np.atleast_1d(region_codes)
    shape = np.asarray(regions.shape[:3])
    spacing = np.sqrt(np.sum(np.asarray(affine, dtype=np.float64)[:3, :3] ** 2, axis=0))
    reach = np.floor(POINT_SEARCH_MM / spacing).astype(int)
    reach[axis] = 0  # in the slice's own plane
    keys: list[list[tuple[str, int]]] = []
    for voxel, position, side in zip(nearest, voxels[:, axis], sides):
        found = []
        if side in ("L", "R"):
            for k in slices_of(float(position)):
                at = voxel.copy()
                at[axis] = k
                if np.all((at >= 0) & (at < shape)) and np.isin(
                        _tissue_code(regions, at, reach), codes):
                    found.append((str(side), int(k)))
        keys.append(found)
    return keys


def _tissue_code(regions: np.ndarray, at: np.ndarray, reach: np.ndarray) -> int:
    """The region at voxel ``at``; for a non-tissue voxel the most common tissue region within
    ``reach`` voxels (none there: the voxel's own code)."""
    code = int(regions[tuple(at)])
    if code not in NON_TISSUE_REGIONS:
        return code
    lo = np.maximum(at - reach, 0)
    hi = np.minimum(at + reach + 1, regions.shape[:3])
    around = np.asarray(regions[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]).ravel()
    around = around[np.isin(around, NON_TISSUE_REGIONS, invert=True)]
    return int(np.bincount(around.astype(np.int64)).argmax()) if around.size else code


def max_side_slice_count(world: np.ndarray, sides: Sequence[str], regions: np.ndarray,
                         affine: np.ndarray, region_codes: int | Sequence[int]) -> int:
    """Largest number of points in the given regions on one side of one axial slice.

    The EPVS rating convention (basal ganglia for Staals, centrum semiovale for CAA-SVD): count
    the points per hemisphere and per axial slice of the reference grid, take the largest count.
    Which points count where is :func:`side_slice_keys` (a point on a slice boundary counts in
    both slices).

    Args:
        world: (N, 3) point centres, world mm of the reference frame.
        sides: ``"L"`` / ``"R"`` per point (``"M"``: on the midline, not counted).
        regions: Region map on the reference grid (codes of :data:`csvdnet.atlas.REGION_CODES`).
        affine: Its voxel -> world affine.
        region_codes: The region code(s) whose points count.

    Returns:
        The count (0 when no point lies in the regions).
    """
    counts = Counter(key for keys in side_slice_keys(world, sides, regions, affine, region_codes)
                     for key in keys)
    return max(counts.values(), default=0)


@dataclasses.dataclass(frozen=True)
class Measurements:
    """The measured quantities of one subject that rule sets rate; ``None`` = not measured.

    Attributes:
        fazekas_pv: Periventricular Fazekas grade (0-3).
        fazekas_deep: Deep white matter Fazekas grade (0-3).
        epvs_bg_count: Basal ganglia EPVS on one side of the axial slice with the most.
        epvs_cso_count: Centrum semiovale EPVS, counted by the same rule.
        cmb_lobar: Lobar microbleeds (cortex and juxtacortical white matter).
        cmb_deep: Deep microbleeds (basal ganglia, thalamus, deep white matter).
        cmb_infratentorial: Brainstem and cerebellar microbleeds.
        lacune_count: Lacunes.
        rssi_count: Recent small subcortical infarcts (reported, never scored).
    """

    fazekas_pv: int | None = None
    fazekas_deep: int | None = None
    epvs_bg_count: int | None = None
    epvs_cso_count: int | None = None
    cmb_lobar: int | None = None
    cmb_deep: int | None = None
    cmb_infratentorial: int | None = None
    lacune_count: int | None = None
    rssi_count: int | None = None

    @property
    def cmb_count(self) -> int | None:
        """All microbleeds; ``None`` unless every location was measured."""
        parts = (self.cmb_lobar, self.cmb_deep, self.cmb_infratentorial)
        return None if any(p is None for p in parts) else int(sum(parts))

    @property
    def epvs_bg_grade(self) -> int | None:
        """Basal ganglia EPVS grade (0-4)."""
        return None if self.epvs_bg_count is None else epvs_grade(self.epvs_bg_count)

    @property
    def epvs_cso_grade(self) -> int | None:
        """Centrum semiovale EPVS grade (0-4)."""
        return None if self.epvs_cso_count is None else epvs_grade(self.epvs_cso_count)


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


@dataclasses.dataclass(frozen=True)
class RuleScore:
    """One rule set's score of one subject.

    Attributes:
        rule_set: Rule set name (a key of :data:`RULE_SETS`).
        version: Version of the rule set's definition in csvdnet.
        total: Sum of the points; ``None`` when a point could not be decided.
        maximum: Highest total the rule set defines.
        points: Points by item, for the items that could be decided.
        notes: What was left out and why (unmeasured inputs, unmeasured items).
        undecided: The items that could not be decided (their inputs not measured), in the
            rule set's order; the total is ``None`` exactly when there are any.
    """

    rule_set: str
    version: str
    total: int | None
    maximum: int
    points: dict[str, int]
    notes: tuple[str, ...]
    undecided: tuple[str, ...] = ()


# A point rule: measurements -> (points by item, None where undecided; notes).
PointRule = Callable[[Measurements], tuple[dict[str, int | None], list[str]]]


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """A named, versioned scoring rule over :class:`Measurements`.

    Attributes:
        name: Rule set name.
        version: Version of csvdnet's definition (bumped whenever a rule changes).
        maximum: Highest total.
        reference: The publication it follows.
        points: The rule: ``Measurements -> (points by item, None = undecided; notes)``.
    """

    name: str
    version: str
    maximum: int
    reference: str
    points: PointRule

    def score(self, m: Measurements) -> RuleScore:
        """Score one subject's measurements."""
        points, notes = self.points(m)
        decided = {item: int(p) for item, p in points.items() if p is not None}
        undecided = tuple(item for item, p in points.items() if p is None)
        total = None if undecided else sum(decided.values())
        if undecided:
            notes = [*notes, "total not given: " + ", ".join(undecided) + " not decided"]
        return RuleScore(self.name, self.version, total, self.maximum, decided, tuple(notes),
                         undecided)


def _any_at_least(values: Sequence[int | None], limit: int) -> int | None:
    """1 if any measured value reaches ``limit``, 0 if all are measured and none does."""
    if any(v is not None and v >= limit for v in values):
        return 1
    return None if any(v is None for v in values) else 0


def _wmh(m: Measurements) -> int | None:
    """The WMH point: decided by either grade alone when that grade is positive."""
    if m.fazekas_pv == 3 or (m.fazekas_deep is not None and m.fazekas_deep >= 2):
        return 1
    return None if m.fazekas_pv is None or m.fazekas_deep is None else 0


def _missing(m: Measurements, item: str, names: Sequence[str]) -> list[str]:
    absent = [n for n in names if getattr(m, n) is None]
    return [f"{item}: {', '.join(absent)} not measured"] if absent else []


def _staals_points(m: Measurements) -> tuple[dict[str, int | None], list[str]]:
    cmb = ("cmb_lobar", "cmb_deep", "cmb_infratentorial")
    points = {
        "lacunes": _any_at_least([m.lacune_count], 1),
        "microbleeds": _any_at_least([getattr(m, n) for n in cmb], 1),
        "wmh": _wmh(m),
        "epvs": None if m.epvs_bg_grade is None else int(m.epvs_bg_grade >= 2),
    }
    notes: list[str] = []
    for item, names in (("lacunes", ["lacune_count"]), ("microbleeds", cmb),
                        ("wmh", ["fazekas_pv", "fazekas_deep"]), ("epvs", ["epvs_bg_count"])):
        if points[item] is None:
            notes += _missing(m, item, names)
    if m.rssi_count:
        notes.append(f"{m.rssi_count} RSSI reported on their own: no published total score "
                     "includes recent infarcts")
    return points, notes


def _caa_cmb_point(lobar: int | None) -> int | None:
    if lobar is None:
        return None
    return 2 if lobar >= 5 else 1 if lobar >= 2 else 0


def _caa_svd_points(m: Measurements) -> tuple[dict[str, int | None], list[str]]:
    points = {
        "lobar_microbleeds": _caa_cmb_point(m.cmb_lobar),
        "cso_epvs": None if m.epvs_cso_count is None else int(m.epvs_cso_count > CSO_EPVS_LIMIT),
        "wmh": _wmh(m),
    }
    notes = ["cortical superficial siderosis (0-2 points) is not measured by csvdnet and is "
             "left out: the total is out of 6 but can reach 4 at most"]
    for item, names in (("lobar_microbleeds", ["cmb_lobar"]), ("cso_epvs", ["epvs_cso_count"]),
                        ("wmh", ["fazekas_pv", "fazekas_deep"])):
        if points[item] is None:
            notes += _missing(m, item, names)
    return points, notes


RULE_SETS: Mapping[str, RuleSet] = {
    "staals-2014": RuleSet(
        name="staals-2014", version="1", maximum=4, points=_staals_points,
        reference="Staals J, Makin SDJ, Doubal FN, Dennis MS, Wardlaw JM. Stroke subtype, vascular "
                  "risk factors, and total MRI brain small-vessel disease burden. Neurology "
                  "2014;83:1228-1234"),
    "caa-svd-2016": RuleSet(
        name="caa-svd-2016", version="1", maximum=6, points=_caa_svd_points,
        reference="Charidimou A, Martinez-Ramirez S, Reijmer YD, et al. Total magnetic resonance "
                  "imaging burden of small vessel disease in cerebral amyloid angiopathy: an "
                  "imaging-pathologic study of concept validation. JAMA Neurol 2016;73:994-1001"),
}
"""The rule sets by name."""


def score(rule_set: str, m: Measurements) -> RuleScore:
    """Score ``m`` by the named rule set.

    Raises:
        CsvdnetInputError: ``rule_set`` is not a key of :data:`RULE_SETS`.
    """
    if rule_set not in RULE_SETS:
        raise CsvdnetInputError("rules", f"unknown rule set {rule_set!r}; known: "
                                         f"{', '.join(sorted(RULE_SETS))}")
    return RULE_SETS[rule_set].score(m)


def ordinal_probabilities(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class and cumulative probabilities from CORAL cumulative logits (numpy, no TensorFlow).

    The class probabilities are exactly those of the TF decoding
    (:func:`csvdnet.models.coral_head.ordinal_decode`): differences of consecutive
    ``sigmoid(logits)``, clipped at 0 and renormalised, which only matters for logits that are
    not rank-consistent (the CORAL head never gives such logits). The cumulative probabilities
    returned are those of the class probabilities, ``P(y > k) = sum_{j > k} P(y = j)``: equal to
    ``sigmoid(logits)`` for rank-consistent logits and non-increasing in every case, so a report
    never shows two that disagree.

    Args:
        logits: ``(K - 1,)`` cumulative logits (or ``(B, K - 1)``).

    Returns:
        ``(class probabilities (K,), cumulative probabilities (K - 1,))`` (with the batch axis
        first when given one).
    """
    sigmoid = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    upper = np.concatenate([np.ones_like(sigmoid[..., :1]), sigmoid], axis=-1)
    lower = np.concatenate([sigmoid, np.zeros_like(sigmoid[..., :1])], axis=-1)
    probabilities = np.maximum(upper - lower, 0.0)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    cumulative = np.clip(1.0 - np.cumsum(probabilities, axis=-1)[..., :-1], 0.0, 1.0)
    return probabilities, cumulative


def ordinal_class(logits: np.ndarray) -> int | np.ndarray:
    """Predicted class of CORAL logits: the number of ``sigmoid(logits)`` above 0.5.

    The numpy twin of the class from :func:`csvdnet.models.coral_head.ordinal_decode`; for
    rank-consistent logits it is also the number of cumulative probabilities of
    :func:`ordinal_probabilities` above 0.5.
    """
    counts = np.sum(np.asarray(logits, dtype=np.float64) > 0.0, axis=-1)
    return int(counts) if np.ndim(counts) == 0 else counts
