"""Point matching and quadratic-weighted kappa (csvdnet.evaluation.detection)."""

import numpy as np
import pytest

from csvdnet.evaluation import MATCH_DISTANCE_MM, match_points, quadratic_weighted_kappa
from csvdnet.inference.postprocess import find_peaks


def test_detection_peaks_and_matching():
    heatmap = np.zeros((12, 12, 12), "float32")
    heatmap[2, 2, 2] = 0.9
    heatmap[8, 8, 3:5] = 0.6  # a plateau of two voxels: one peak at its centre
    heatmap[8, 2, 2] = 0.2  # below the threshold
    peaks, _ = find_peaks(heatmap, 0.3)
    true = np.array([[2.0, 2.0, 4.0], [8.0, 8.0, 3.0], [0.0, 11.0, 11.0]])
    # Along z, 2 mm voxels: (2,2,2)-(2,2,4) is 4 mm apart (matched), (8,8,3.5)-(8,8,3) is 1 mm.
    assert match_points(peaks, true, (1.0, 1.0, 2.0)) == (2, 0, 1)
    assert match_points(peaks, true, (1.0, 1.0, 2.5)) == (1, 1, 2)
    # One-to-one: two predictions near one true point find it once.
    assert match_points(np.array([[0.0, 0, 0], [1.0, 0, 0]]), np.array([[0.5, 0, 0]]),
                        (1, 1, 1)) == (1, 1, 0)


def test_matching_limit_and_empty_sides():
    assert MATCH_DISTANCE_MM == 4.0
    one = np.array([[0.0, 0.0, 0.0]])
    assert match_points(one, np.array([[0.0, 0.0, 4.0]]), (1, 1, 1)) == (1, 0, 0)  # at the limit
    assert match_points(one, np.array([[0.0, 0.0, 4.01]]), (1, 1, 1)) == (0, 1, 1)
    assert match_points(np.zeros((0, 3)), one, (1, 1, 1)) == (0, 0, 1)
    assert match_points(one, np.zeros((0, 3)), (1, 1, 1)) == (0, 1, 0)
    # Matching maximises the number of pairs, not greed: the closest pair (a, y) would leave x
    # and b unmatched; (a, x) + (b, y) matches both.
    predicted = np.array([[0.0, 0, 0], [5.0, 0, 0]])
    true = np.array([[-3.0, 0, 0], [2.0, 0, 0]])
    assert match_points(predicted, true, (1, 1, 1)) == (2, 0, 0)


def test_kappa():
    assert quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3], 5) == 1.0
    assert quadratic_weighted_kappa([2, 2], [2, 2], 5) == 1.0
    assert quadratic_weighted_kappa([0, 4], [4, 0], 5) < 0.0
    # By hand: disagreement (3, 4) weighs 1/16; chance = sum over true {0,1,2,3} x predicted
    # {0,1,2,4} of (i - j)^2 / 16 / 4 = 56 / 64; kappa = 1 - (1/16) / (56/64) = 13/14.
    assert quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 4], 5) == pytest.approx(13 / 14)


def test_old_homes_reexport_without_copies():
    from csvdnet.evaluation import metrics
    from csvdnet.inference import postprocess
    from csvdnet.evaluation import validation

    assert metrics.remove_small_components is postprocess.remove_small_components
    assert validation.match_points is match_points
    assert not hasattr(validation, "MATCH_DISTANCE_MM")
