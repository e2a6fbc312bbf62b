"""Training targets: Gaussian heatmaps and ordinal levels, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from csvdnet.data import targets


def render(points, shape=(20, 20, 20), sigma_mm=2.0, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    sigma = targets.sigma_voxels(sigma_mm, tf.constant(spacing))
    points = tf.reshape(tf.constant(points, tf.float32), (-1, 3))
    return targets.render_heatmap(points, tf.constant(shape), sigma).numpy()


def test_peak_is_exactly_one_at_the_nearest_voxel():
    heatmap = render([[5.4, 12.6, 9.5], [14.0, 3.2, 15.49]])
    assert heatmap[5, 13, 10] == 1.0  # 9.5 rounds up: halves go to the next voxel
    assert heatmap[14, 3, 15] == 1.0
    assert np.count_nonzero(heatmap == 1.0) == 2
    assert heatmap.dtype == np.float32 and heatmap.shape == (20, 20, 20)


def test_subvoxel_heatmap_is_centred_on_the_point_itself():
    sigma = targets.sigma_voxels(2.0, tf.constant((1.5, 1.5, 1.5)))
    point = np.array([[5.3, 6.5, 4.8]])
    heatmap = targets.render_heatmap(tf.constant(point, tf.float32), tf.constant((12, 12, 12)),
                                     sigma, subvoxel=True).numpy()
    s = 2.0 / 1.5
    # The nearest voxel (5, 7, 5) holds the Gaussian at its offset (-0.3, 0.5, 0.2), not 1.0.
    assert heatmap[5, 7, 5] == pytest.approx(math.exp(-(0.09 + 0.25 + 0.04) / (2 * s * s)),
                                             rel=1e-5)
    assert heatmap[5, 6, 5] == pytest.approx(math.exp(-(0.09 + 0.25 + 0.04) / (2 * s * s)),
                                             rel=1e-5)  # 6.5: both neighbours equal
    assert heatmap[4, 7, 5] == pytest.approx(math.exp(-(1.69 + 0.25 + 0.04) / (2 * s * s)),
                                             rel=1e-5)
    assert heatmap.max() < 1.0
    empty = targets.render_heatmap(tf.zeros((0, 3)), tf.constant((4, 4, 4)), sigma, subvoxel=True)
    assert not np.any(empty.numpy())


def test_gaussian_width_follows_sigma_mm_and_spacing_per_axis():
    # sigma 2 mm on a (1, 1, 2) mm grid: 2 voxels along x and y, 1 voxel along z.
    heatmap = render([[10, 10, 10]], spacing=(1.0, 1.0, 2.0))
    assert heatmap[11, 10, 10] == pytest.approx(math.exp(-1 / (2 * 2.0 ** 2)), rel=1e-6)
    assert heatmap[10, 8, 10] == pytest.approx(math.exp(-4 / (2 * 2.0 ** 2)), rel=1e-6)
    assert heatmap[10, 10, 11] == pytest.approx(math.exp(-1 / (2 * 1.0 ** 2)), rel=1e-6)
    assert heatmap[11, 11, 11] == pytest.approx(math.exp(-(1 / 8 + 1 / 8 + 1 / 2)), rel=1e-6)
    # Truncated beyond 3 sigma: 6 voxels along x, 3 along z.
    assert heatmap[16, 10, 10] > 0 and heatmap[17, 10, 10] == 0
    assert heatmap[10, 10, 13] > 0 and heatmap[10, 10, 14] == 0


def test_overlapping_gaussians_combine_by_maximum():
    heatmap = render([[8, 10, 10], [12, 10, 10]])
    assert heatmap[10, 10, 10] == pytest.approx(math.exp(-4 / 8), rel=1e-6)  # not twice that
    assert heatmap[8, 10, 10] == 1.0 and heatmap[12, 10, 10] == 1.0


def test_points_outside_contribute_their_tail_but_no_peak_and_no_points_gives_zeros():
    heatmap = render([[-2, 10, 10]])
    assert heatmap.max() == pytest.approx(math.exp(-4 / 8), rel=1e-6)
    assert heatmap[0, 10, 10] == heatmap.max()
    assert not render(np.zeros((0, 3))).any()


def test_ordinal_targets_are_cumulative_levels():
    expected = {0: [0, 0, 0, 0], 1: [1, 0, 0, 0], 2: [1, 1, 0, 0], 3: [1, 1, 1, 0], 4: [1, 1, 1, 1]}
    for score, levels in expected.items():
        np.testing.assert_array_equal(targets.ordinal_targets(tf.constant(score), 5).numpy(),
                                      levels)
    # A missing score gives placeholders (masked out by the score's label mask).
    np.testing.assert_array_equal(targets.ordinal_targets(tf.constant(math.nan), 5).numpy(),
                                  [0, 0, 0, 0])
    assert targets.ordinal_targets(tf.constant(2.0), 3).numpy().tolist() == [1, 1]
    batch = targets.ordinal_targets(tf.constant([4.0, 0.0, 1.0]), 5).numpy()
    np.testing.assert_array_equal(batch, [expected[4], expected[0], expected[1]])
