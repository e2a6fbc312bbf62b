"""A run's network over a preprocessed cache: the cache checked, its subjects, the windowed predictor.

What calibration (:mod:`csvdnet.evaluation.calibrate`) and the held-out check
(:mod:`csvdnet.evaluation.heldout`) run on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import tensorflow as tf

from csvdnet.cache import labelled_tasks, load_cache, load_cached_subject, open_cache
from csvdnet.config import Config, to_dict
from csvdnet.data import make_validation_dataset
from csvdnet.errors import CsvdnetInputError
from csvdnet.evaluation.validation import ValidationResult, validate
from csvdnet.inference import windowed_predictor
from csvdnet.losses import MultiTaskLoss
from csvdnet.run.network import load_network
from csvdnet.run.record import load_preprocess_record

__all__ = ["RunOnCache"]

logger = logging.getLogger(__name__)


def _warn_if_preprocessed_differently(cache: Path, trained: Any) -> None:
    """Warn when ``cache`` was not preprocessed as the run's training cache was."""
    made = load_cache(cache)[0]["preprocess"]
    expected = to_dict(trained)
    differ = sorted(k for k in set(made) | set(expected) if made.get(k) != expected.get(k))
    if differ:
        logger.warning("%s was preprocessed unlike the run's training cache (%s): the network "
                       "sees inputs it was not trained on", cache,
                       "; ".join(f"{k} {made.get(k)!r} vs {expected.get(k)!r}" for k in differ))


class RunOnCache:
    """A run's network over one cache's subjects: dataset, tasks, spacing, windowed predictor."""

    def __init__(self, run_dir: str | Path, cfg: Config, weights: str, cache: str | Path,
                 subjects: Sequence[str] | None, window: Sequence[int] | None):
        self.cfg = cfg
        self.network = load_network(run_dir, cfg, weights)
        record = load_preprocess_record(run_dir, cfg)
        self.cache, ids = open_cache(str(cache), "cache", record.channels, 2 ** cfg.model.depth)
        _warn_if_preprocessed_differently(self.cache, record.preprocess)
        self.ids = sorted(subjects) if subjects is not None else ids
        self.loss = MultiTaskLoss.from_loss_config(cfg.losses)
        self.tasks = tuple(t for t in MultiTaskLoss(cfg.losses.task_weights).tasks
                           if t in labelled_tasks(self.cache, self.ids))
        if not self.tasks:
            raise CsvdnetInputError(self.cache,
                                    "no subject has a label for any task the run trained")
        self.spacing = [tuple(float(s) for s in load_cached_subject(self.cache, i).spacing)
                        for i in self.ids]
        self.dataset = make_validation_dataset(self.cache, self.ids, cfg.data, tasks=self.tasks,
                                               score_classes=cfg.model.score_classes)
        forward = tf.function(lambda x: self.network(x, training=False), reduce_retracing=True)
        self.predict = windowed_predictor(forward, window or cfg.inference.window,
                                          cfg.inference.overlap, cfg.inference.gaussian_blend)

    def validate(self, predict: Callable[[Any], Mapping[str, Any]], batches: Iterable[Any],
                 thresholds: Mapping[str, float], per_subject: bool = False) -> ValidationResult:
        cfg = self.cfg
        return validate(predict, batches, self.loss, self.tasks, self.spacing, thresholds,
                        cfg.model.score_classes, cfg.inference.min_lesion_mm3, per_subject)
