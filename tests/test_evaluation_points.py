"""VALDO-style detection: matching known point sets, EPVS by extent, FROC, regions."""

import numpy as np
import pytest

from csvdnet.atlas import REGION_CODES
from csvdnet.evaluation import match_pairs
from csvdnet.evaluation.inputs import objects_from_labelmap
from csvdnet.evaluation.points import (OVERLAP_TOLERANCE_MM, DetectionCounts, TrueObjects, froc,
                                       match_detections, match_radius, region_group)


def test_counts_by_hand_and_empty_sides():
    c = DetectionCounts(3, 1, 2)
    assert (c.sensitivity, c.precision, c.f1) == (pytest.approx(0.6), 0.75, pytest.approx(6 / 9))
    assert DetectionCounts().f1 == 1.0  # nothing to find, nothing found
    assert DetectionCounts(0, 2, 0).precision == 0.0 and DetectionCounts(0, 2, 0).sensitivity == 1
    assert DetectionCounts(0, 0, 2).precision == 1.0 and DetectionCounts(0, 0, 2).f1 == 0.0
    assert DetectionCounts(1, 2, 3) + DetectionCounts(1, 0, 0) == DetectionCounts(2, 2, 3)


def test_matching_is_one_to_one_and_prefers_more_matches():
    true = TrueObjects(np.array([[0.0, 0, 0], [5.0, 0, 0]]))
    # p0 is 1 mm from t0 and 4 mm from t1; p1 is 3.5 mm from t0 only. Greedy closest-first would
    # pair p0-t0 and leave p1 unmatched; the assignment finds two matches.
    predicted = np.array([[1.0, 0, 0], [-3.5, 0, 0], [50.0, 0, 0]])
    m = match_detections(predicted, true, 4.0)
    assert m.counts == DetectionCounts(2, 1, 0)
    assert m.predicted_matched.tolist() == [True, True, False]
    # Exactly on the radius matches; beyond does not.
    assert match_detections(np.array([[4.0, 0, 0]]), TrueObjects(np.zeros((1, 3))),
                            4.0).counts.tp == 1
    assert match_detections(np.array([[4.01, 0, 0]]), TrueObjects(np.zeros((1, 3))),
                            4.0).counts.tp == 0
    empty = match_detections(np.zeros((0, 3)), true, 4.0)
    assert empty.counts == DetectionCounts(0, 0, 2)
    none_true = match_detections(predicted, TrueObjects(np.zeros((0, 3))), 4.0)
    assert none_true.counts == DetectionCounts(0, 3, 0)
    rows, cols = match_pairs(np.array([[1.0, 9.0], [2.0, 3.0]]), 4.0)
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]


def test_epvs_tube_end_matches_by_extent_not_by_midpoint():
    # A 14 mm tube along z centred at the origin; a correct peak near its upper end.
    centre = np.zeros((1, 3))
    peak = np.array([[0.5, 0.0, 6.5]])
    bare = TrueObjects(centre)
    radius, to_extent = match_radius("epvs", bare)
    assert (radius, to_extent) == (4.0, False)
    assert match_detections(peak, bare, radius, to_extent).counts == DetectionCounts(0, 1, 1)
    tube = TrueObjects(centre, segments=np.array([[[0, 0, -7.0], [0, 0, 7.0]]]))
    radius, to_extent = match_radius("epvs", tube)
    assert (radius, to_extent) == (OVERLAP_TOLERANCE_MM, True)
    assert tube.distances(peak, True)[0, 0] == pytest.approx(0.5)
    assert match_detections(peak, tube, radius, to_extent).counts == DetectionCounts(1, 0, 0)
    # Beyond the end by more than the tolerance: a miss.
    assert tube.distances(np.array([[0, 0, 9.0]]), True)[0, 0] == pytest.approx(2.0)
    ball = TrueObjects(centre, half_length=np.array([7.0]))
    assert ball.distances(np.array([[0, 0, 9.0], [0, 3.0, 0]]), True)[:, 0] == pytest.approx(
        [2.0, 0.0])
    # CMB never uses an extent, even when given.
    assert match_radius("cmb", tube) == (4.0, False)
    assert match_radius("epvs", tube, {"epvs": 3.0}) == (3.0, True)


def test_label_map_objects_match_by_their_voxels():
    data = np.zeros((12, 5, 5))
    data[1:11, 2, 2] = 1  # one 10-voxel tube along i
    data[1, 0, 0] = 1  # a second object (not 26-connected to the first)
    affine = np.diag([2.0, 1.0, 1.0, 1.0])
    objects = objects_from_labelmap(data, affine)
    assert len(objects) == 2
    # Label (voxel scan) order: the lone voxel at i = 1, j = 0 comes first.
    assert objects.centres[1] == pytest.approx([11.0, 2.0, 2.0])
    # 1 mm past the tube's last voxel (x = 20): found; the midpoint is 9 mm away.
    m = match_detections(np.array([[21.0, 2.0, 2.0]]), objects, *match_radius("epvs", objects))
    assert m.true_matched.tolist() == [False, True]


def test_froc_by_hand():
    # Subject A: true t0; points conf 0.9 (hit), 0.8 (FP), 0.3 (FP).
    # Subject B: true t0, t1; points conf 0.7 (hits t1), 0.2 (hits t0).
    a_true, b_true = TrueObjects(np.zeros((1, 3))), TrueObjects(np.array([[0.0, 0, 0],
                                                                          [20.0, 0, 0]]))
    a = match_detections(np.array([[1.0, 0, 0], [30, 0, 0], [60, 0, 0]]), a_true, 4.0)
    b = match_detections(np.array([[20.0, 1, 0], [0, 1, 0]]), b_true, 4.0)
    curve = froc([a, b], [np.array([0.9, 0.8, 0.3]), np.array([0.7, 0.2])], rates=(0.5, 1.0))
    assert curve.thresholds.tolist() == [0.9, 0.8, 0.7, 0.3, 0.2]
    assert curve.fp_per_subject.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert curve.sensitivity.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0])
    assert curve.at == {0.5: pytest.approx(2 / 3), 1.0: 1.0}
    assert curve.score == pytest.approx(5 / 6)


def test_region_groups_are_disjoint():
    assert region_group(REGION_CODES["basal_ganglia"]) == "basal_ganglia"
    assert region_group(REGION_CODES["juxtacortical"]) == "lobar"
    assert region_group(REGION_CODES["thalamus"]) == "deep"
    assert region_group(REGION_CODES["infratentorial"]) == "infratentorial"
    assert region_group(REGION_CODES["ventricles"]) == "other"
