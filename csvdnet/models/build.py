"""``build_model``: the multi-task CSVD network from a :class:`~csvdnet.config.ModelConfig`."""

from __future__ import annotations

import keras

from csvdnet import DETECTION_TASKS, SCORE_TASK, SEGMENTATION_TASKS
from csvdnet.config import ModelConfig
from csvdnet.errors import CsvdnetInputError
from csvdnet.models.decoder import PER_HEAD_WIDTH, build_decoder
from csvdnet.models.encoder import build_encoder, level_filters
from csvdnet.models.heads import HEAD_PRIOR, dense_head, score_head

DENSE_TASKS = SEGMENTATION_TASKS + DETECTION_TASKS
INPUT_NAME = "image"


def _check(cfg: ModelConfig) -> None:
    """Reject a config that cannot build, naming the dotted config key."""
    blocks = list(cfg.blocks_per_level)
    problems = {
        "model.input_channels": (cfg.input_channels >= 1, "must be >= 1"),
        "model.base_filters": (cfg.base_filters >= 1, "must be >= 1"),
        "model.depth": (cfg.depth >= 1, "must be >= 1"),
        "model.blocks_per_level": (
            len(blocks) == cfg.depth + 1 and min(blocks, default=0) >= 1,
            f"needs depth + 1 = {cfg.depth + 1} entries, each >= 1, got {blocks}"),
        "model.max_filters": (cfg.max_filters >= 1, "must be >= 1"),
        "model.norm_groups": (cfg.norm_groups == -1 or cfg.norm_groups >= 1, "must be -1 or >= 1"),
        "model.decoder": (cfg.decoder in ("shared", "per_head"), "must be 'shared' or 'per_head'"),
        "model.score_classes": (cfg.score_classes >= 2, "must be >= 2"),
        "model.score_inputs": (cfg.score_inputs in ("encoder", "encoder_and_heads"),
                               "must be 'encoder' or 'encoder_and_heads'"),
        "model.head_prior": (
            set(cfg.head_prior) <= set(DENSE_TASKS)
            and all(0.0 < float(v) < 1.0 for v in cfg.head_prior.values()),
            f"must map dense tasks ({', '.join(DENSE_TASKS)}) to probabilities in (0, 1), "
            f"got {cfg.head_prior}"),
        "model.dropout": (0.0 <= cfg.dropout < 1.0, "must be in [0, 1)"),
    }
    for key, (ok, reason) in problems.items():
        if not ok:
            raise CsvdnetInputError(key, reason)


def build_model(cfg: ModelConfig) -> keras.Model:
    """Build the functional multi-task network.

    Input ``image``: ``(B, X, Y, Z, cfg.input_channels)`` channels-last, X, Y, Z multiples of
    ``2 ** cfg.depth``. Outputs (``docs/contracts.md``), all float32 under any dtype policy:
    ``wmh``, ``rssi``, ``lacune`` sigmoid probabilities and ``cmb``, ``epvs`` sigmoid heatmaps,
    each ``(B, X, Y, Z, 1)``; ``score`` CORAL cumulative logits ``(B, cfg.score_classes - 1)``,
    from the pooled deepest features and, with ``cfg.score_inputs == "encoder_and_heads"``, a
    summary of what the dense heads found (:class:`~csvdnet.models.head_summary.HeadSummary`).

    The layers take the global dtype policy in force when this is called (set it first for mixed
    precision); the heads always compute in float32.

    Args:
        cfg: Model configuration.

    Returns:
        An unbuilt-optimizer ``keras.Model`` named ``csvdnet`` with a dict output keyed by task.

    Raises:
        CsvdnetInputError: A config value that cannot build (named by its dotted key).
    """
    _check(cfg)
    filters = level_filters(cfg.base_filters, cfg.depth, cfg.max_filters)
    inputs = keras.Input((None, None, None, cfg.input_channels), name=INPUT_NAME)
    features = build_encoder(inputs, filters, cfg.blocks_per_level, cfg.norm_groups)

    outputs = {}
    if cfg.decoder == "shared":
        shared = build_decoder(features, filters, cfg.norm_groups, prefix="dec")
        for task in DENSE_TASKS:
            outputs[task] = dense_head(shared, task, cfg.head_prior.get(task, HEAD_PRIOR))
    else:
        for task in DENSE_TASKS:
            decoded = build_decoder(features, filters, cfg.norm_groups, width=PER_HEAD_WIDTH,
                                    prefix=f"dec_{task}")
            outputs[task] = dense_head(decoded, task, cfg.head_prior.get(task, HEAD_PRIOR))
    dense = [outputs[t] for t in DENSE_TASKS] if cfg.score_inputs == "encoder_and_heads" else []
    outputs[SCORE_TASK] = score_head(features[-1], cfg.score_classes, cfg.dropout, name=SCORE_TASK,
                                     dense=dense)
    return keras.Model(inputs, outputs, name="csvdnet")
