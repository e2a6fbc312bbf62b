"""Residual encoder: ``depth + 1`` levels, each downsampled by a strided residual block."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from csvdnet.models.residual_block import ResidualBlock


def level_filters(base_filters: int, depth: int, max_filters: int) -> list[int]:
    """Channels per level: ``base_filters * 2 ** level``, capped at ``max_filters``."""
    return [min(base_filters * 2 ** level, max_filters) for level in range(depth + 1)]


def build_encoder(inputs: keras.KerasTensor, filters: Sequence[int],
                  blocks_per_level: Sequence[int], norm_groups: int) -> list[keras.KerasTensor]:
    """Apply the encoder to ``inputs``.

    Level 0 runs at full resolution and its first block projects the input sequences to
    ``filters[0]`` channels (no separate stem). Every later level starts with a stride-2 residual
    block, so downsampling is learned and the shortcut stays a projection, not a pooling.

    Args:
        inputs: Channels-last 5-D input tensor.
        filters: Channels per level (length depth + 1).
        blocks_per_level: Residual blocks per level, each >= 1 (length depth + 1).
        norm_groups: GroupNormalization groups.

    Returns:
        The output of every level, full resolution first; the last one is the deepest.
    """
    features: list[Any] = []
    x = inputs
    for level, (channels, blocks) in enumerate(zip(filters, blocks_per_level)):
        for index in range(blocks):
            strides = 2 if level > 0 and index == 0 else 1
            x = ResidualBlock(channels, strides=strides, norm_groups=norm_groups,
                              name=f"enc{level}_block{index}")(x)
        features.append(x)
    return features
