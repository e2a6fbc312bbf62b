"""The reviewed state of a subject: its labels, measured and scored as ``csvdnet predict`` does.

Masks: the model's mask without the components of rejected findings, with each added finding
painted as a ball of its radius. Points: the model's points not rejected, plus the added ones.
``unsure`` keeps a finding (the model's call stands; the export lists it). The quantities are
measured by :func:`csvdnet.inference.measure.measure` on predict's region map and scored by
:func:`csvdnet.scoring.score`: the very code predict used, so an untouched review rates exactly
as predict rated. A grade the reviewer set replaces the measured one (an EPVS grade becomes the
smallest count of that grade, :data:`csvdnet.scoring.EPVS_GRADE_LIMITS`).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.inference.measure import measure
from csvdnet.review.subject import ReviewSubject
from csvdnet.scoring import EPVS_GRADE_LIMITS, RULE_SETS, Measurements, score

__all__ = ["Reviewed", "reviewed_labels", "reviewed_rating"]


@dataclasses.dataclass
class Reviewed:
    masks: dict[str, np.ndarray]
    points: dict[str, np.ndarray]
    sides: dict[str, list[str]]
    regions: dict[str, list[str]]


def _decision(review: dict[str, Any] | None, fid: str) -> str | None:
    entry = ((review or {}).get("decisions") or {}).get(fid)
    return None if entry is None else entry["decision"]


def paint_ball(mask: np.ndarray, affine: np.ndarray, world: list[float], radius_mm: float) -> None:
    """Set the voxels whose centres lie within ``radius_mm`` of ``world`` (at least the voxel
    under it)."""
    inverse = np.linalg.inv(affine)
    centre = inverse[:3, :3] @ np.asarray(world, dtype=np.float64) + inverse[:3, 3]
    spacing = np.sqrt(np.sum(affine[:3, :3] ** 2, axis=0))
    reach = np.ceil(radius_mm / spacing).astype(int) + 1
    lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
    hi = np.minimum(np.ceil(centre).astype(int) + reach + 1, mask.shape)
    if np.any(hi <= lo):
        return
    grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
    offsets = np.stack([g - c for g, c in zip(grids, centre)], axis=-1)
    world_offsets = offsets @ affine[:3, :3].T
    inside = np.sum(world_offsets ** 2, axis=-1) <= radius_mm ** 2
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    mask[box] |= inside
    nearest = np.rint(centre).astype(int)
    if np.all((nearest >= 0) & (nearest < mask.shape)):
        mask[tuple(nearest)] = True


def reviewed_labels(subject: ReviewSubject, review: dict[str, Any] | None,
                    tasks: list[str] | None = None) -> Reviewed:
    """The subject's labels after the review (only ``tasks`` that predict measured)."""
    measured = subject.measured_tasks()
    tasks = [t for t in (tasks or measured) if t in measured]
    added = [a for a in (review or {}).get("added", []) if _decision(review, a["id"]) != "reject"]
    out = Reviewed({}, {}, {}, {})
    for task in tasks:
        if task in SEGMENTATION_TASKS:
            labels, matched = subject.components(task)
            rejected = [matched[f.id] for f in subject.findings
                        if f.task == task and _decision(review, f.id) == "reject"]
            mask = labels > 0
            if rejected:
                mask &= ~np.isin(labels, rejected)
            for a in added:
                if a["task"] == task:
                    paint_ball(mask, subject.affine, a["world"], a["radius_mm"])
            out.masks[task] = mask
        else:
            kept = [f for f in subject.findings
                    if f.task == task and _decision(review, f.id) != "reject"]
            kept_added = [a for a in added if a["task"] == task]
            world = [f.world for f in kept] + [a["world"] for a in kept_added]
            out.points[task] = np.asarray(world, dtype=np.float64).reshape(-1, 3)
            out.sides[task] = [f.side for f in kept] + [a["side"] for a in kept_added]
            out.regions[task] = [f.region for f in kept] + [a["region"] for a in kept_added]
    return out


def reviewed_overlay(subject: ReviewSubject, review: dict[str, Any] | None) -> np.ndarray:
    """The reviewed masks as one uint8 grid, one bit per task (wmh 1, rssi 2, lacune 4): what
    the page's slice viewer overlays (rejected lesions gone, added balls painted)."""
    out = np.zeros(subject.shape, dtype=np.uint8)
    masks = reviewed_labels(subject, review, list(SEGMENTATION_TASKS)).masks
    for bit, task in enumerate(SEGMENTATION_TASKS):
        if task in masks:
            out |= masks[task].astype(np.uint8) << bit
    return out


def _grade_count(grade: int) -> int:
    """Smallest one-side-one-slice EPVS count of a grade."""
    return 0 if grade == 0 else EPVS_GRADE_LIMITS[grade - 1] + 1


def _mask_key(review: dict[str, Any] | None, tasks: tuple[str, ...]) -> tuple:
    """What decides the reviewed masks of ``tasks``: rejected components and kept added balls
    (an accept or unsure leaves a mask as the model made it)."""
    decisions = (review or {}).get("decisions") or {}
    rejected = sorted(k for k, v in decisions.items()
                      if k.split(":")[0] in tasks and v["decision"] == "reject")
    added = [(a["task"], tuple(a["world"]), a["radius_mm"]) for a in (review or {}).get("added", [])
             if a["task"] in tasks and _decision(review, a["id"]) != "reject"]
    return tuple(rejected), tuple(added)


class RatingCache:
    """Measures a subject's reviewed state. The masks' quantities (the slow part: WMH features
    need a distance map, lacunes and RSSI a labelling) are measured again only when a decision
    changed a mask; the points are measured every time (cheap)."""

    def __init__(self) -> None:
        self._masks: dict[tuple, Measurements] = {}
        self._lock = threading.Lock()

    def measurements(self, subject: ReviewSubject,
                     review: dict[str, Any] | None) -> Measurements:
        measured = subject.measured_tasks()
        fields: dict[str, Any] = {}
        for group in (("wmh",), ("lacune", "rssi")):
            tasks = tuple(t for t in group if t in measured)
            if not tasks:
                continue
            key = (subject.id, tasks, _mask_key(review, tasks))
            with self._lock:
                found = self._masks.get(key)
            if found is None:
                labels = reviewed_labels(subject, review, list(tasks))
                found = measure(labels.masks, {}, {}, subject.regions, subject.affine)[0]
                with self._lock:
                    self._masks[key] = found
            fields.update({k: v for k, v in dataclasses.asdict(found).items() if v is not None})
        points = [t for t in DETECTION_TASKS if t in measured]
        if points:
            labels = reviewed_labels(subject, review, points)
            m, _ = measure({}, labels.points, labels.sides, subject.regions, subject.affine)
            fields.update({k: v for k, v in dataclasses.asdict(m).items() if v is not None})
        grades = (review or {}).get("grades") or {}
        for name in ("fazekas_pv", "fazekas_deep"):
            if name in grades:
                fields[name] = grades[name]
        if "epvs_bg_grade" in grades:
            fields["epvs_bg_count"] = _grade_count(grades["epvs_bg_grade"])
        return Measurements(**fields)


def reviewed_rating(subject: ReviewSubject, review: dict[str, Any] | None,
                    cache: RatingCache | None = None) -> dict[str, Any]:
    """Ratings and every rule set's total of the reviewed state (JSON-ready)."""
    m = (cache or RatingCache()).measurements(subject, review)
    ratings = {"fazekas_pv": m.fazekas_pv, "fazekas_deep": m.fazekas_deep,
               "epvs_bg_grade": m.epvs_bg_grade, "epvs_cso_count": m.epvs_cso_count,
               "cmb_count": m.cmb_count, "cmb_lobar": m.cmb_lobar,
               "lacune_count": m.lacune_count, "rssi_count": m.rssi_count}
    scores = {name: score(name, m) for name in RULE_SETS}
    return {"ratings": ratings,
            "totals": {name: s.total for name, s in scores.items()},
            "points": {name: s.points for name, s in scores.items()},
            "measurements": m}

