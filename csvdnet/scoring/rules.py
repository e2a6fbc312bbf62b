"""Rule sets: the measured quantities of one subject, the named, versioned rules over them, totals.

:class:`Measurements` (``None`` = not measured); :data:`RULE_SETS` (``"staals-2014"``,
``"caa-svd-2016"``) and :func:`score`, which returns a :class:`RuleScore`; :func:`staals_total`,
the total SVD score of fully measured grades.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

from csvdnet.errors import CsvdnetInputError
from csvdnet.scoring.epvs import CSO_EPVS_LIMIT, epvs_grade
from csvdnet.scoring.wmh import wmh_point

__all__ = ["Measurements", "PointRule", "RULE_SETS", "RuleScore", "RuleSet", "score",
           "staals_total"]


def staals_total(fazekas_pv: int, fazekas_deep: int, epvs_bg_grade: int, cmb_count: int,
                 lacune_count: int) -> int:
    """Total SVD score (Staals et al., Neurology 2014), 0-4; RSSI are not part of it.

    One point each for: >= 1 lacune; >= 1 microbleed; periventricular Fazekas 3 and/or deep
    Fazekas >= 2; basal ganglia EPVS grade >= 2. The same rule as ``score("staals-2014", m)``
    for a fully measured ``m``.
    """
    return (int(lacune_count >= 1) + int(cmb_count >= 1) + int(wmh_point(fazekas_pv, fazekas_deep))
            + int(epvs_bg_grade >= 2))


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
