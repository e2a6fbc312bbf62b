"""``PointScore``: the total SVD score as the sum of its four points, each read from its own head.

The Staals total is a sum of four yes / no points (a lacune, a microbleed, WMH Fazekas PV 3 or
deep >= 2, basal ganglia EPVS grade >= 2). A head that predicts the total from pooled encoder
features must learn that rule and the point thresholds at once from a few hundred whole brains;
its class probabilities stayed near uniform (issue 25). Here each point is a logistic unit on a
summary of the one dense head that sees its marker, and the distribution of the total is the
Poisson-binomial of the four point probabilities. The output keeps the CORAL contract of the score
head (``(B, 4)`` cumulative logits, ``sigmoid(z_k) = P(total > k)``, ordered by construction), so
``ordinal_decode``, the report and the SavedModel signatures read it unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

POINTS = ("lacune", "microbleed", "wmh", "epvs")
"""The Staals points, in the order of the layer's kernel rows."""

POINT_HEADS = ("lacune", "cmb", "wmh", "epvs")
"""The dense head each point reads, in ``POINTS`` order."""

SUMMARY_THRESHOLDS = (0.2, 0.5, 0.8)
"""Probabilities at which a head's voxels and local maxima are counted."""

FEATURES_PER_POINT = 1 + 2 * len(SUMMARY_THRESHOLDS)
PEAK_CLIP = 1e-4
CUMULATIVE_CLIP = 1e-6


def head_features(head: Any, thresholds: Sequence[float] = SUMMARY_THRESHOLDS) -> Any:
    """Whole-brain summary of one dense head, ``(B, 1 + 2 * len(thresholds))`` float32.

    ``logit(peak)`` (the peak clipped to ``[1e-4, 1 - 1e-4]``), then for each threshold
    ``log1p(voxels >= t)`` (extent: WMH volume) and ``log1p(local maxima >= t)`` (count:
    microbleeds, EPVS, lesions; a maximum equals the maximum of its 3x3x3 neighbourhood). The
    gradient is stopped: the heads learn from their own targets.
    """
    p = ops.stop_gradient(ops.cast(head, "float32"))
    batch = ops.shape(p)[0]
    flat = ops.reshape(p, (batch, -1))
    peak = ops.clip(ops.max(flat, axis=1), PEAK_CLIP, 1.0 - PEAK_CLIP)
    is_max = ops.reshape(
        ops.cast(p >= ops.max_pool(p, pool_size=3, strides=1, padding="same"), "float32"),
        (batch, -1))
    features = [ops.log(peak) - ops.log1p(-peak)]
    for t in thresholds:
        above = ops.cast(flat >= t, "float32")
        features += [ops.log1p(ops.sum(above, axis=1)), ops.log1p(ops.sum(above * is_max, axis=1))]
    return ops.stack(features, axis=1)


def total_distribution(point_probs: Any) -> Any:
    """``(B, P + 1)`` distribution of the number of points present (Poisson-binomial)."""
    batch = ops.shape(point_probs)[0]
    count = point_probs.shape[1]
    dist = ops.concatenate([ops.ones((batch, 1)), ops.zeros((batch, count))], axis=1)
    for i in range(count):
        q = point_probs[:, i:i + 1]
        shifted = ops.concatenate([ops.zeros((batch, 1)), dist[:, :-1]], axis=1)
        dist = dist * (1.0 - q) + shifted * q
    return dist


def cumulative_logits(dist: Any) -> Any:
    """``(B, K - 1)`` logits of ``P(total > k)`` from a ``(B, K)`` class distribution."""
    tail = ops.flip(ops.cumsum(ops.flip(dist, axis=1), axis=1), axis=1)[:, 1:]
    tail = ops.clip(tail, CUMULATIVE_CLIP, 1.0 - CUMULATIVE_CLIP)
    return ops.log(tail) - ops.log1p(-tail)


@keras.saving.register_keras_serializable(package="csvdnet")
class PointScore(keras.layers.Layer):
    """Per Staals point ``q_p = sigmoid(w_p . f(head_p) + b_p)``; output the total's cumulative logits.

    Input: the dense outputs of ``POINT_HEADS`` in that order, each ``(B, X, Y, Z, 1)``. Output:
    float32 ``(B, len(POINTS))`` cumulative logits of the total (CORAL contract).
    :meth:`point_probabilities` gives the four ``q_p``. The weights are a ``(P, F)`` kernel (one row
    per point over its own head's :func:`head_features`) and a ``(P,)`` bias; they are trained
    with the network, or fitted on frozen whole-brain summaries
    (:mod:`csvdnet.training.score_phase`).

    Args:
        kernel_initializer: Initializer of the ``(P, F)`` kernel.
        **kwargs: Base layer arguments.
    """

    def __init__(self, kernel_initializer: Any = "zeros", **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape: Sequence[tuple[int | None, ...]]) -> None:
        if len(input_shape) != len(POINTS):
            raise ValueError(f"PointScore reads {len(POINTS)} heads ({', '.join(POINT_HEADS)}), "
                             f"got {len(input_shape)}")
        self.kernel = self.add_weight(shape=(len(POINTS), FEATURES_PER_POINT),
                                      initializer=self.kernel_initializer, name="kernel")
        self.bias = self.add_weight(shape=(len(POINTS),), initializer="zeros", name="bias")

    def features(self, inputs: Sequence[Any]) -> Any:
        """``(B, P, F)``: each point's head summary."""
        return ops.stack([head_features(h) for h in inputs], axis=1)

    def point_logits(self, inputs: Sequence[Any]) -> Any:
        """``(B, P)`` logits of each point being present."""
        return ops.sum(self.features(inputs) * self.kernel[None], axis=2) + self.bias

    def point_probabilities(self, inputs: Sequence[Any]) -> Any:
        """``(B, P)`` probability of each point."""
        return ops.sigmoid(self.point_logits(inputs))

    def call(self, inputs: Sequence[Any]) -> Any:
        return cumulative_logits(total_distribution(self.point_probabilities(inputs)))

    def compute_output_shape(self, input_shape: Sequence[tuple[int | None, ...]]
                             ) -> tuple[int | None, ...]:
        return (input_shape[0][0], len(POINTS))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
