"""The network section: :class:`ModelConfig`, the multi-task network's shape and heads."""

from __future__ import annotations

import dataclasses
from typing import Literal

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.config.values import _check


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The multi-task network.

    Attributes:
        input_channels: Number of input channels (= len(data.channels)).
        base_filters: Filters of the first encoder level; doubled at each level.
        depth: Number of downsamplings (inputs must be a multiple of 2 ** depth).
        blocks_per_level: Residual blocks at each encoder level (length depth + 1).
        max_filters: Cap on filters per level.
        norm_groups: GroupNormalization groups (-1 = instance norm).
        decoder: ``"shared"`` U-Net decoder for all dense heads or ``"per_head"`` light decoders.
        score_classes: Ordinal classes of the total SVD score (0..4 -> 5).
        dropout: Dropout before the ordinal head.
        head_prior: Initial foreground probability per dense head (its sigmoid bias starts at
            the logit of it); a task not named starts at ``models.heads.HEAD_PRIOR``. Near the
            true foreground fraction of a patch, the soft Dice of a rare-lesion head has a
            gradient from the first step; far above it, AdamW must first walk the bias down
            (see training/README.md).
        score_inputs: What the ordinal score head reads: ``"encoder"`` (globally pooled deepest
            features) or ``"encoder_and_heads"`` (also each dense head's peak probability,
            extent and count over the whole brain, gradient stopped: ``models.HeadSummary``) or
            ``"points"`` (the sum of the four Staals points, each a logistic unit on its own
            head's whole-brain summary: ``models.PointScore``; needs ``score_classes`` 5).
    """

    input_channels: int = len(DEFAULT_SEQUENCES)
    base_filters: int = 16
    depth: int = 4
    blocks_per_level: tuple[int, ...] = (1, 2, 2, 2, 2)
    max_filters: int = 256
    norm_groups: int = 8
    decoder: Literal["shared", "per_head"] = "shared"
    score_classes: int = 5
    dropout: float = 0.2
    head_prior: dict[str, float] = dataclasses.field(default_factory=dict)
    score_inputs: Literal["encoder", "encoder_and_heads", "points"] = "encoder"

    def __post_init__(self) -> None:
        from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS

        dense = SEGMENTATION_TASKS + DETECTION_TASKS
        blocks = list(self.blocks_per_level)
        _check("model", {
            "input_channels": (self.input_channels >= 1, "must be >= 1"),
            "base_filters": (self.base_filters >= 1, "must be >= 1"),
            "depth": (self.depth >= 1, "must be >= 1"),
            "blocks_per_level": (
                len(blocks) == self.depth + 1 and min(blocks, default=0) >= 1,
                f"needs depth + 1 = {self.depth + 1} entries, each >= 1, got {blocks}"),
            "max_filters": (self.max_filters >= 1, "must be >= 1"),
            "norm_groups": (self.norm_groups == -1 or self.norm_groups >= 1,
                            "must be -1 or >= 1"),
            "decoder": (self.decoder in ("shared", "per_head"), "must be 'shared' or 'per_head'"),
            "score_classes": (self.score_classes >= 2 and (
                self.score_inputs != "points" or self.score_classes == 5),
                "must be >= 2 (5 with score_inputs 'points': the total of four points)"),
            "score_inputs": (self.score_inputs in ("encoder", "encoder_and_heads", "points"),
                             "must be 'encoder', 'encoder_and_heads' or 'points'"),
            "head_prior": (
                set(self.head_prior) <= set(dense)
                and all(0.0 < float(v) < 1.0 for v in self.head_prior.values()),
                f"must map dense tasks ({', '.join(dense)}) to probabilities in (0, 1), "
                f"got {self.head_prior}"),
            "dropout": (0.0 <= self.dropout < 1.0, "must be in [0, 1)"),
        })
