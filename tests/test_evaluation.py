"""Voxel and lesion metrics on hand-drawn masks (csvdnet.evaluation.metrics)."""

import numpy as np
import pytest

from csvdnet.evaluation import LesionCounts, dice, lesion_counts, remove_small_components


def _mask(*voxels):
    mask = np.zeros((8, 8, 8), bool)
    for v in voxels:
        mask[v] = True
    return mask


def test_dice_by_hand():
    reference = _mask((1, 1, 1), (1, 1, 2), (1, 1, 3))
    prediction = _mask((1, 1, 1), (5, 5, 5))
    assert dice(reference, prediction) == pytest.approx(2 * 1 / 5)
    assert dice(_mask(), _mask()) == 1.0
    assert dice(reference, _mask()) == 0.0


def test_components_are_26_connected_and_small_ones_go():
    # Two voxels touching at a corner are one lesion of 2; the lone voxel is a lesion of 1.
    mask = _mask((1, 1, 1), (2, 2, 2), (6, 6, 6))
    assert remove_small_components(mask, 2).sum() == 2
    assert not remove_small_components(mask, 2)[6, 6, 6]
    assert remove_small_components(mask, 3).sum() == 0
    np.testing.assert_array_equal(remove_small_components(mask, 1), mask)


def test_lesion_counts_follow_the_wmh_challenge():
    # True: lesions A (2 voxels) and B (1 voxel). Predicted: one component touching A, one
    # touching nothing. A detected, B missed; 1 of 2 predicted components hits.
    reference = _mask((1, 1, 1), (1, 1, 2), (5, 1, 1))
    prediction = _mask((1, 1, 2), (1, 1, 3), (6, 6, 6))
    counts = lesion_counts(reference, prediction)
    assert counts == LesionCounts(true=2, detected=1, predicted=2, hits=1)
    assert counts.recall == 0.5 and counts.precision == 0.5 and counts.f1 == 0.5
    # One predicted component spanning both true lesions detects both and is one hit.
    bridge = _mask(*[(x, 1, 1) for x in range(1, 6)])
    assert lesion_counts(reference, bridge) == LesionCounts(2, 2, 1, 1)


def test_lesion_f1_conventions_and_pooling():
    assert LesionCounts().f1 == 1.0                         # nothing to find, nothing found
    assert LesionCounts(true=3).f1 == 0.0                   # all missed: recall 0, precision 1
    assert LesionCounts(predicted=2).f1 == 0.0              # all false: precision 0, recall 1
    pooled = LesionCounts(2, 2, 2, 2) + LesionCounts(2, 0, 0, 0)
    assert pooled == LesionCounts(4, 2, 2, 2)
    assert pooled.f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)
