"""``ResidualBlock``: the building block of the encoder and of every decoder stage."""

from __future__ import annotations

import math
from typing import Any

import keras


def group_count(channels: int, norm_groups: int) -> int:
    """Number of GroupNormalization groups for ``channels`` channels.

    ``norm_groups`` is clamped to the channel count (``-1`` means instance norm, one group per
    channel) and, when it does not divide the channels, lowered to the greatest common divisor so
    that narrow layers (e.g. the light per-head decoders) still normalise.

    Args:
        channels: Channels of the normalised tensor.
        norm_groups: Requested groups; ``-1`` for instance norm.

    Returns:
        A divisor of ``channels`` between 1 and ``channels``.
    """
    if norm_groups == -1 or norm_groups >= channels:
        return channels
    return math.gcd(channels, norm_groups)


@keras.saving.register_keras_serializable(package="csvdnet")
class ResidualBlock(keras.layers.Layer):
    """Standard (post-activation) 3-D residual block with GroupNormalization.

    ``act(GN(conv(act(GN(conv_s(x))))) + shortcut(x))``, where ``conv_s`` carries the stride and the
    shortcut is the identity, or a 1x1x1 strided conv + GN when the stride or channel count changes
    (ResNet "option B", as in nnU-Net's residual encoder). GroupNormalization instead of batch norm
    because a replica sees one or two 3-D patches; convolutions have no bias since GN re-centres.

    Args:
        filters: Output channels.
        strides: Spatial stride of the first convolution (2 downsamples).
        kernel_size: Cubic kernel size of the two main-path convolutions.
        norm_groups: GroupNormalization groups (clamped by :func:`group_count`; -1 = instance norm).
        negative_slope: LeakyReLU slope (0 gives ReLU).
        **kwargs: Base layer arguments (``name``, ``dtype``, ...).
    """

    def __init__(self, filters: int, strides: int = 1, kernel_size: int = 3, norm_groups: int = 8,
                 negative_slope: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.kernel_size = kernel_size
        self.norm_groups = norm_groups
        self.negative_slope = negative_slope
        self.conv1 = self._conv(kernel_size, strides, "conv1")
        self.norm1 = self._norm("norm1")
        self.conv2 = self._conv(kernel_size, 1, "conv2")
        self.norm2 = self._norm("norm2")
        self.shortcut_conv: keras.layers.Conv3D | None = None
        self.shortcut_norm: keras.layers.GroupNormalization | None = None

    def _conv(self, kernel_size: int, strides: int, name: str) -> keras.layers.Conv3D:
        # Sub-layers take the block's dtype policy explicitly: a block re-created from its config
        # must not pick up whatever global policy happens to be set at load time.
        return keras.layers.Conv3D(self.filters, kernel_size, strides=strides, padding="same",
                                   use_bias=False, kernel_initializer="he_normal",
                                   dtype=self.dtype_policy, name=name)

    def _norm(self, name: str) -> keras.layers.GroupNormalization:
        return keras.layers.GroupNormalization(group_count(self.filters, self.norm_groups),
                                               dtype=self.dtype_policy, name=name)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        # The projection shortcut depends on the input channels, known only here.
        if self.strides != 1 or input_shape[-1] != self.filters:
            self.shortcut_conv = self._conv(1, self.strides, "shortcut_conv")
            self.shortcut_norm = self._norm("shortcut_norm")
            self.shortcut_conv.build(input_shape)
            self.shortcut_norm.build(self.shortcut_conv.compute_output_shape(input_shape))
        self.conv1.build(input_shape)
        out_shape = self.conv1.compute_output_shape(input_shape)
        self.norm1.build(out_shape)
        self.conv2.build(out_shape)
        self.norm2.build(out_shape)

    def _act(self, x: Any) -> Any:
        return keras.ops.leaky_relu(x, negative_slope=self.negative_slope)

    def call(self, inputs: Any) -> Any:
        x = self._act(self.norm1(self.conv1(inputs)))
        x = self.norm2(self.conv2(x))
        shortcut = inputs
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_norm(self.shortcut_conv(inputs))
        return self._act(x + shortcut)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return self.conv1.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "kernel_size": self.kernel_size, "norm_groups": self.norm_groups,
                "negative_slope": self.negative_slope}
