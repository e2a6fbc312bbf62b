"""``build_model``: the multi-task CSVD network from a :class:`~csvdnet.config.ModelConfig`."""

from __future__ import annotations

import keras

from csvdnet import DETECTION_TASKS, SCORE_TASK, SEGMENTATION_TASKS
from csvdnet.config import ModelConfig
from csvdnet.models.decoder import PER_HEAD_WIDTH, build_decoder
from csvdnet.models.encoder import build_encoder, level_filters
from csvdnet.models.heads import HEAD_PRIOR, dense_head, score_head
from csvdnet.models.point_score import POINT_HEADS, PointScore

DENSE_TASKS = SEGMENTATION_TASKS + DETECTION_TASKS
INPUT_NAME = "image"


def build_model(cfg: ModelConfig) -> keras.Model:
    """Build the functional multi-task network.

    Input ``image``: ``(B, X, Y, Z, cfg.input_channels)`` channels-last, X, Y, Z multiples of
    ``2 ** cfg.depth``. Outputs (``docs/contracts.md``), all float32 under any dtype policy:
    ``wmh``, ``rssi``, ``lacune`` sigmoid probabilities and ``cmb``, ``epvs`` sigmoid heatmaps,
    each ``(B, X, Y, Z, 1)``; ``score`` CORAL cumulative logits ``(B, cfg.score_classes - 1)``,
    from the pooled deepest features and, with ``cfg.score_inputs == "encoder_and_heads"``, a
    summary of what the dense heads found (:class:`~csvdnet.models.head_summary.HeadSummary`);
    with ``cfg.score_inputs == "points"``, the sum of the four Staals points, each a logistic
    unit on its own head's whole-brain summary (:class:`~csvdnet.models.point_score.PointScore`).

    The layers take the global dtype policy in force when this is called (set it first for mixed
    precision); the heads always compute in float32.

    Args:
        cfg: Model configuration.

    Returns:
        An unbuilt-optimizer ``keras.Model`` named ``csvdnet`` with a dict output keyed by task.

    Raises:
        CsvdnetInputError: A config value that cannot build (named by its dotted key).
    """
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
    if cfg.score_inputs == "points":  # score_classes = len(POINTS) + 1, checked by ModelConfig
        outputs[SCORE_TASK] = PointScore(name=SCORE_TASK)([outputs[t] for t in POINT_HEADS])
        return keras.Model(inputs, outputs, name="csvdnet")
    dense = [outputs[t] for t in DENSE_TASKS] if cfg.score_inputs == "encoder_and_heads" else []
    outputs[SCORE_TASK] = score_head(features[-1], cfg.score_classes, cfg.dropout, name=SCORE_TASK,
                                     dense=dense)
    return keras.Model(inputs, outputs, name="csvdnet")
