"""``CoralHead``: rank-consistent ordinal logits (CORAL, Cao et al. 2020), and their decoding.

:func:`ordinal_decode` is the TensorFlow decoding; :func:`csvdnet.scoring.ordinal_probabilities`
is its numpy twin for code that runs without TensorFlow.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

Tensor = Any


@keras.saving.register_keras_serializable(package="csvdnet")
class CoralHead(keras.layers.Layer):
    """K-1 cumulative logits ``z_k = w . x + b_k`` from one shared projection and ordered biases.

    ``sigmoid(z_k)`` estimates P(y > k). CORAL shares the weight vector ``w`` between the K-1
    binary tasks so that the cumulative probabilities are ordered whenever the biases are. Here
    the order is built into the parametrisation, ``b_1 = b`` and ``b_{k+1} = b_k - softplus(g_k)``,
    so rank consistency holds for every weight value, not only at the optimum.

    The biases start evenly spaced one logit apart and centred on zero, i.e. a spread prior over
    the classes rather than everything piled on the middle class (the model's score head also
    starts the projection small so that this prior is what the untrained head says).

    Args:
        num_classes: Ordinal classes K (>= 2); the layer outputs K-1 logits.
        kernel_initializer: Initializer of the shared projection (anything
            ``keras.initializers.get`` accepts).
        **kwargs: Base layer arguments (``name``, ``dtype``, ...).
    """

    def __init__(self, num_classes: int, kernel_initializer: Any = "glorot_uniform",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"CoralHead needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], 1),
                                      initializer=self.kernel_initializer, name="kernel")
        self.first_bias = self.add_weight(
            shape=(1,), initializer=keras.initializers.Constant((self.num_classes - 2) / 2),
            name="first_bias")
        # softplus(log(e - 1)) = 1: consecutive biases start one logit apart.
        self.bias_gaps = self.add_weight(
            shape=(self.num_classes - 2,),
            initializer=keras.initializers.Constant(math.log(math.e - 1.0)), name="bias_gaps")

    def ordered_biases(self) -> Any:
        """The K-1 biases, non-increasing by construction."""
        steps = keras.ops.cumsum(keras.ops.softplus(self.bias_gaps))
        return keras.ops.concatenate([self.first_bias, self.first_bias - steps], axis=0)

    def call(self, inputs: Any) -> Any:
        return keras.ops.matmul(inputs, self.kernel) + self.ordered_biases()

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.num_classes - 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def ordinal_decode(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted class and class probabilities from CORAL cumulative logits.

    Args:
        logits: ``(B, K - 1)`` cumulative logits, ``sigmoid(logits[:, k]) = P(y > k)``.

    Returns:
        ``(classes, probabilities)``: int32 ``(B,)`` = number of cumulative probabilities > 0.5,
        and float32 ``(B, K)`` = differences of consecutive cumulative probabilities
        (``P(y = k) = P(y > k - 1) - P(y > k)``), clipped at 0 and renormalised so that logits that
        are not rank-consistent still give a distribution.
    """
    cumulative = ops.sigmoid(ops.cast(logits, "float32"))
    classes = ops.sum(ops.cast(cumulative > 0.5, "int32"), axis=1)
    batch = ops.shape(cumulative)[0]
    upper = ops.concatenate([ops.ones((batch, 1)), cumulative], axis=1)
    lower = ops.concatenate([cumulative, ops.zeros((batch, 1))], axis=1)
    probabilities = ops.maximum(upper - lower, 0.0)
    probabilities = probabilities / ops.sum(probabilities, axis=1, keepdims=True)
    return classes, probabilities
