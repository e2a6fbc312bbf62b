"""Training targets: segmentation masks, detection heatmaps and ordinal score levels.

Heatmaps follow the CenterNet convention: each point puts an (unnormalised) Gaussian on the
voxel nearest to it, so that voxel is exactly 1.0 and the positives of the heatmap loss are
the voxels equal to 1; overlapping Gaussians are combined by maximum, never summed (a sum
would create false peaks between close points). Sigma is given in mm and converted per axis
with the working spacing, so an anisotropic grid gets an anisotropic Gaussian of the same
physical width. Each Gaussian is truncated to a box of ``TRUNCATE_SIGMAS`` sigmas, beyond
which it is below 1.2 % of its peak; this keeps rendering proportional to the number of points
rather than to the volume.
"""

from __future__ import annotations

import tensorflow as tf

TRUNCATE_SIGMAS = 3.0


def sigma_voxels(sigma_mm: float | tf.Tensor, spacing: tf.Tensor) -> tf.Tensor:
    """Per-axis Gaussian sigma in voxels.

    Args:
        sigma_mm: Physical sigma in mm.
        spacing: Voxel size in mm, shape ``(3,)``.

    Returns:
        float32 ``(3,)`` sigma in voxels along each axis.
    """
    return tf.cast(sigma_mm, tf.float32) / tf.cast(spacing, tf.float32)


def nearest_voxel(points: tf.Tensor) -> tf.Tensor:
    """Index of the voxel nearest to each point (halves round up, unlike ``tf.round``).

    Args:
        points: float ``(N, 3)`` voxel coordinates.

    Returns:
        int32 ``(N, 3)`` voxel indices (possibly outside any volume).
    """
    return tf.cast(tf.floor(tf.cast(points, tf.float32) + 0.5), tf.int32)


def render_heatmap(points: tf.Tensor, shape: tf.Tensor, sigma: tf.Tensor,
                   subvoxel: bool = False) -> tf.Tensor:
    """Max-combined Gaussian heatmap with value exactly 1.0 at each point's nearest voxel.

    Points outside the volume still contribute the part of their Gaussian that falls inside
    (a lesion just outside a patch borders it), but no peak.

    Args:
        points: float ``(N, 3)`` voxel coordinates in the output grid; ``N`` may be 0.
        shape: int ``(3,)`` output volume shape.
        sigma: float32 ``(3,)`` Gaussian sigma in voxels per axis (see :func:`sigma_voxels`).
        subvoxel: Centre each Gaussian on the point itself rather than on its nearest voxel:
            the peak voxel is then below 1.0 (by at most ``exp(-0.5 |0.5 / sigma|^2)``), and
            the heatmap keeps the sub-voxel position that
            :func:`csvdnet.inference.postprocess.find_peaks` recovers. Training keeps the
            default (its heatmap loss takes the voxels equal to 1 as the positives); the
            rating-layer oracle (:mod:`csvdnet.inference.oracle`) draws what an ideal network
            would output.

    Returns:
        float32 heatmap of shape ``shape``.
    """
    shape = tf.cast(shape, tf.int32)
    sigma = tf.cast(sigma, tf.float32)
    radius = tf.cast(tf.math.ceil(TRUNCATE_SIGMAS * sigma), tf.int32)
    axes = [tf.range(-radius[a], radius[a] + 1) for a in range(3)]
    offsets = tf.reshape(tf.stack(tf.meshgrid(*axes, indexing="ij"), axis=-1), (-1, 3))
    nearest = nearest_voxel(points)
    indices = nearest[:, None, :] + offsets[None, :, :]
    inside = tf.reduce_all((indices >= 0) & (indices < shape), axis=-1)
    if subvoxel:
        delta = (tf.cast(indices, tf.float32)
                 - tf.reshape(tf.cast(points, tf.float32), (-1, 1, 3)))
        values = tf.exp(-0.5 * tf.reduce_sum(tf.square(delta / sigma), axis=-1))
    else:
        # Centred on the nearest voxel, not on the sub-voxel point, so that the peak voxel is
        # exactly exp(0) = 1 and is the one positive of this point.
        values = tf.exp(-0.5 * tf.reduce_sum(tf.square(tf.cast(offsets, tf.float32) / sigma),
                                             axis=-1))
        values = tf.broadcast_to(values[None, :], tf.shape(inside))
    return tf.tensor_scatter_nd_max(tf.zeros(shape, tf.float32),
                                    tf.boolean_mask(indices, inside),
                                    tf.boolean_mask(values, inside))


def ordinal_targets(score: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Cumulative (CORAL) targets of an ordinal score: level ``k`` is ``score > k``.

    Args:
        score: Score(s) in ``0 .. num_classes - 1``, any shape (a scalar per sample in the
            pipeline); a missing score (NaN) gives zeros, placeholders to be masked by the
            score's label mask.
        num_classes: Number of ordinal classes ``K`` (5 for the total SVD score 0-4).

    Returns:
        float32 of shape ``score.shape + (K - 1,)``, e.g. score 2 of K = 5 -> ``[1, 1, 0, 0]``.
    """
    levels = tf.range(num_classes - 1, dtype=tf.float32)
    return tf.cast(tf.cast(score, tf.float32)[..., None] > levels, tf.float32)
