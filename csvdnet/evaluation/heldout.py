"""How well a trained run does on another cache: the held-out check of a recipe.

``evaluate_run(run_dir, cache)`` rebuilds the run's network from its ``config.yaml``, loads the
``best/`` (or ``last/``) weights and validates every subject of ``cache`` exactly as training
validates (at the working spacing, dense outputs by sliding window, the score from the whole
volume; :func:`csvdnet.evaluation.validation.validate`), adding per-subject records. It
measures the network on the cache's working grid; scoring predictions in each subject's native
space is ``csvdnet evaluate``'s job.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from csvdnet.evaluation.run_on_cache import RunOnCache
from csvdnet.run.precision import dtype_policy, resolve_policy
from csvdnet.run.record import run_config

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
            ``calibration.json``: :mod:`csvdnet.evaluation.calibrate`) ``inference.thresholds``.

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
