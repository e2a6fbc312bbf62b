"""Detection of countable markers (VALDO 2021 style): matching, per-subject counts, FROC.

Microbleeds, EPVS, and lacunes and RSSI taken as objects, are judged point by point: every
predicted point (a heatmap peak, or a predicted lesion's centre) is matched one-to-one to a true
object when it lies within a radius of it (:func:`csvdnet.evaluation.detection.match_pairs`:
most matches first, then the shortest distances). The *distance to an object* is:

- CMB, lacunes, RSSI: the distance between centres (VALDO 2021), matched within
  :data:`~csvdnet.evaluation.detection.MATCH_DISTANCE_MM` (4 mm, VALDO's CMB radius);
- EPVS: the distance to the nearest part of the EPVS (VALDO judges EPVS by overlap), within
  :data:`OVERLAP_TOLERANCE_MM`. An EPVS is a tube 3-16 mm long whose CSV point is its midpoint,
  so a correct peak near one end is ~8 mm from that point: matching midpoints would call it a
  miss and a false positive. The part of the EPVS known is what the label gives
  (:class:`TrueObjects`): its voxels (a NIfTI label map), its centreline (a CSV with ``dx, dy,
  dz`` direction columns and ``length_mm``), or, for a CSV with ``length_mm`` alone, the ball
  of radius ``length / 2`` about the midpoint that holds the whole centreline (a lower bound of
  the distance, so lenient by at most the tube's half width off-axis). EPVS given as bare points
  fall back to the centre rule and radius.

Counts follow :class:`DetectionCounts`: sensitivity = TP / true, precision = TP / predicted,
both 1 when their denominator is 0, ``F1 = 2 TP / (2 TP + FP + FN)`` (1 when nothing is to be
found and nothing is found). FROC (:func:`froc`): for every confidence threshold the points at
or above it are matched again; sensitivity (pooled TP / pooled true objects) is read at 1, 2, 4
and 8 false positives per subject as the best operating point not exceeding that rate.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
from scipy import spatial

from csvdnet.atlas import REGION_CODES
from csvdnet.evaluation.detection import MATCH_DISTANCE_MM, match_pairs

__all__ = ["FROC_RATES", "OVERLAP_TOLERANCE_MM", "REGION_GROUPS", "DetectionCounts", "Froc",
           "Matching", "TrueObjects", "froc", "match_detections", "match_radius",
           "region_group"]

OVERLAP_TOLERANCE_MM = 1.5
"""A point this close to an EPVS (voxels or centreline) overlaps it: one working voxel of
localisation error of a heatmap peak."""

FROC_RATES = (1.0, 2.0, 4.0, 8.0)
"""False positives per subject at which FROC sensitivity is read."""

REGION_GROUPS: dict[str, tuple[int, ...]] = {
    "basal_ganglia": (REGION_CODES["basal_ganglia"],),
    "centrum_semiovale": (REGION_CODES["centrum_semiovale"],),
    "lobar": (REGION_CODES["juxtacortical"],),
    "deep": tuple(REGION_CODES[n] for n in ("thalamus", "periventricular", "deep_wm")),
    "infratentorial": (REGION_CODES["infratentorial"],),
}
"""The regions detection is broken down by (disjoint; ``deep`` is the deep grey and white
matter outside the basal ganglia and the centrum semiovale). Other codes are ``other``."""


def region_group(code: int) -> str:
    """The :data:`REGION_GROUPS` name of a region code (``"other"`` if none)."""
    for name, codes in REGION_GROUPS.items():
        if int(code) in codes:
            return name
    return "other"


@dataclasses.dataclass
class DetectionCounts:
    """True positives, false positives and false negatives; add subjects with ``+``."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def n_true(self) -> int:
        return self.tp + self.fn

    @property
    def n_pred(self) -> int:
        return self.tp + self.fp

    @property
    def sensitivity(self) -> float:
        """TP / true objects; 1 when there is none."""
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def precision(self) -> float:
        """TP / predicted points; 1 when nothing is predicted."""
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)``; 1 when nothing is to be found and nothing is found."""
        total = 2 * self.tp + self.fp + self.fn
        return 2.0 * self.tp / total if total else 1.0


@dataclasses.dataclass(frozen=True)
class TrueObjects:
    """The true objects of one subject and what is known of their extent (module docstring).

    Attributes:
        centres: ``(M, 3)`` world mm.
        voxels: Per object, ``(K, 3)`` world mm of its voxels (label map), or None.
        segments: ``(M, 2, 3)`` centreline ends, world mm, or None.
        half_length: ``(M,)`` mm: the object lies within this distance of its centre, or None.
    """

    centres: np.ndarray
    voxels: tuple[np.ndarray, ...] | None = None
    segments: np.ndarray | None = None
    half_length: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.centres)

    @property
    def has_extent(self) -> bool:
        return any(v is not None for v in (self.voxels, self.segments, self.half_length))

    def distances(self, points: np.ndarray, to_extent: bool) -> np.ndarray:
        """``(N, M)`` mm from each point to each object's centre or, if ``to_extent``, its
        nearest known part."""
        points = np.asarray(points, float).reshape(-1, 3)
        centres = np.asarray(self.centres, float).reshape(-1, 3)
        if not to_extent or not self.has_extent or not len(points) or not len(centres):
            return spatial.distance.cdist(points, centres)
        if self.voxels is not None:
            return np.stack([spatial.cKDTree(v).query(points)[0] for v in self.voxels], axis=1)
        if self.segments is not None:
            start, end = self.segments[:, 0], self.segments[:, 1]
            axis = end - start
            length2 = np.maximum(np.sum(axis ** 2, axis=1), 1e-12)
            t = np.clip(np.einsum("nmd,md->nm", points[:, None] - start[None], axis) / length2,
                        0.0, 1.0)
            nearest = start[None] + t[..., None] * axis[None]
            return np.linalg.norm(points[:, None] - nearest, axis=-1)
        return np.maximum(spatial.distance.cdist(points, centres) - self.half_length[None], 0.0)


def match_radius(task: str, objects: TrueObjects,
                 radius_mm: Mapping[str, float] | None = None) -> tuple[float, bool]:
    """``(radius mm, measured to the extent?)`` of ``task``'s matching rule (module docstring);
    ``radius_mm`` overrides the default radius of a task."""
    to_extent = task == "epvs" and objects.has_extent
    default = OVERLAP_TOLERANCE_MM if to_extent else MATCH_DISTANCE_MM
    return float((radius_mm or {}).get(task, default)), to_extent


@dataclasses.dataclass(frozen=True)
class Matching:
    """One subject's matching.

    Attributes:
        counts: TP / FP / FN.
        predicted_matched: ``(N,)`` bool, which predicted points found an object.
        true_matched: ``(M,)`` bool, which true objects were found.
        distance: ``(N, M)`` distances the matching used (kept for FROC).
        radius_mm: The radius used.
    """

    counts: DetectionCounts
    predicted_matched: np.ndarray
    true_matched: np.ndarray
    distance: np.ndarray
    radius_mm: float


def match_detections(predicted: np.ndarray, objects: TrueObjects, radius_mm: float,
                     to_extent: bool = False) -> Matching:
    """Match predicted world points one-to-one to true objects within ``radius_mm``."""
    predicted = np.asarray(predicted, float).reshape(-1, 3)
    distance = objects.distances(predicted, to_extent)
    rows, cols = match_pairs(distance, radius_mm)
    found_pred = np.zeros(len(predicted), bool)
    found_true = np.zeros(len(objects), bool)
    found_pred[rows], found_true[cols] = True, True
    counts = DetectionCounts(len(rows), len(predicted) - len(rows), len(objects) - len(rows))
    return Matching(counts, found_pred, found_true, distance, radius_mm)


@dataclasses.dataclass(frozen=True)
class Froc:
    """A free-response ROC curve over subjects.

    Attributes:
        thresholds: Confidence thresholds, descending.
        fp_per_subject: Mean false positives per subject at each threshold.
        sensitivity: Pooled sensitivity at each threshold.
        at: Sensitivity at each of :data:`FROC_RATES` false positives per subject.
        score: Mean of ``at`` (the FROC score of LUNA16 / VALDO-style reports).
    """

    thresholds: np.ndarray
    fp_per_subject: np.ndarray
    sensitivity: np.ndarray
    at: dict[float, float]
    score: float


def froc(matchings: Sequence[Matching], confidences: Sequence[np.ndarray],
         rates: Sequence[float] = FROC_RATES, max_thresholds: int = 200) -> Froc:
    """FROC of several subjects' matchings (each with its points' confidences).

    Args:
        matchings: Per-subject :func:`match_detections` results (all points predicted).
        confidences: Per subject, ``(N,)`` confidence of each predicted point.
        rates: False positives per subject at which sensitivity is read.
        max_thresholds: Use at most this many thresholds (quantiles of the confidences).
    """
    pooled = np.concatenate([np.asarray(c, float).ravel() for c in confidences] or [[]])
    thresholds = np.unique(pooled)[::-1]
    if len(thresholds) > max_thresholds:
        thresholds = np.unique(np.quantile(pooled, np.linspace(0, 1, max_thresholds)))[::-1]
    n_true = sum(len(m.true_matched) for m in matchings)
    n_subjects = max(len(matchings), 1)
    fps, sens = [], []
    for threshold in thresholds:
        tp = fp = 0
        for matching, conf in zip(matchings, confidences):
            keep = np.asarray(conf, float) >= threshold
            rows, _ = match_pairs(matching.distance[keep], matching.radius_mm)
            tp += len(rows)
            fp += int(keep.sum()) - len(rows)
        fps.append(fp / n_subjects)
        sens.append(tp / n_true if n_true else 1.0)
    fps_arr, sens_arr = np.asarray(fps), np.asarray(sens)
    at = {}
    for rate in rates:
        ok = fps_arr <= rate
        at[float(rate)] = float(sens_arr[ok].max()) if ok.any() else (0.0 if n_true else 1.0)
    return Froc(thresholds, fps_arr, sens_arr, at, float(np.mean(list(at.values()))))
