"""Post-processing on hand-made maps (csvdnet.inference.postprocess)."""

import subprocess
import sys

import numpy as np
import pytest

from csvdnet.inference.postprocess import (Component, components, find_peaks,
                                           remove_small_components, threshold_mask)


def test_plateau_is_one_peak_at_its_centre():
    heatmap = np.zeros((12, 12, 12), "float32")
    heatmap[2, 2, 2] = 0.9
    heatmap[8, 8, 3:5] = 0.6  # a plateau of two voxels
    heatmap[5, 5:8, 9] = 0.7  # a plateau of three voxels
    heatmap[8, 2, 2] = 0.2  # below the threshold
    points, values = find_peaks(heatmap, 0.3)
    np.testing.assert_allclose(points, [[2, 2, 2], [5, 6, 9], [8, 8, 3.5]])  # highest first
    np.testing.assert_allclose(values, [0.9, 0.7, 0.6])
    points, values = find_peaks(np.zeros((4, 4, 4)), 0.3)
    assert points.shape == (0, 3) and values.shape == (0,)


def test_a_shoulder_is_not_a_peak():
    heatmap = np.zeros((9, 9, 9))
    heatmap[4, 4, 4] = 1.0
    heatmap[4, 4, 5] = 0.8  # next to a higher voxel: not a local maximum
    points, _ = find_peaks(heatmap, 0.5)
    np.testing.assert_array_equal(points, [[4, 4, 4]])


def test_non_maximum_suppression_in_mm_with_anisotropic_voxels():
    heatmap = np.zeros((16, 16, 16))
    heatmap[4, 4, 4] = 1.0
    heatmap[4, 4, 6] = 0.8  # 2 voxels along z from the highest peak
    heatmap[4, 7, 4] = 0.7  # 3 voxels along y from it
    heatmap[12, 12, 12] = 0.5  # far from everything
    assert len(find_peaks(heatmap, 0.3)[0]) == 4  # no suppression by default
    # 1 x 1 x 3 mm voxels: the z neighbour is 6 mm away, the y one 3 mm.
    points, values = find_peaks(heatmap, 0.3, spacing=(1.0, 1.0, 3.0), min_distance_mm=4.0)
    np.testing.assert_array_equal(points, [[4, 4, 4], [4, 4, 6], [12, 12, 12]])
    np.testing.assert_allclose(values, [1.0, 0.8, 0.5])
    # 3 x 3 x 1 mm voxels: now the z neighbour (2 mm) goes and the y one (9 mm) stays.
    points, _ = find_peaks(heatmap, 0.3, spacing=(3.0, 3.0, 1.0), min_distance_mm=4.0)
    np.testing.assert_array_equal(points, [[4, 4, 4], [4, 7, 4], [12, 12, 12]])
    # Exactly at the distance is kept: peaks must be closer than it to be dropped.
    points, _ = find_peaks(heatmap, 0.3, spacing=(1.0, 1.0, 2.0), min_distance_mm=4.0)
    assert [4, 4, 6] in points.tolist()


def test_suppression_is_greedy_from_the_highest_peak():
    # a (1.0) - b (0.9) - c (0.8) along x, 3 mm apart: a suppresses b, and c, 6 mm from a, stays
    # although it is within 4 mm of b (b was dropped, so it suppresses nothing).
    heatmap = np.zeros((16, 4, 4))
    heatmap[2, 1, 1], heatmap[5, 1, 1], heatmap[8, 1, 1] = 1.0, 0.9, 0.8
    points, values = find_peaks(heatmap, 0.3, spacing=(1.0, 1.0, 1.0), min_distance_mm=4.0)
    np.testing.assert_array_equal(points, [[2, 1, 1], [8, 1, 1]])
    np.testing.assert_allclose(values, [1.0, 0.8])
    # The highest in the middle suppresses both neighbours, whatever the voxel order.
    heatmap[5, 1, 1] = 1.1
    points, values = find_peaks(heatmap, 0.3, spacing=(1.0, 1.0, 1.0), min_distance_mm=4.0)
    np.testing.assert_array_equal(points, [[5, 1, 1]])


def test_small_component_removal_and_threshold():
    mask = np.zeros((8, 8, 8), bool)
    mask[1, 1, 1:3] = True  # 2 voxels
    mask[2, 2, 3] = True  # touches the pair by a corner: one 26-connected component of 3
    mask[6, 6, 6] = True  # 1 voxel
    assert remove_small_components(mask, 3).sum() == 3
    assert remove_small_components(mask, 4).sum() == 0
    assert remove_small_components(mask, 2.5).sum() == 3  # fractional sizes round up
    np.testing.assert_array_equal(remove_small_components(mask, 1), mask)
    prob = np.where(mask, 0.6, 0.1)
    prob[6, 6, 6] = 0.9
    np.testing.assert_array_equal(threshold_mask(prob, 0.5, 2), remove_small_components(mask, 2))
    assert threshold_mask(prob, 0.6).sum() == 4  # at the threshold counts
    assert threshold_mask(prob, 0.7).sum() == 1


def test_components_volumes_centroids_and_confidence():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels, centroid (1.5, 1.5, 1.5)
    mask[6, 6, 6:9] = True  # 3 voxels, centroid (6, 6, 7)
    prob = np.where(mask, 0.6, 0.0)
    prob[6, 6, 8] = 0.95
    # 1 x 2 x 3 mm voxels, an LPS-like flip of the first axis and an offset.
    affine = np.array([[-1.0, 0, 0, 50], [0, 2.0, 0, -20], [0, 0, 3.0, 10], [0, 0, 0, 1]])
    first, second = components(mask, prob, affine)
    assert first == Component(voxels=8, volume_mm3=48.0, centroid_voxel=(1.5, 1.5, 1.5),
                              centroid_world=(48.5, -17.0, 14.5), max_prob=pytest.approx(0.6))
    assert second.voxels == 3 and second.volume_mm3 == pytest.approx(18.0)
    assert second.centroid_voxel == (6.0, 6.0, 7.0)
    assert second.centroid_world == pytest.approx((44.0, -8.0, 31.0))
    assert second.max_prob == pytest.approx(0.95)
    assert components(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4)), np.eye(4)) == []
    with pytest.raises(ValueError, match="shape"):
        components(mask, prob[:5], affine)


def test_inference_package_does_not_import_tensorflow():
    code = ("import sys, csvdnet.inference, csvdnet.inference.postprocess, csvdnet.scoring, "
            "csvdnet.evaluation; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_sliding_window_names():
    import csvdnet.inference as inference
    import csvdnet.inference.sliding_window  # noqa: F401  (binds the submodule on the package)

    from csvdnet.inference import sliding_window, windowed_predictor

    # The package name is the function whatever was imported first (as before the lazy import).
    module = sys.modules["csvdnet.inference.sliding_window"]

    assert callable(sliding_window) and sliding_window is module.sliding_window
    assert windowed_predictor is module.windowed_predictor
    assert inference.sliding_window is module.sliding_window
    with pytest.raises(AttributeError):
        inference.no_such_name  # noqa: B018
