"""Training data: targets, in-graph augmentation and the tf.data pipelines over the cache."""

from csvdnet.data.augment import Augmentation
from csvdnet.data.pipeline import (SCORE_CLASSES, TASKS, BatchSchedule, make_dataset,
                                   make_validation_dataset)
from csvdnet.data.source import whole_brain_shape

__all__ = ["Augmentation", "BatchSchedule", "SCORE_CLASSES", "TASKS", "make_dataset",
           "make_validation_dataset", "whole_brain_shape"]
