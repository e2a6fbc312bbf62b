"""How well a trained run does on another cache: the held-out check of a recipe.

``evaluate_run(run_dir, cache)`` rebuilds the run's network from its ``config.yaml``, loads the
``best/`` (or ``last/``) weights and validates every subject of ``cache`` exactly as training
validates (at the working spacing, dense outputs by sliding window, the score from the whole
volume; :func:`csvdnet.training.validation.validate`), adding per-subject records. It
measures the network on the cache's working grid; scoring predictions in each subject's native
space is ``csvdnet evaluate``'s job.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from csvdnet.cache import load_cache, load_cached_subject
from csvdnet.config import Config, to_dict
from csvdnet.data import make_validation_dataset
from csvdnet.errors import CsvdnetInputError
from csvdnet.inference import windowed_predictor
from csvdnet.losses import MultiTaskLoss
from csvdnet.models import build_model
from csvdnet.training.checkpoints import WEIGHTS_NAME
from csvdnet.training.plan import labelled_tasks, open_cache
from csvdnet.training.precision import dtype_policy, resolve_policy
from csvdnet.training.record import load_preprocess_record, run_config
from csvdnet.training.validation import ValidationResult, validate

logger = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class HeldoutResult:
    """A run's metrics on a held-out cache.

    Attributes:
        run_dir: The run evaluated.
        weights: ``"best"`` or ``"last"``.
        cache: The held-out cache.
        subjects: Subject ids, in the order of ``per_subject``.
        tasks: Tasks evaluated (weighted by the run and labelled in the cache).
        metrics: Pooled metrics, as validation names them.
        losses: Mean loss per task.
        per_subject: One record per subject (Dice, lesion and point counts, scores).
        seconds_per_subject: Median whole-volume prediction + scoring time per subject.
        policy: The dtype policy the network ran under (the run's).
    """

    run_dir: Path
    weights: str
    cache: Path
    subjects: tuple[str, ...]
    tasks: tuple[str, ...]
    metrics: dict[str, float]
    losses: dict[str, float]
    per_subject: list[dict[str, float]]
    seconds_per_subject: float
    policy: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings, per-subject records keyed by subject)."""
        return {"run_dir": str(self.run_dir), "weights": self.weights, "cache": str(self.cache),
                "tasks": list(self.tasks), "policy": self.policy,
                "seconds_per_subject": self.seconds_per_subject, "metrics": self.metrics,
                "losses": self.losses,
                "per_subject": dict(zip(self.subjects, self.per_subject))}


def load_network(run_dir: str | Path, cfg: Config, weights: str = "best") -> keras.Model:
    """The run's network (``cfg.model``) with the weights of ``run_dir/<weights>/``.

    Build it under the dtype policy it should run in.

    Raises:
        CsvdnetInputError: ``weights`` is not ``"best"`` / ``"last"``, or the file is missing.
    """
    if weights not in ("best", "last"):
        raise CsvdnetInputError(run_dir, f"weights must be 'best' or 'last', got {weights!r}")
    path = Path(run_dir) / weights / WEIGHTS_NAME
    if not path.is_file():
        raise CsvdnetInputError(path, f"no {weights} weights: has the run validated yet?")
    network = build_model(cfg.model)
    network.load_weights(path)
    return network


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


def evaluate_run(run_dir: str | Path, cache: str | Path, *, weights: str = "best",
                 subjects: Sequence[str] | None = None, window: Sequence[int] | None = None,
                 thresholds: Mapping[str, float] | None = None) -> HeldoutResult:
    """Validate a trained run's network on every subject of another cache.

    Args:
        run_dir: The run directory.
        cache: A preprocessed cache with the run's channels (and the same working spacing).
        weights: ``"best"`` or ``"last"``.
        subjects: Subjects to evaluate (default: all of the cache).
        window: Sliding-window size of the dense outputs (default: the run's
            ``inference.window``; the training patch size is the natural choice).
        thresholds: Per-task thresholds replacing the run's (calibrated, when the run has
            ``calibration.json``: :mod:`csvdnet.training.calibration`) ``inference.thresholds``.

    Returns:
        Pooled and per-subject metrics.

    Raises:
        CsvdnetInputError: Not a run, missing weights, a cache without the run's channels or
            whose volumes the network cannot take, or no label for any task the run trained.
    """
    cfg = run_config(run_dir)
    # The run's policy: the numbers match what its validation logged.
    policy = resolve_policy(cfg.train.mixed_precision)
    with dtype_policy(policy):
        setup = RunOnCache(run_dir, cfg, weights, cache, subjects, window)
        seconds: list[float] = []

        def predict(image: tf.Tensor) -> dict[str, np.ndarray]:
            started = time.perf_counter()
            outputs = setup.predict(image)
            seconds.append(time.perf_counter() - started)
            return outputs

        result = setup.validate(predict, setup.dataset,
                                {**cfg.inference.thresholds, **(thresholds or {})},
                                per_subject=True)
    return HeldoutResult(Path(run_dir), weights, setup.cache, tuple(setup.ids), setup.tasks,
                         result.metrics, result.losses, result.subjects,
                         float(np.median(seconds[1:] or seconds)), policy)
