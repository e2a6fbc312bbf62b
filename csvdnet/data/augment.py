"""In-graph data augmentation with stateless random ops.

Every random draw takes an explicit ``seed`` (an int ``(2,)`` tensor, see
:func:`tf.random.experimental.stateless_split`), so a sample's augmentation is a pure function of
its seed: the pipeline is reproducible and can resume at any position without replaying.

Spatial augmentation is one affine map per sample, from output voxel ``p`` to source voxel
``q = centre + M (p - c_out)`` with ``c_out`` the output centre and
``M = D^-1 R D F / s`` (``D`` the voxel size, so rotations are rigid in mm even on anisotropic
grids; ``R`` a rotation, ``F`` the flips, ``s`` an isotropic zoom). Images are resampled
trilinearly and masks linearly then thresholded at 0.5, in TF ops (gathers on the flattened
volume). Points are mapped by the inverse map, so heatmaps are rendered *after* the transform
from the transformed points and their peaks stay exactly 1 on the lesion. Rotation and zoom
are drawn together with probability ``affine_probability``; otherwise the map is a pure flip,
done exactly and cheaply with ``tf.reverse`` instead of interpolation.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import NamedTuple

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of the augmentations (defaults after nnU-Net, milder).

    Attributes:
        flip_probability: Probability of flipping along each axis, independently.
        affine_probability: Probability of a rotation + zoom (else only flips).
        rotation_deg: Rotation about each axis, uniform in ``±rotation_deg``.
        scale: Isotropic zoom factor, uniform in ``1 ± scale``.
        gamma_probability: Probability of a gamma change (per sample; gamma per channel).
        gamma_range: Gamma range, drawn log-uniformly.
        noise_probability: Probability of additive Gaussian noise.
        noise_std: Noise standard deviation, uniform in ``[0, noise_std]`` (images are z-scored).
        bias_probability: Probability of a smooth multiplicative bias field.
        bias_coefficient: Range of the coefficients of the quadratic log bias field.
    """

    flip_probability: float = 0.5
    affine_probability: float = 0.3
    rotation_deg: float = 10.0
    scale: float = 0.1
    gamma_probability: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise_probability: float = 0.15
    noise_std: float = 0.1
    bias_probability: float = 0.3
    bias_coefficient: float = 0.15


class SpatialParams(NamedTuple):
    """One sample's spatial transform.

    Attributes:
        matrix: float32 ``(3, 3)`` map ``M`` from output voxel offsets to source voxel offsets.
        inverse: float32 ``(3, 3)`` ``M^-1``, for points.
        flips: bool ``(3,)`` axes flipped.
        resample: bool scalar: ``M`` includes a rotation / zoom, so volumes need interpolation
            (otherwise ``M`` is exactly the flips).
    """

    matrix: tf.Tensor
    inverse: tf.Tensor
    flips: tf.Tensor
    resample: tf.Tensor


def identity_params() -> SpatialParams:
    """The transform that leaves a sample as it is."""
    return SpatialParams(tf.eye(3), tf.eye(3), tf.zeros(3, tf.bool), tf.constant(False))


def rotation_matrix(angles: tf.Tensor) -> tf.Tensor:
    """Rotation ``Rz @ Ry @ Rx`` from angles (radians) about the x, y and z axes.

    Args:
        angles: float32 ``(3,)``.

    Returns:
        float32 ``(3, 3)``; exactly the identity for zero angles.
    """
    c, s = tf.unstack(tf.cos(angles)), tf.unstack(tf.sin(angles))
    one, zero = tf.ones(()), tf.zeros(())
    rx = tf.stack([[one, zero, zero], [zero, c[0], -s[0]], [zero, s[0], c[0]]])
    ry = tf.stack([[c[1], zero, s[1]], [zero, one, zero], [-s[1], zero, c[1]]])
    rz = tf.stack([[c[2], -s[2], zero], [s[2], c[2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def spatial_matrices(angles: tf.Tensor, zoom: tf.Tensor, flips: tf.Tensor,
                     spacing: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Voxel-space map ``M = D^-1 R D F / zoom`` and its inverse, built in closed form.

    Args:
        angles: float32 ``(3,)`` rotation angles in radians.
        zoom: float32 scalar; > 1 magnifies (the output covers a smaller source region).
        flips: bool ``(3,)``.
        spacing: float32 ``(3,)`` voxel size in mm (``D``).

    Returns:
        ``(M, M^-1)``, float32 ``(3, 3)`` each. For zero angles and unit zoom ``M`` is exactly
        the flip matrix (``d_i / d_i`` is exactly 1 in floating point).
    """
    rotation = rotation_matrix(angles)
    spacing = tf.cast(spacing, tf.float32)
    sign = tf.where(flips, -1.0, 1.0)
    ratio = spacing[None, :] / spacing[:, None]  # (D^-1 R D)_ij = R_ij d_j / d_i
    matrix = rotation * ratio * sign[None, :] / zoom
    inverse = tf.transpose(rotation) * ratio * sign[:, None] * zoom
    return matrix, inverse


def draw_spatial(seed: tf.Tensor, spacing: tf.Tensor, aug: Augmentation) -> SpatialParams:
    """Draw flips and, with ``aug.affine_probability``, a rotation + zoom.

    Args:
        seed: int ``(2,)`` stateless seed.
        spacing: float32 ``(3,)`` voxel size in mm.
        aug: Ranges and probabilities.

    Returns:
        The sample's :class:`SpatialParams`.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    flips = tf.random.stateless_uniform([3], seeds[0]) < aug.flip_probability
    affine = tf.random.stateless_uniform([], seeds[1]) < aug.affine_probability
    on = tf.cast(affine, tf.float32)
    max_angle = math.radians(aug.rotation_deg)
    angles = on * tf.random.stateless_uniform([3], seeds[2], -max_angle, max_angle)
    zoom = 1.0 + on * tf.random.stateless_uniform([], seeds[3], -aug.scale, aug.scale)
    matrix, inverse = spatial_matrices(angles, zoom, flips, spacing)
    return SpatialParams(matrix, inverse, flips, affine)


def source_box(origin: tf.Tensor, out_shape: tf.Tensor,
               params: SpatialParams) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The source region an output patch is resampled from.

    The patch is the box ``[origin, origin + out_shape)`` of the source, transformed about its
    centre. Only this region is read from disk.

    Args:
        origin: int32 ``(3,)`` source voxel of the untransformed patch's first voxel.
        out_shape: int32 ``(3,)`` patch shape.
        params: The sample's transform.

    Returns:
        ``(lo, size, centre)``: int32 ``(3,)`` first voxel and shape of the region to read,
        and float32 ``(3,)`` the patch centre in that region's coordinates. Without
        resampling the region is exactly the patch (flips need no margin).
    """
    half = (tf.cast(out_shape, tf.float32) - 1.0) / 2.0
    centre = tf.cast(origin, tf.float32) + half
    extent = tf.linalg.matvec(tf.abs(params.matrix), half)
    # +1: trilinear interpolation reads the voxel after floor(q).
    lo = tf.cast(tf.floor(centre - extent), tf.int32)
    hi = tf.cast(tf.math.ceil(centre + extent), tf.int32) + 1
    lo = tf.where(params.resample, lo, tf.cast(origin, tf.int32))
    size = tf.where(params.resample, hi - lo, tf.cast(out_shape, tf.int32))
    return lo, size, centre - tf.cast(lo, tf.float32)


def output_grid(out_shape: tf.Tensor) -> tf.Tensor:
    """Voxel offsets from the centre of a volume of ``out_shape``, float32 ``(P, 3)``."""
    axes = [tf.range(out_shape[a], dtype=tf.float32) - (tf.cast(out_shape[a], tf.float32) - 1) / 2
            for a in range(3)]
    return tf.reshape(tf.stack(tf.meshgrid(*axes, indexing="ij"), axis=-1), (-1, 3))


def trilinear(volume: tf.Tensor, matrix: tf.Tensor, centre: tf.Tensor,
              out_shape: tf.Tensor) -> tf.Tensor:
    """Sample ``volume`` trilinearly at ``centre + matrix @ (p - c_out)`` for each output voxel.

    Outside the volume the value is 0 (the zero padding of the pipeline), fading linearly
    over the last voxel.

    Args:
        volume: float32 ``(X, Y, Z, K)``.
        matrix: float32 ``(3, 3)``.
        centre: float32 ``(3,)`` source position of the output centre.
        out_shape: int32 ``(3,)``.

    Returns:
        float32 ``(*out_shape, K)``.
    """
    channels = tf.shape(volume)[-1]
    size = tf.cast(tf.shape(volume)[:3], tf.float32)
    q = tf.linalg.matmul(output_grid(out_shape), matrix, transpose_b=True) + centre
    # A zero border (1 voxel before, 2 after) and q clipped to [-1, size] put every corner of
    # an outside position on zeros, so one clip replaces per-corner bounds checks.
    q = tf.clip_by_value(q, -1.0, size)
    q0 = tf.floor(q)
    frac = q - q0
    padded = tf.pad(volume, [[1, 2], [1, 2], [1, 2], [0, 0]])
    dims = tf.shape(padded)[:3]
    flat = tf.reshape(padded, (-1, channels))
    base = tf.cast(q0, tf.int32) + 1
    first = (base[:, 0] * dims[1] + base[:, 1]) * dims[2] + base[:, 2]
    strides = tf.stack([dims[1] * dims[2], dims[2], 1])
    factors = tf.stack([1.0 - frac, frac])  # (2, P, 3): per-axis weight of corner 0 / 1
    out = tf.zeros((tf.shape(q)[0], channels), tf.float32)
    for offset in itertools.product((0, 1), repeat=3):
        weight = factors[offset[0], :, 0] * factors[offset[1], :, 1] * factors[offset[2], :, 2]
        step = tf.reduce_sum(tf.constant(offset, tf.int32) * strides)
        out += weight[:, None] * tf.gather(flat, first + step)
    return tf.reshape(out, tf.concat([out_shape, [channels]], axis=0))


def warp(volume: tf.Tensor, params: SpatialParams, centre: tf.Tensor,
         out_shape: tf.Tensor) -> tf.Tensor:
    """Apply the spatial transform to a region read with :func:`source_box`.

    Args:
        volume: float32 ``(x, y, z, K)``, the region of ``source_box``.
        params: The sample's transform.
        centre: The patch centre in the region (third output of ``source_box``).
        out_shape: int32 ``(3,)`` patch shape.

    Returns:
        float32 ``(*out_shape, K)``.
    """
    return tf.cond(params.resample,
                   lambda: trilinear(volume, params.matrix, centre, out_shape),
                   lambda: tf.reverse(volume, tf.where(params.flips)[:, 0]))


def transform_points(points: tf.Tensor, params: SpatialParams, centre: tf.Tensor,
                     out_shape: tf.Tensor) -> tf.Tensor:
    """Map source points (region coordinates) into the output patch: the inverse of ``warp``.

    Args:
        points: float32 ``(N, 3)`` voxel coordinates in the region of ``source_box``.
        params: The sample's transform.
        centre: The patch centre in the region.
        out_shape: int32 ``(3,)`` patch shape.

    Returns:
        float32 ``(N, 3)`` voxel coordinates in the output patch.
    """
    half = (tf.cast(out_shape, tf.float32) - 1.0) / 2.0
    return tf.linalg.matmul(points - centre, params.inverse, transpose_b=True) + half


def _bias_basis(shape: tf.Tensor) -> tf.Tensor:
    """The 9 non-constant monomials of degree <= 2 in [-1, 1] coordinates, ``(*shape, 9)``."""
    coords = [tf.linspace(-1.0, 1.0, shape[a]) for a in range(3)]
    x, y, z = tf.meshgrid(*coords, indexing="ij")
    return tf.stack([x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], axis=-1)


def _gamma(image: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    # Gamma needs non-negative input: rescale each channel to [0, 1] and back (as nnU-Net).
    low, high = (math.log(g) for g in aug.gamma_range)
    gamma = tf.exp(tf.random.stateless_uniform(tf.shape(image)[-1:], seed, low, high))
    lo = tf.reduce_min(image, axis=(0, 1, 2))
    span = tf.maximum(tf.reduce_max(image, axis=(0, 1, 2)) - lo, 1e-6)
    return tf.pow((image - lo) / span, gamma) * span + lo


def _noise(image: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    seeds = tf.random.experimental.stateless_split(seed, 2)
    std = tf.random.stateless_uniform([], seeds[0], 0.0, aug.noise_std)
    return image + std * tf.random.stateless_normal(tf.shape(image), seeds[1])


def _bias(image: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    # A quadratic log field is smooth over the whole patch, like a receive-coil bias.
    coefficients = tf.random.stateless_uniform(
        tf.stack([9, tf.shape(image)[-1]]), seed, -aug.bias_coefficient, aug.bias_coefficient)
    return image * tf.exp(tf.tensordot(_bias_basis(tf.shape(image)[:3]), coefficients, 1))


def intensity(image: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Bias field, gamma and Gaussian noise, each with its own probability.

    Args:
        image: float32 ``(X, Y, Z, C)``.
        seed: int ``(2,)`` stateless seed.
        aug: Ranges and probabilities.

    Returns:
        The augmented image, same shape.
    """
    steps = ((_bias, aug.bias_probability), (_gamma, aug.gamma_probability),
             (_noise, aug.noise_probability))
    seeds = tf.random.experimental.stateless_split(seed, 2 * len(steps))
    for i, (step, probability) in enumerate(steps):
        apply = tf.random.stateless_uniform([], seeds[2 * i]) < probability
        # tf.cond (not tf.where) so that a skipped step costs nothing.
        image = tf.cond(apply, lambda: step(image, seeds[2 * i + 1], aug), lambda: image)
    return image


def dropped_channels(channels: int | tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Which channels modality dropout blanks: each with ``probability``, never all of them.

    When every channel is drawn for dropping, the one with the largest draw is kept, which is
    a uniformly random channel.

    Args:
        channels: Number of channels.
        seed: int ``(2,)`` stateless seed.
        probability: Per-channel dropout probability.

    Returns:
        bool ``(channels,)``: True where the channel is blanked.
    """
    draws = tf.random.stateless_uniform([channels], seed)
    drop = draws < probability
    survivor = tf.one_hot(tf.argmax(draws), channels, on_value=True, off_value=False)
    return drop & ~(tf.reduce_all(drop) & survivor)


def modality_dropout(image: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Blank each channel with ``probability``, never all channels (:func:`dropped_channels`).

    Args:
        image: float32 ``(X, Y, Z, C)``.
        seed: int ``(2,)`` stateless seed.
        probability: Per-channel dropout probability.

    Returns:
        The image with dropped channels set to 0.
    """
    drop = dropped_channels(tf.shape(image)[-1], seed, probability)
    return image * tf.cast(~drop, image.dtype)
