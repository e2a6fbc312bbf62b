"""The run directory: one folder per training run, what every stage reads and writes.

Layout of ``train.run_dir`` (written by ``csvdnet train``; read by predict, calibrate, the held-out
check and export, never by hand)::

    config.yaml            resolved config of the latest (re)start (:func:`csvdnet.run.run_config`)
    preprocess.json        the cache's preprocessing (channels, spacing, normalisation, pad
                           multiple): what prediction repeats (:mod:`csvdnet.run.record`)
    calibration.json       thresholds and smallest sizes chosen on the validation subjects
                           (written by :mod:`csvdnet.evaluation.calibrate`, read by
                           :mod:`csvdnet.run.calibration`)
    split.json             training / validation subjects (a resumed run keeps them)
    logs/train, logs/validation   TensorBoard event files
    checkpoints/           tf.train.CheckpointManager: network, loss log-variances, optimizer
                           (moments, iteration count, EMA), step, epoch: what --resume restores
    best/                  model.weights.h5 + metrics.json of the best validation epoch
    last/                  model.weights.h5 + metrics.json of the latest finished epoch

``best/`` and ``last/`` hold plain Keras weights of the network alone (``network.load_weights``),
EMA-averaged when ``train.ema`` is on: what export and inference load
(:func:`csvdnet.run.network.load_network`). Training writes them
(:mod:`csvdnet.training.checkpoints`), each as a whole folder with
:func:`csvdnet.fsutil.atomic_dir`. This module imports no TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from csvdnet.config import Config, dump_config, to_dict
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import write_text_atomic

__all__ = ["RESUMABLE_CHANGES", "RunDir", "WEIGHTS_NAME"]

WEIGHTS_NAME = "model.weights.h5"
RESUMABLE_CHANGES = frozenset({
    "train.epochs", "train.validate_every", "train.strategy", "train.jit_compile",
    "train.mixed_precision", "train.run_dir", "data.cache", "train.val_cache"})
"""Config keys a resumed run may change (plus the inference and export sections): settings of
where, on what devices and how long it runs, not of what it learns. Anything else changes the
model, the objective or the data stream, so the checkpoint would not continue the same run."""
_FREE_SECTIONS = ("inference.", "export.")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and not prefix:  # sections only: dict-valued keys stay whole
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class RunDir:
    """Paths of a run directory and the checks on starting or resuming it.

    Args:
        path: ``train.run_dir``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.split_file = self.path / "split.json"
        self.logs = self.path / "logs"
        self.checkpoints = self.path / "checkpoints"
        self.best = self.path / "best"
        self.last = self.path / "last"

    def has_checkpoint(self) -> bool:
        """Whether a complete resumable checkpoint exists."""
        import tensorflow as tf

        return tf.train.latest_checkpoint(str(self.checkpoints)) is not None

    def open(self, cfg: Config, resume: bool) -> dict[str, list[str]] | None:
        """Check that the run may (re)start here; return the recorded split when resuming.

        Args:
            cfg: The configuration of this (re)start.
            resume: Continue from the last checkpoint.

        Returns:
            The recorded split when resuming a run that has a checkpoint, else ``None``.

        Raises:
            CsvdnetInputError: A fresh start over an existing run, or a resume whose config
                changes more than :data:`RESUMABLE_CHANGES`.
        """
        if not self.has_checkpoint():
            return None
        if not resume:
            raise CsvdnetInputError(self.path, "already holds a training run: resume it with "
                                               "--resume or choose another train.run_dir")
        if self.config.is_file():
            saved = _flatten(yaml.safe_load(self.config.read_text(encoding="utf-8")))
            current = _flatten(to_dict(cfg))
            changed = sorted(k for k in set(saved) | set(current)
                             if saved.get(k) != current.get(k) and k not in RESUMABLE_CHANGES
                             and not k.startswith(_FREE_SECTIONS))
            if changed:
                raise CsvdnetInputError(self.config, f"cannot resume with {changed[0]} changed "
                                                     f"(was {saved.get(changed[0])!r}, now "
                                                     f"{current.get(changed[0])!r})")
        if self.split_file.is_file():
            return json.loads(self.split_file.read_text(encoding="utf-8"))
        return None

    def record(self, cfg: Config, split: dict[str, list[str]]) -> None:
        """Write the resolved config and the subject split (atomically)."""
        write_text_atomic(self.config, dump_config(cfg))
        write_text_atomic(self.split_file, json.dumps(split, indent=1) + "\n")
