"""U-Net decoder: transposed-conv upsampling, skip concatenation, one residual block per level.

Two options (``ModelConfig.decoder``):

- ``"shared"`` (default): one full-width decoder feeds all five dense heads (1x1x1 convs).
- ``"per_head"``: one decoder per dense head at ``PER_HEAD_WIDTH`` (half) width, so each task can
  shape its own full-resolution features; all decoders read the same encoder skips.

Why ``"shared"`` is the default, measured by ``benchmarks/bench_model.py`` (2026-11-25, 2 shared
x86 cores with AVX-512, TF 2.21 CPU, batch 1, best of 6 runs; the machine's load average was
1.7 to 4.9 from other users, so times carry +-30 %, FLOPs and parameters are exact):

| model | decoder | params | GFLOP 64^3 | s 64^3 | GFLOP 96^3 | s 96^3 |
|---|---|---|---|---|---|---|
| default (base 16, depth 4) | shared | 10.44 M | 38.2 | 0.42-0.56 | 128.9 | 1.32-1.61 |
| default (base 16, depth 4) | per_head | 12.07 M | 52.4 | 0.52-0.98 | 176.7 | 1.90-2.32 |
| demo (base 8, depth 3, cap 64) | shared | 0.36 M | 7.7 | 0.15-0.25 | 26.0 | 0.65-0.77 |
| demo (base 8, depth 3, cap 64) | per_head | 0.46 M | 11.0 | 0.48 | 37.2 | 1.85-1.87 |

Per-head decoders cost +37 % FLOPs and +16 % parameters and run at a lower rate: 20-23 against
31-50 GFLOP/s for the demo model, whose per-head full-resolution convolutions have only 4 and 8
channels and are memory-bound (the default shared model reached 68-98 GFLOP/s, a 2048^2 float32
matmul 80-126 GFLOP/s in the same runs). Per forward that is 1.4x slower for the default model at
96^3 and 2-3x for the demo model (at 64^3 the default model's two options overlapped within the
noise), and the cost multiplies into sliding-window inference over a whole brain. In a quick
learning comparison (8 synthetic 32^3 volumes, WMH spheres + CMB points, 150 AdamW steps, 3 seeds)
they learned no better: held-out WMH Dice 0.973 (shared) vs 0.968 (per_head), held-out total loss
2.14 vs 2.27 (seed means). Sharing the decoder also lets the sparse tasks (lacune, RSSI, CMB)
borrow features learnt from the dense WMH labels.
"""

from __future__ import annotations

from typing import Sequence

import keras

from csvdnet.models.residual_block import ResidualBlock

PER_HEAD_WIDTH = 0.5
"""Channel fraction of each light per-head decoder relative to the shared decoder."""


def build_decoder(features: Sequence[keras.KerasTensor], filters: Sequence[int], norm_groups: int,
                  width: float = 1.0, prefix: str = "dec") -> keras.KerasTensor:
    """Decode the encoder levels back to full resolution.

    At each level (deepest first) a 2x2x2 stride-2 transposed convolution doubles the resolution
    (kernel = stride, so no checkerboard overlap), the encoder output of that level is concatenated
    and a residual block fuses the two.

    Args:
        features: Encoder outputs, full resolution first (from
            :func:`csvdnet.models.encoder.build_encoder`).
        filters: Encoder channels per level.
        norm_groups: GroupNormalization groups.
        width: Fraction of ``filters`` used by this decoder (``PER_HEAD_WIDTH`` for a per-head one).
        prefix: Layer-name prefix, unique per decoder.

    Returns:
        Full-resolution features with ``max(1, int(filters[0] * width))`` channels.
    """
    x = features[-1]
    for level in reversed(range(len(features) - 1)):
        channels = max(1, int(filters[level] * width))
        x = keras.layers.Conv3DTranspose(channels, 2, strides=2, kernel_initializer="he_normal",
                                         name=f"{prefix}{level}_up")(x)
        x = keras.layers.Concatenate(name=f"{prefix}{level}_concat")([x, features[level]])
        x = ResidualBlock(channels, norm_groups=norm_groups, name=f"{prefix}{level}_block")(x)
    return x
