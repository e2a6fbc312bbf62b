"""What a run trains and validates on, checked against the cache before any compute."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from csvdnet.cache import labelled_tasks, load_cached_subject, open_cache
from csvdnet.config import Config
from csvdnet.errors import CsvdnetInputError
from csvdnet.losses import MultiTaskLoss


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The subjects and tasks of a run.

    Attributes:
        cache: Cache of the training subjects.
        train_ids: Training subjects.
        val_cache: Cache of the validation subjects.
        val_ids: Validation subjects (empty: no validation).
        tasks: Tasks trained: loss weight > 0 and labelled in at least one training subject.
        unlabelled: Tasks with loss weight > 0 but no label in any training subject (skipped).
        val_spacing: Working voxel size (mm) of each validation subject, in ``val_ids`` order.
    """

    cache: Path
    train_ids: tuple[str, ...]
    val_cache: Path
    val_ids: tuple[str, ...]
    tasks: tuple[str, ...]
    unlabelled: tuple[str, ...]
    val_spacing: tuple[tuple[float, float, float], ...]

    def split(self) -> dict[str, list[str]]:
        """``{"train": [...], "validation": [...]}``, as recorded in the run directory."""
        return {"train": list(self.train_ids), "validation": list(self.val_ids)}


def check_config(cfg: Config, replicas: int) -> None:
    """Reject training settings that cannot run: :meth:`Config.validate` with the replicas.

    Raises:
        CsvdnetInputError: The first problem found, naming the dotted key.
    """
    cfg.validate(replicas)


def split_subjects(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic train / validation split: a seeded permutation of the sorted ids.

    At least one subject validates when ``fraction > 0`` and at least one trains.

    Returns:
        ``(train, validation)``, each sorted.
    """
    ids = sorted(ids)
    count = 0
    if fraction > 0 and len(ids) > 1:
        count = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:count])
    return sorted(set(ids) - set(val)), val


def plan_data(cfg: Config, recorded: dict[str, list[str]] | None = None) -> TrainingData:
    """Open and check the caches, split the subjects and pick the tasks.

    Args:
        cfg: The configuration.
        recorded: The split a resumed run recorded (kept even if the cache gained subjects,
            so a resumed run sees the same data); ``None`` draws it.

    Returns:
        The run's data.

    Raises:
        CsvdnetInputError: Cache missing or not a cache, channels it lacks, volumes the model
            cannot take, a recorded subject no longer cached, or no label for any task.
    """
    stride = 2 ** cfg.model.depth
    cache, ids = open_cache(cfg.data.cache, "data.cache", cfg.data.channels, stride)
    if cfg.train.val_cache:
        val_cache, val_all = open_cache(cfg.train.val_cache, "train.val_cache",
                                        cfg.data.channels, stride)
        train_ids, val_ids = ids, val_all
    else:
        val_cache, val_all = cache, ids
        train_ids, val_ids = split_subjects(ids, cfg.data.val_fraction, cfg.data.seed)
    if recorded is not None:
        train_ids, val_ids = recorded["train"], recorded["validation"]
        for where, wanted, have in ((cache, train_ids, ids), (val_cache, val_ids, val_all)):
            gone = sorted(set(wanted) - set(have))
            if gone:
                raise CsvdnetInputError(where, f"subject {gone[0]!r} of the resumed run's "
                                               "split is no longer in the cache")

    # A fixed-weighting layer has no variables: it only names the tasks the losses switch on.
    weighted = MultiTaskLoss(cfg.losses.task_weights).tasks
    labelled = labelled_tasks(cache, train_ids)
    tasks = tuple(t for t in weighted if t in labelled)
    if not tasks:
        raise CsvdnetInputError(cache, "no training subject has a label for any task with a "
                                       f"loss weight > 0 ({', '.join(weighted)})")
    spacing = tuple(tuple(float(s) for s in load_cached_subject(val_cache, i).spacing)
                    for i in val_ids)
    return TrainingData(cache, tuple(train_ids), val_cache, tuple(val_ids), tasks,
                        tuple(t for t in weighted if t not in labelled), spacing)
