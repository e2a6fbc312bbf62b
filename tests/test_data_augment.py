"""In-graph augmentation: geometry of the spatial transform, points vs. volumes, intensity."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from _fake_cache import sphere
from csvdnet.data import augment, targets
from csvdnet.data.source import read_box


def seed(i: int) -> tf.Tensor:
    return tf.constant([7, i], tf.int64)


def params_for(angles_deg, zoom, flips, spacing=(1.0, 1.0, 1.0), resample=True):
    matrix, inverse = augment.spatial_matrices(
        tf.constant(np.radians(angles_deg), tf.float32), tf.constant(zoom, tf.float32),
        tf.constant(flips), tf.constant(spacing, tf.float32))
    return augment.SpatialParams(matrix, inverse, tf.constant(flips), tf.constant(resample))


def augment_sample(volume: np.ndarray, points: np.ndarray, origin, out_shape,
                   params: augment.SpatialParams):
    """The pipeline's geometry on a numpy volume: read the source box, warp, move the points."""
    out_shape = tf.constant(out_shape, tf.int32)
    lo, size, centre = augment.source_box(tf.constant(origin, tf.int32), out_shape, params)
    region = read_box(volume, lo.numpy(), size.numpy())
    warped = augment.warp(tf.constant(region, tf.float32), params, centre, out_shape)
    moved = augment.transform_points(tf.constant(points - lo.numpy(), tf.float32), params,
                                     centre, out_shape)
    return warped.numpy(), moved.numpy()


def test_matrices_are_inverse_and_rotation_is_rigid():
    rotation = augment.rotation_matrix(tf.constant(np.radians([10.0, -7.0, 4.0]), tf.float32))
    np.testing.assert_allclose(rotation @ tf.transpose(rotation), np.eye(3), atol=1e-6)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-6)
    params = params_for([10, -7, 4], 1.08, [True, False, True], spacing=(0.9, 1.0, 2.5))
    np.testing.assert_allclose(params.matrix @ params.inverse, np.eye(3), atol=1e-6)
    identity = params_for([0, 0, 0], 1.0, [False, True, False], spacing=(0.9, 1.0, 2.5))
    np.testing.assert_array_equal(identity.matrix, np.diag([1.0, -1.0, 1.0]))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.0, 1.0, 1.5)])
def test_rotation_and_zoom_keep_sphere_volume_and_centre_consistent(spacing):
    shape, centre, radius, zoom = (32, 32, 32), np.array([14.0, 17.0, 15.0]), 6.0, 1.1
    mask = sphere(shape, centre, radius)[..., None].astype(np.float32)
    params = params_for([10, -8, 6], zoom, [True, False, True], spacing)
    warped, moved = augment_sample(mask, centre[None], (0, 0, 0), shape, params)
    warped = warped[..., 0] > 0.5
    # The zoom magnifies lengths by `zoom`, so volumes by zoom ** 3; rotations keep them.
    assert warped.sum() == pytest.approx(mask.sum() * zoom ** 3, rel=0.1)
    centroid = np.argwhere(warped).mean(axis=0)
    np.testing.assert_allclose(centroid, moved[0], atol=0.5)


def test_region_read_is_the_whole_transform_needs():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(40, 36, 30, 2)).astype(np.float32)
    params = params_for([9, 5, -10], 0.9, [False, True, False])
    origin, out_shape = np.array([6, 3, 8]), tf.constant([20, 24, 16])
    warped, _ = augment_sample(volume, np.zeros((0, 3)), origin, out_shape, params)
    full = augment.trilinear(tf.constant(volume), params.matrix,
                             tf.constant(origin + (np.array([20, 24, 16]) - 1) / 2, tf.float32),
                             out_shape)
    np.testing.assert_allclose(warped, full.numpy(), atol=1e-5)


def test_flip_fast_path_equals_interpolation_and_moves_points_with_the_volume():
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(12, 10, 8, 3)).astype(np.float32)
    points = np.array([[2.0, 7.0, 1.0], [9.3, 0.6, 5.5]])
    flips = [True, False, True]
    fast, fast_points = augment_sample(volume, points, (0, 0, 0), (12, 10, 8),
                                       params_for([0, 0, 0], 1.0, flips, resample=False))
    slow, slow_points = augment_sample(volume, points, (0, 0, 0), (12, 10, 8),
                                       params_for([0, 0, 0], 1.0, flips, resample=True))
    np.testing.assert_array_equal(fast, volume[::-1, :, ::-1])
    np.testing.assert_allclose(slow, fast, atol=1e-6)
    np.testing.assert_allclose(fast_points, [[9.0, 7.0, 6.0], [1.7, 0.6, 1.5]], atol=1e-6)
    np.testing.assert_allclose(slow_points, fast_points, atol=1e-5)


@pytest.mark.parametrize("affine_probability", [0.0, 1.0])
def test_a_point_inside_a_mask_stays_inside_for_many_seeds(affine_probability):
    aug = augment.Augmentation(affine_probability=affine_probability)
    shape, centre = (24, 24, 24), np.array([[9.0, 14.0, 11.0]])
    mask = sphere(shape, centre[0], 3.0)[..., None].astype(np.float32)
    spacing = tf.constant([1.0, 1.0, 1.0])
    for i in range(12):
        params = augment.draw_spatial(seed(i), spacing, aug)
        assert bool(params.resample) == bool(affine_probability)
        warped, moved = augment_sample(mask, centre, (4, 6, 3), (16, 16, 16), params)
        heatmap = targets.render_heatmap(tf.constant(moved), tf.constant([16, 16, 16]),
                                         targets.sigma_voxels(2.0, spacing)).numpy()
        peaks = np.argwhere(heatmap == 1.0)
        assert len(peaks) == 1
        assert warped[tuple(peaks[0])][0] > 0.5, f"seed {i}: peak left the lesion"


def test_draw_spatial_is_a_function_of_the_seed():
    spacing = tf.constant([1.0, 1.0, 1.0])
    aug = augment.Augmentation(affine_probability=0.5)
    draws = [augment.draw_spatial(seed(i), spacing, aug) for i in range(16)]
    again = augment.draw_spatial(seed(3), spacing, aug)
    np.testing.assert_array_equal(again.matrix, draws[3].matrix)
    assert len({d.matrix.numpy().tobytes() for d in draws}) > 8
    for d in draws:
        matrix = d.matrix.numpy()
        if d.resample:  # |det| = 1 / zoom ** 3 with zoom in 1 +- 0.1
            assert 1 / 1.1 ** 3 - 1e-5 <= abs(np.linalg.det(matrix)) <= 1 / 0.9 ** 3 + 1e-5
        else:  # exactly the flips
            np.testing.assert_array_equal(matrix, np.diag(np.where(d.flips, -1.0, 1.0)))
    assert any(bool(d.resample) for d in draws) and not all(bool(d.resample) for d in draws)


def test_modality_dropout_never_blanks_every_channel():
    image = tf.ones((4, 4, 4, 3))
    for i in range(40):
        always = augment.modality_dropout(image, seed(i), 1.0).numpy()
        assert np.count_nonzero(always.reshape(-1, 3).any(axis=0)) == 1
        half = augment.modality_dropout(image, seed(i), 0.5).numpy()
        assert half.reshape(-1, 3).any(axis=0).any()
    kept = [augment.modality_dropout(image, seed(i), 0.5).numpy().reshape(-1, 3).any(axis=0)
            for i in range(40)]
    assert 0 < np.mean(kept) < 1
    single = augment.modality_dropout(tf.ones((2, 2, 2, 1)), seed(0), 1.0)
    assert np.all(single.numpy() == 1)


def test_intensity_steps():
    rng = np.random.default_rng(2)
    image = tf.constant(rng.normal(size=(12, 12, 12, 2)), tf.float32)
    off = augment.Augmentation(gamma_probability=0, noise_probability=0, bias_probability=0)
    np.testing.assert_array_equal(augment.intensity(image, seed(0), off), image)

    bias = dataclasses.replace(off, bias_probability=1.0)
    ratio = (augment.intensity(image, seed(0), bias) / image).numpy()
    limit = math.exp(9 * bias.bias_coefficient)
    assert np.all((ratio > 1 / limit) & (ratio < limit)) and np.ptp(ratio) > 0.01
    assert np.abs(np.diff(ratio, 2, axis=0)).max() < 0.05  # smooth: near-linear locally

    gamma = dataclasses.replace(off, gamma_probability=1.0)
    changed = augment.intensity(image, seed(0), gamma).numpy()
    np.testing.assert_allclose(changed.min(axis=(0, 1, 2)), image.numpy().min(axis=(0, 1, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(changed.max(axis=(0, 1, 2)), image.numpy().max(axis=(0, 1, 2)),
                               atol=1e-5)
    assert not np.allclose(changed, image)

    noise = dataclasses.replace(off, noise_probability=1.0)
    added = augment.intensity(image, seed(0), noise).numpy() - image.numpy()
    assert 0 < added.std() <= noise.noise_std * 1.1
    np.testing.assert_array_equal(augment.intensity(image, seed(0), noise) - image, added)
