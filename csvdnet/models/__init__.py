"""The multi-task CSVD network: residual encoder, U-Net decoder(s), dense heads and a CORAL head.

``build_model(ModelConfig)`` is the entry point; the custom layers are exported so that code
loading a ``.keras`` file or a config can refer to them (they are registered under ``csvdnet>``).
"""

from csvdnet.models.build import DENSE_TASKS, INPUT_NAME, SCORE_TASK, build_model
from csvdnet.models.coral_head import CoralHead, ordinal_decode
from csvdnet.models.encoder import level_filters
from csvdnet.models.head_summary import HeadSummary
from csvdnet.models.point_score import PointScore
from csvdnet.models.residual_block import ResidualBlock, group_count

__all__ = ["DENSE_TASKS", "INPUT_NAME", "SCORE_TASK", "CoralHead", "HeadSummary", "PointScore",
           "ResidualBlock",
           "build_model", "group_count", "level_filters", "ordinal_decode"]
