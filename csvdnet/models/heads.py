"""Task heads: 1x1x1 sigmoid heads for the dense tasks, a CORAL head for the total SVD score.

Every head computes in float32 (its layers carry ``dtype="float32"``, so inputs are cast on entry):
under a mixed-precision policy the logits, sigmoids and the ordinal projection stay float32, which
keeps small probabilities (the 1e-2 to 1e-4 range of a sparse heatmap) and the losses accurate.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras

from csvdnet.models.coral_head import CoralHead
from csvdnet.models.head_summary import HeadSummary

HEAD_PRIOR = 0.01
"""Initial foreground probability of every dense head (RetinaNet / CenterNet bias prior).

All five dense targets are sparse (lesion and peak voxels are well under 1 % of a brain patch);
starting the sigmoid at 0.01 instead of 0.5 stops the flood of easy background voxels from
dominating the first steps, which otherwise produces large, unstable focal / Dice gradients.
"""


def small_kernel_initializer() -> keras.initializers.Initializer:
    """N(0, 0.01) weights for the last layer of a head (RetinaNet).

    With default-scale weights the logits of unit-variance features spread over several units, so
    many voxels start near p = 1 whatever the bias and the prior is lost (a 4-filter model's initial
    CenterNet loss was ~120 instead of ~5); small weights make the bias set the starting output.
    """
    return keras.initializers.RandomNormal(stddev=0.01)


def dense_head(features: keras.KerasTensor, task: str,
               prior: float = HEAD_PRIOR) -> keras.KerasTensor:
    """1x1x1 convolution + sigmoid, ``(B, X, Y, Z, 1)`` float32, output named ``task``.

    Args:
        features: Full-resolution decoder features.
        task: Task name (names the output and its layers).
        prior: Initial foreground probability; the bias starts at ``log(prior / (1 - prior))``.
    """
    bias = keras.initializers.Constant(math.log(prior / (1.0 - prior)))
    logits = keras.layers.Conv3D(1, 1, kernel_initializer=small_kernel_initializer(),
                                 bias_initializer=bias, dtype="float32",
                                 name=f"{task}_logits")(features)
    return keras.layers.Activation("sigmoid", dtype="float32", name=task)(logits)


def score_head(deepest: keras.KerasTensor, num_classes: int, dropout: float,
               name: str = "score",
               dense: Sequence[keras.KerasTensor] = ()) -> keras.KerasTensor:
    """CORAL logits ``(B, K - 1)`` float32 from globally pooled features.

    Global average pool of the deepest features and dropout; with ``dense`` heads given, their
    :class:`~csvdnet.models.head_summary.HeadSummary` (peak, extent, count per head, gradient
    stopped) is concatenated before the shared CORAL projection.

    Args:
        deepest: Deepest encoder features.
        num_classes: Ordinal classes K.
        dropout: Dropout rate on the pooled encoder features.
        name: Output name.
        dense: Dense head outputs the score head also reads (none: encoder features only).
    """
    x = keras.layers.GlobalAveragePooling3D(dtype="float32", name=f"{name}_pool")(deepest)
    x = keras.layers.Dropout(dropout, dtype="float32", name=f"{name}_dropout")(x)
    if dense:
        summary = HeadSummary(name=f"{name}_head_summary")(list(dense))
        x = keras.layers.Concatenate(dtype="float32", name=f"{name}_features")([x, summary])
    return CoralHead(num_classes, kernel_initializer=small_kernel_initializer(), dtype="float32",
                     name=name)(x)
