"""``HeadSummary``: what the dense heads found in a whole brain, as features for the score head."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

FEATURES_PER_HEAD = 3


@keras.saving.register_keras_serializable(package="csvdnet")
class HeadSummary(keras.layers.Layer):
    """Per dense head: peak probability, log1p(voxels above threshold), log1p(local maxima above).

    The total SVD score is a rule over the markers (Staals et al. 2014): a lacune present, a
    microbleed present, more than 10 basal-ganglia EPVS, confluent or extensive WMH. Global
    average pooling of the deepest encoder features dilutes a single 3 mm lacune or microbleed in
    a whole brain; these summaries carry exactly the presence (peak probability), extent (voxels
    over ``threshold``: WMH volume) and count (local maxima over ``threshold``: microbleeds, EPVS,
    lesions) the rule reads. The counts are on a log scale, so one lesion and a hundred voxels of
    WMH are features of order 1, which the score head's small projection can use within the few
    hundred whole-brain steps a short run has.

    The gradient is stopped: the score loss does not reach the dense heads through these
    features (the heads learn from their own targets; the score head learns to read them).

    Input: a list of dense head outputs ``(B, X, Y, Z, 1)`` in [0, 1]. Output: float32
    ``(B, FEATURES_PER_HEAD * len(inputs))``, head by head in input order.

    Args:
        threshold: Probability at or above which a voxel counts as found.
        **kwargs: Base layer arguments.
    """

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold

    def call(self, inputs: Sequence[Any]) -> Any:
        features = []
        for head in inputs:
            p = ops.stop_gradient(ops.cast(head, "float32"))
            batch = ops.shape(p)[0]
            above = ops.cast(p >= self.threshold, "float32")
            # A local maximum equals the maximum of its 3x3x3 neighbourhood (plateaus count
            # every voxel; the probabilities of a trained head rarely tie).
            neighbourhood = ops.max_pool(p, pool_size=3, strides=1, padding="same")
            maxima = above * ops.cast(p >= neighbourhood, "float32")
            features += [ops.max(ops.reshape(p, (batch, -1)), axis=1),
                         ops.log1p(ops.sum(ops.reshape(above, (batch, -1)), axis=1)),
                         ops.log1p(ops.sum(ops.reshape(maxima, (batch, -1)), axis=1))]
        return ops.stack(features, axis=1)

    def compute_output_shape(self, input_shape: Sequence[tuple[int | None, ...]]
                             ) -> tuple[int | None, ...]:
        return (input_shape[0][0], FEATURES_PER_HEAD * len(input_shape))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": self.threshold}
