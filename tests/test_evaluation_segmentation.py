"""WMH-challenge segmentation metrics: hand-computed cases, and agreement with the challenge's
own evaluation.py re-written here from its published source (SimpleITK), on random masks."""

import math

import numpy as np
import pytest
import scipy.spatial
import SimpleITK as sitk
from scipy import ndimage

from csvdnet.evaluation.segmentation import (absolute_volume_difference, boundary,
                                             challenge_masks, hausdorff95, segmentation_metrics)


def _mask(shape=(8, 8, 5), *voxels):
    mask = np.zeros(shape, bool)
    for v in voxels:
        mask[v] = True
    return mask


# ---- hand-computed cases -------------------------------------------------------------------

def test_single_voxels():
    one = _mask((8, 8, 5), (2, 2, 2))
    m = segmentation_metrics(one, one)
    assert (m.dice, m.hd95_mm, m.avd_pct) == (1.0, 0.0, 0.0)
    assert (m.lesions.recall, m.lesions.precision, m.lesions.f1) == (1.0, 1.0, 1.0)
    # Two voxels along the slice axis of a 1 x 1 x 3 mm grid: 3 mm apart, no overlap.
    other = _mask((8, 8, 5), (2, 2, 3))
    m = segmentation_metrics(one, other, (1.0, 1.0, 3.0))
    assert m.hd95_mm == pytest.approx(3.0)
    assert m.dice == 0.0 and m.avd_pct == 0.0
    assert (m.lesions.recall, m.lesions.precision, m.lesions.f1) == (0.0, 0.0, 0.0)
    assert m.volume_true_ml == pytest.approx(0.003)


def test_empty_cases_as_documented():
    empty, one = _mask(), _mask((8, 8, 5), (2, 2, 2))
    both = segmentation_metrics(empty, empty)
    assert both.dice == 1.0 and math.isnan(both.hd95_mm) and both.avd_pct == 0.0
    assert (both.lesions.recall, both.lesions.precision, both.lesions.f1) == (1.0, 1.0, 1.0)
    no_pred = segmentation_metrics(one, empty)
    assert no_pred.dice == 0.0 and math.isnan(no_pred.hd95_mm) and no_pred.avd_pct == 100.0
    assert (no_pred.lesions.recall, no_pred.lesions.precision) == (0.0, 1.0)
    no_ref = segmentation_metrics(empty, one)
    assert no_ref.dice == 0.0 and math.isnan(no_ref.hd95_mm) and math.isnan(no_ref.avd_pct)
    assert (no_ref.lesions.recall, no_ref.lesions.precision) == (1.0, 0.0)


def test_avd_and_lesions_by_hand():
    reference = _mask((10, 10, 3), (1, 1, 1), (1, 2, 1), (1, 3, 1), (1, 4, 1), (7, 7, 1))
    # Hits the first lesion with 2 voxels, misses the second, adds a lone false component.
    prediction = _mask((10, 10, 3), (1, 1, 1), (1, 2, 1), (4, 8, 1))
    assert absolute_volume_difference(reference, prediction) == pytest.approx(40.0)
    m = segmentation_metrics(reference, prediction)
    assert m.dice == pytest.approx(2 * 2 / 8)
    assert (m.lesions.true, m.lesions.detected, m.lesions.predicted, m.lesions.hits) == (2, 1, 2, 1)
    assert m.lesions.f1 == pytest.approx(0.5)


def test_boundary_is_in_plane_and_image_edge_counts_as_inside():
    block = np.zeros((7, 7, 5), bool)
    block[1:6, 1:6, 1:4] = True  # 5 x 5 x 3
    edge = boundary(block)
    # Every slice keeps its 16-voxel ring: nothing is eroded across slices.
    assert edge.sum() == 3 * 16
    assert not edge[3, 3, 2]
    full = np.ones((4, 4, 2), bool)
    assert boundary(full).sum() == 0  # ITK BinaryErode: BoundaryToForeground


def test_hd95_directed_percentiles_by_hand():
    # Reference: 20 voxels in a row (slice-wise boundary = all of them); prediction: the first.
    reference = np.zeros((30, 3, 1), bool)
    reference[0:20, 1, 0] = True
    prediction = np.zeros_like(reference)
    prediction[0, 1, 0] = True
    # d(R -> P) = 0..19 mm: 95th percentile (linear) = 18.05; d(P -> R) = 0.
    assert hausdorff95(reference, prediction, (1.0, 1.0, 1.0)) == pytest.approx(18.05)
    assert hausdorff95(prediction, reference, (2.0, 1.0, 1.0)) == pytest.approx(36.1)


def test_label_two_is_excluded_and_probabilities_count_from_half():
    reference = np.array([[[1, 2, 0, 1]]])
    probabilities = np.array([[[0.5, 0.9, 0.9, 0.49]]], np.float32)
    ref, pred = challenge_masks(reference, probabilities)
    assert ref.tolist() == [[[True, False, False, True]]]
    assert pred.tolist() == [[[True, False, True, False]]]
    _, integer = challenge_masks(reference, np.array([[[1, 1, 0, 3]]], np.uint8))
    assert integer.tolist() == [[[True, False, False, True]]]


# ---- the challenge's evaluation.py, written from its published source ----------------------

def _sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((affine[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    return image


def _challenge_get_images(test_image, result_image):
    result_image.CopyInformation(test_image)
    masked_test = sitk.BinaryThreshold(test_image, 0.5, 1.5, 1, 0)  # WMH == 1
    non_wmh = sitk.BinaryThreshold(test_image, 1.5, 2.5, 0, 1)  # non-WMH == 2
    masked_result = sitk.Mask(result_image, non_wmh)
    if "integer" in masked_result.GetPixelIDTypeAsString():
        b_result = sitk.BinaryThreshold(masked_result, 1, 1000, 1, 0)
    else:
        b_result = sitk.BinaryThreshold(masked_result, 0.5, 1000, 1, 0)
    return masked_test, b_result


def _challenge_dsc(test_image, result_image):
    test_array = sitk.GetArrayFromImage(test_image).flatten()
    result_array = sitk.GetArrayFromImage(result_image).flatten()
    return 1.0 - scipy.spatial.distance.dice(test_array, result_array)


def _challenge_hausdorff(test_image, result_image):
    stats = sitk.StatisticsImageFilter()
    stats.Execute(result_image)
    if stats.GetSum() == 0:
        return float("nan")
    e_test = sitk.BinaryErode(test_image, (1, 1, 0))
    e_result = sitk.BinaryErode(result_image, (1, 1, 0))
    h_test = sitk.GetArrayFromImage(sitk.Subtract(test_image, e_test))
    h_result = sitk.GetArrayFromImage(sitk.Subtract(result_image, e_result))
    test_coords = [test_image.TransformIndexToPhysicalPoint(x.tolist())
                   for x in np.transpose(np.flipud(np.nonzero(h_test)))]
    result_coords = [test_image.TransformIndexToPhysicalPoint(x.tolist())
                     for x in np.transpose(np.flipud(np.nonzero(h_result)))]

    def distances(a, b):
        return scipy.spatial.KDTree(a, leafsize=100).query(b, k=1, eps=0, p=2)[0]

    return max(np.percentile(distances(test_coords, result_coords), 95),
               np.percentile(distances(result_coords, test_coords), 95))


def _challenge_lesion_detection(test_image, result_image):
    cc = sitk.ConnectedComponentImageFilter()
    cc.SetFullyConnected(True)
    cc_test = cc.Execute(test_image)
    l_result = sitk.Multiply(cc_test, sitk.Cast(result_image, sitk.sitkUInt32))
    n_wmh = len(np.unique(sitk.GetArrayFromImage(cc_test))) - 1
    recall = 1.0 if n_wmh == 0 else (len(np.unique(sitk.GetArrayFromImage(l_result))) - 1) / n_wmh
    cc_result = cc.Execute(result_image)
    l_test = sitk.Multiply(cc_result, sitk.Cast(test_image, sitk.sitkUInt32))
    n_det = len(np.unique(sitk.GetArrayFromImage(cc_result))) - 1
    precision = 1.0 if n_det == 0 else (len(np.unique(sitk.GetArrayFromImage(l_test))) - 1) / n_det
    f1 = 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)
    return recall, f1


def _challenge_avd(test_image, result_image):
    test_stats, result_stats = sitk.StatisticsImageFilter(), sitk.StatisticsImageFilter()
    test_stats.Execute(test_image)
    result_stats.Execute(result_image)
    return abs(test_stats.GetSum() - result_stats.GetSum()) / test_stats.GetSum() * 100


def _random_case(seed):
    rng = np.random.default_rng(seed)
    shape = (24, 20, 7)
    blobs = ndimage.gaussian_filter(rng.normal(size=shape), (1.5, 1.5, 0.7))
    reference = (blobs > 0.15).astype(np.uint8)
    reference[(blobs > 0.08) & (blobs <= 0.15) & (rng.random(shape) < 0.5)] = 2
    noisy = ndimage.gaussian_filter(blobs + rng.normal(0, 0.12, shape), 0.8)
    probabilities = (1 / (1 + np.exp(-(noisy - 0.1) * 40))).astype(np.float32)
    angle = rng.uniform(-0.4, 0.4)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(rng.uniform([0.8, 0.8, 2.5], [1.2, 1.2, 4.0]))
    affine[:3, 3] = rng.uniform(-50, 50, 3)
    return reference, probabilities, affine


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("integer", [False, True])
def test_agrees_with_the_challenge_evaluation(seed, integer):
    reference, probabilities, affine = _random_case(seed)
    prediction = (probabilities >= 0.5).astype(np.uint8) if integer else probabilities
    # The challenge's reference images are floating point: its thresholds 0.5 / 1.5 / 2.5 would
    # truncate to 0 / 1 / 2 on an integer image.
    test_image, result_image = _challenge_get_images(
        _sitk(reference.astype(np.float32), affine), _sitk(prediction, affine))
    ours = segmentation_metrics(reference, prediction, affine)
    assert abs(ours.dice - _challenge_dsc(test_image, result_image)) < 1e-6
    assert abs(ours.hd95_mm - _challenge_hausdorff(test_image, result_image)) < 1e-6
    assert abs(ours.avd_pct - _challenge_avd(test_image, result_image)) < 1e-6
    recall, f1 = _challenge_lesion_detection(test_image, result_image)
    assert abs(ours.lesions.recall - recall) < 1e-6
    assert abs(ours.lesions.f1 - f1) < 1e-6
    assert ours.lesions.true > 1 and ours.lesions.predicted > 1  # a non-trivial case
