"""Post-processing on hand-made maps (csvdnet.inference.postprocess)."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from csvdnet.inference.postprocess import (PEAK_MIN_DISTANCE_MM, RIDGE_RADIUS_MM,
                                           SMALLEST_LESION_MM3, Component, components,
                                           find_peaks, mask_to_reference, on_a_ridge,
                                           peak_widths, remove_small_components, size_floor_mm3,
                                           subvoxel_offsets, threshold_mask)


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
    assert len(points) == 1
    # ... but it pulls the peak's sub-voxel position towards itself (at most half a voxel).
    np.testing.assert_array_equal(points[0, :2], [4, 4])
    assert 4.0 < points[0, 2] <= 4.5


def _gaussians(shape, centres, sigma):
    """Max-combined Gaussians at sub-voxel ``centres`` (voxel units), as an ideal network."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    out = np.zeros(shape)
    for centre in centres:
        out = np.maximum(out, np.exp(-0.5 * np.sum((grid - centre) ** 2, axis=-1) / sigma ** 2))
    return out


def test_a_gaussian_peak_is_found_at_its_sub_voxel_centre():
    # sigma 2 mm on a 1.5 mm grid, centred between voxels: the nearest voxel is off by up to
    # 0.5 voxel (0.75 mm); the log-parabola recovers the centre exactly.
    centre = np.array([7.3, 8.5, 6.82])
    points, values = find_peaks(_gaussians((16, 16, 16), [centre], 2.0 / 1.5), 0.2)
    np.testing.assert_allclose(points, [centre], atol=1e-9)
    assert values[0] == pytest.approx(np.exp(-0.5 * (0.3 ** 2 + 0.5 ** 2 + 0.18 ** 2)
                                              / (2.0 / 1.5) ** 2))
    offsets = subvoxel_offsets(np.pad(np.ones((1, 1, 1)), 1), np.array([[1, 1, 1]]))
    np.testing.assert_array_equal(offsets, [[0.0, 0.0, 0.0]])  # flat: no offset
    edge = np.zeros((4, 4, 4))
    edge[0, 2, 2] = 1.0
    assert subvoxel_offsets(edge, np.array([[0, 2, 2]]))[0, 0] == 0.0  # no neighbour outside


def test_two_epvs_3_1_mm_apart_are_two_peaks_where_they_are():
    # Two EPVS 3.1 mm apart (the closest the synthetic cohort plants them) on the 1.5 mm working
    # grid, heatmap sigma 2 mm: the 3 mm suppression of csvdnet predict keeps both peaks. The
    # voxel between them belongs to the first Gaussian and pulls the second's vertex towards it
    # (0.33 mm); the first's own neighbours are its own (exact).
    a = np.array([8.2, 8.0, 8.0])
    b = a + np.array([3.1, 0.0, 0.0]) / 1.5
    points, _ = find_peaks(_gaussians((20, 16, 16), [a, b], 2.0 / 1.5), 0.2,
                           spacing=(1.5, 1.5, 1.5), min_distance_mm=3.0)
    assert len(points) == 2
    found = points[np.argsort(points[:, 0])]
    errors = np.linalg.norm((found - [a, b]) * 1.5, axis=1)
    assert errors[0] < 1e-9 and errors[1] < 0.35


def test_face_neighbours_resolve_findings_on_diagonal_neighbour_voxels():
    # Two EPVS 4.2 mm apart whose nearest working voxels, (8, 8, 8) and (9, 9, 9), touch by a
    # corner: both hold 0.87. In a 3x3x3 cube they are one plateau, one finding; with the six
    # face neighbours, two, each where it is.
    a, b = np.full(3, 7.7), np.full(3, 9.3)
    heatmap = _gaussians((18, 18, 18), [a, b], 2.0 / 1.5)
    assert len(find_peaks(heatmap, 0.2)[0]) == 1
    # ... predict's suppression for faces (2.5 mm) keeps both: their voxels are 2.6 mm apart.
    points, _ = find_peaks(heatmap, 0.2, spacing=(1.5, 1.5, 1.5), neighbourhood="faces",
                           min_distance_mm=PEAK_MIN_DISTANCE_MM["faces"])
    found = points[np.argsort(points[:, 0])]
    assert len(found) == 2 and np.all(np.linalg.norm((found - [a, b]) * 1.5, axis=1) < 0.5)
    # An isolated Gaussian is one peak with faces too, wherever its centre.
    for centre in np.random.default_rng(5).uniform(6, 10, (30, 3)):
        points, _ = find_peaks(_gaussians((16, 16, 16), [centre], 2.0 / 1.5), 0.2,
                               neighbourhood="faces")
        np.testing.assert_allclose(points, [centre], atol=1e-6)
    with pytest.raises(ValueError, match="peak neighbourhood must be one of cube, faces"):
        find_peaks(heatmap, 0.2, neighbourhood="edges")


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


def _inverter(working_to_reference, reference_shape):
    """``invert(array, order)`` onto a reference grid, as PreprocessMeta.invert resamples."""
    reference_to_working = np.linalg.inv(working_to_reference)

    def invert(array, order):
        array = np.asarray(array)
        return ndimage.affine_transform(array.astype(np.float32) if order else array,
                                        reference_to_working[:3, :3], reference_to_working[:3, 3],
                                        output_shape=reference_shape, order=order,
                                        mode="constant", cval=0)
    return invert


# Working grid 1.5 mm isotropic; reference 1.2 x 1.2 x 3 mm, shifted by a fraction of a voxel.
_W2R = np.array([[1.5 / 1.2, 0, 0, 0.3], [0, 1.5 / 1.2, 0, -0.2], [0, 0, 0.5, 0.15],
                 [0, 0, 0, 1.0]])


def test_a_3_mm_lacune_decided_on_the_working_grid_survives_the_way_back():
    # A 3 mm lacune at probability 1 on the working grid: 2 x 2 x 2 voxels of 1.5 mm (27 mm^3,
    # the voxels a 3 mm sphere centred between them covers), lying across two 3 mm slices.
    mask = np.zeros((16, 16, 16), bool)
    mask[6:8, 6:8, 7:9] = True
    invert = _inverter(_W2R, (20, 20, 8))
    carried = mask_to_reference(mask, invert, _W2R)
    volume = carried.sum() * 1.2 * 1.2 * 3.0
    assert len(components(carried, carried.astype(float), np.diag([1.2, 1.2, 3.0, 1.0]))) == 1
    assert 27 / 2 <= volume <= 27 * 2
    # The old order (interpolate the probability, then threshold at the calibrated 0.95) kept a
    # fraction of it, which a 30 mm^3 floor then deleted.
    old = (invert(mask.astype(np.float32), 1) >= 0.95).sum() * 1.2 * 1.2 * 3.0
    assert old < volume / 2 and old < 30


def test_a_lesion_thinner_than_a_reference_voxel_keeps_its_centroid_voxel():
    mask = np.zeros((16, 16, 16), bool)
    mask[9, 9, 4] = True  # one 1.5 mm voxel: no reference voxel gets half of its weight
    mask[2:5, 2:5, 2:5] = True  # a large one: carried by the half-weight rule alone
    invert = _inverter(_W2R, (20, 20, 8))
    assert (invert(mask.astype(np.float32) * (np.arange(16) > 6)[:, None, None], 1) < 0.5).all()
    carried = mask_to_reference(mask, invert, _W2R)
    assert carried[int(round(9 * 1.5 / 1.2 + 0.3)), int(round(9 * 1.5 / 1.2 - 0.2)),
                   int(round(4 * 0.5 + 0.15))]
    labels = ndimage.label(carried, structure=np.ones((3, 3, 3)))[1]
    assert labels == 2
    assert not mask_to_reference(np.zeros((16, 16, 16), bool), invert, _W2R).any()


def test_a_finding_in_the_shoulder_of_another_is_found():
    # Two EPVS 3.5 mm apart from a synthetic subject (working voxels of 1.5 mm): their nearest
    # voxels touch, so the max-combined Gaussians (sigma 2 mm) make one local maximum.
    a = np.array([8.55, 8.3, 6.87])
    b = np.array([9.93, 6.61, 7.71])
    heatmap = _gaussians((18, 16, 14), [a, b], 2.0 / 1.5)
    one, _ = find_peaks(heatmap, 0.2, spacing=(1.5,) * 3, min_distance_mm=3.0)
    assert len(one) == 1  # the default: local maxima only
    points, values = find_peaks(heatmap, 0.2, spacing=(1.5,) * 3, min_distance_mm=3.0,
                                shoulders=True)
    assert len(points) == 2
    distances = np.linalg.norm((points[:, None] - np.array([a, b])[None]) * 1.5, axis=-1)
    assert distances.min(axis=0).max() < 1.0  # each EPVS has a finding within 1 mm
    assert 0.2 <= values.min() <= values.max() <= 1.0


def test_a_blob_wider_than_a_gaussian_of_the_model_is_one_finding():
    # A network's blob 3 mm wide (sigma) and 0.6 high, and a 2.5 mm one: the shoulder search
    # models each peak with its own width, so nothing is left over.
    heatmap = np.maximum(0.6 * _gaussians((24, 24, 24), [np.array([8.3, 9.6, 10.1])], 3.0 / 1.5),
                         0.8 * _gaussians((24, 24, 24), [np.array([16.2, 15.5, 14.4])], 2.5 / 1.5))
    points, _ = find_peaks(heatmap, 0.2, spacing=(1.5,) * 3, min_distance_mm=3.0,
                           shoulders=True)
    assert len(points) == 2
    widths = peak_widths(heatmap, np.rint(points).astype(int))
    np.testing.assert_allclose(sorted(widths), [2.5 / 1.5, 3.0 / 1.5], rtol=1e-6)


def test_no_size_floor_above_the_smallest_lacune():
    assert SMALLEST_LESION_MM3["lacune"] == pytest.approx(np.pi / 6 * 27)
    assert size_floor_mm3("lacune", 30.0) == pytest.approx(14.137, abs=1e-3)
    assert size_floor_mm3("lacune", 10.0) == 10.0
    assert size_floor_mm3("rssi", 30.0) == 30.0  # RSSI: no smallest size by definition


def test_per_label_reductions_equal_scipys_on_the_whole_volume():
    from scipy import ndimage

    from csvdnet.inference.postprocess import per_label

    rng = np.random.default_rng(3)
    values = rng.normal(size=(20, 18, 16))
    labels, count = ndimage.label(rng.random((20, 18, 16)) > 0.7)
    index = np.arange(1, count + 1)
    for reduce in (ndimage.maximum, ndimage.minimum):
        np.testing.assert_array_equal(per_label(reduce, values, labels, count),
                                      reduce(values, labels, index))
    # By hand: label 2's voxels hold 5 and -1.
    labels = np.array([[0, 1, 2], [2, 0, 1]])
    values = np.array([[9.0, 3.0, 5.0], [-1.0, 7.0, 4.0]])
    assert per_label(ndimage.maximum, values, labels, 2).tolist() == [4.0, 5.0]
    assert per_label(ndimage.minimum, values, labels, 2).tolist() == [3.0, -1.0]


def _tube(shape, start, end, sigma, height):
    """A ridge of ``height``: a Gaussian cross-section of ``sigma`` (voxels) about a segment."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = end - start
    t = np.clip(np.einsum("...d,d->...", grid - start, axis) / np.dot(axis, axis), 0.0, 1.0)
    nearest = start + t[..., None] * axis
    return height * np.exp(-0.5 * np.sum((grid - nearest) ** 2, axis=-1) / sigma ** 2)


def test_peaks_along_one_ridge_are_one_finding_and_side_by_side_findings_two():
    spacing = (1.5, 1.5, 1.5)
    sigma = 2.0 / 1.5
    # An oblique EPVS drawn by a network: a ridge at 0.7 from voxel (6, 6, 8) to (11, 11, 8)
    # (10.6 mm) with two bumps on it, 0.9 and 0.8 high, 6.4 mm apart.
    a, b = np.array([7.0, 7.0, 8.0]), np.array([10.0, 10.0, 8.0])
    heatmap = np.maximum(_tube((18, 18, 16), (6, 6, 8), (11, 11, 8), sigma, 0.7),
                         np.maximum(0.9 * _gaussians((18, 18, 16), [a], sigma),
                                    0.8 * _gaussians((18, 18, 16), [b], sigma)))
    points, values = find_peaks(heatmap, 0.2, spacing=spacing, min_distance_mm=3.0)
    assert len(points) == 2  # a peak per bump
    np.testing.assert_allclose(values, [0.9, 0.8], atol=1e-6)
    # The path from the lower bump to the higher never drops below 0.7 = 0.875 x 0.8.
    assert list(on_a_ridge(heatmap, points, values, 0.8, spacing)) == [False, True]
    assert not on_a_ridge(heatmap, points, values, 0.9, spacing).any()
    assert not on_a_ridge(heatmap, points, values, 0.0, spacing).any()  # off
    # An exempt peak (in the basal ganglia, for predict) is kept whatever the ridge.
    assert not on_a_ridge(heatmap, points, values, 0.8, spacing, exempt=[False, True]).any()
    # Two findings side by side 6 mm apart (max-combined Gaussians, sigma 2 mm): on the 1.5 mm
    # grid the voxel between them holds exp(-0.5 (2 / (2 / 1.5))^2) = 0.32 of a peak, so a ridge
    # fraction of 0.5 keeps both; 0.3 calls them one.
    c = np.array([8.0, 8.0, 8.0])
    pair = _gaussians((18, 18, 16), [c, c + [4.0, 0, 0]], sigma)
    points, values = find_peaks(pair, 0.2, spacing=spacing, min_distance_mm=3.0)
    assert len(points) == 2
    assert not on_a_ridge(pair, points, values, 0.5, spacing).any()
    assert on_a_ridge(pair, points, values, 0.3, spacing).sum() == 1
    # Peaks farther apart than RIDGE_RADIUS_MM are never one finding, however flat the ridge.
    far = np.maximum(_tube((30, 12, 12), (3, 6, 6), (26, 6, 6), sigma, 0.85),
                     _gaussians((30, 12, 12), [[4, 6, 6], [25, 6, 6]], sigma))
    points, values = find_peaks(far, 0.2, spacing=spacing, min_distance_mm=3.0)
    # Both ends and the middle of the ridge's plateau, 15.75 mm from either end.
    np.testing.assert_allclose(points[:, 0], [4, 25, 14.5])
    assert 10.5 * 1.5 > RIDGE_RADIUS_MM
    assert not on_a_ridge(far, points, values, 0.5, spacing).any()
