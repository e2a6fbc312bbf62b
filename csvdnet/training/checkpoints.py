"""Training's writes into the run directory: resumable checkpoints and the saved weights.

The run directory's layout and its readers live in :mod:`csvdnet.run` (:class:`~csvdnet.run.RunDir`,
:data:`~csvdnet.run.WEIGHTS_NAME`); this module writes what only training writes.

Why ``tf.train.Checkpoint`` for resuming: it saves distributed variables from any strategy
(mirrored, multi-worker) without gathering them by hand, covers the optimizer's slot and EMA
variables and any extra state in one object graph, and its writes are atomic: the data and index
files are written first and the ``checkpoints/checkpoint`` state file is replaced (write then
rename) last, so a run killed mid-save restores the previous complete checkpoint. ``best/`` and
``last/`` hold plain Keras weights of the network alone (``network.load_weights``), EMA-averaged
when ``train.ema`` is on: what export and inference load. Each is written as a whole folder with
:func:`csvdnet.fsutil.atomic_dir`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import keras
import tensorflow as tf

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_dir
from csvdnet.run.layout import WEIGHTS_NAME


class Checkpointer:
    """Resumable training state: a ``tf.train.CheckpointManager`` plus step and epoch counters.

    In a multi-worker run every worker takes part in every save (saving distributed variables
    may run collectives, and the save counters must stay in step); only the chief writes into
    the run directory. Each other worker writes into a fresh folder of its own machine's
    temporary directory (``tempfile``), removed as soon as the save returns or fails, so a
    shared filesystem never receives one checkpoint per worker and nothing of a non-chief
    worker is left in the run directory. Every worker restores from the run directory, that
    is from the chief's checkpoint, so a restarted job continues from one state everywhere.

    Args:
        directory: ``<run_dir>/checkpoints``.
        chief: Whether this process is the chief.
        worker: This worker's id (names a non-chief worker's temporary folders).
        max_to_keep: Checkpoints kept (the previous one survives a damaged latest one).
        **objects: Trackable objects to save (network, loss, optimizer).

    Attributes:
        step: int64 variable: batches consumed (also the data pipeline's ``start_step``).
        epoch: int64 variable: epochs completed.
    """

    def __init__(self, directory: Path, chief: bool, worker: str, max_to_keep: int = 2,
                 **objects: Any):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(step=self.step, epoch=self.epoch, **objects)
        self.directory = directory
        self.chief, self.worker, self.max_to_keep = chief, worker, max_to_keep
        self.manager = (tf.train.CheckpointManager(self.checkpoint, str(directory),
                                                   max_to_keep=max_to_keep) if chief else None)

    def restore(self) -> bool:
        """Restore the latest checkpoint of the run directory; False when there is none.

        Raises:
            CsvdnetInputError: The checkpoint lacks variables this model and optimizer have
                (it was written by a different model).
        """
        latest = tf.train.latest_checkpoint(str(self.directory))
        if latest is None:
            return False
        status = self.checkpoint.restore(latest)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as exc:
            raise CsvdnetInputError(latest, "does not match this model and optimizer "
                                            f"({str(exc).splitlines()[0][:200]})") from None
        return True

    def save(self, step: int, epoch: int) -> None:
        """Save the state after ``step`` batches and ``epoch`` completed epochs."""
        self.step.assign(step)
        self.epoch.assign(epoch)
        if self.manager is not None:
            self.manager.save(checkpoint_number=step)
            return
        scratch = tempfile.mkdtemp(prefix=f"csvdnet-{self.worker}-checkpoint-")
        try:
            # The same save as the chief's (a manager's save increments the save counter too).
            tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=self.max_to_keep
                                       ).save(checkpoint_number=step)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def ema_weights(optimizer: keras.optimizers.Optimizer,
                variables: Sequence[keras.Variable]) -> Iterator[None]:
    """Swap the optimizer's moving averages into ``variables`` for the block (no-op without EMA).

    Args:
        optimizer: The (base) optimizer; its ``use_ema`` decides.
        variables: Exactly the variable list the optimizer was built with (the averages are
            matched by position).
    """
    if not optimizer.use_ema:
        yield
        return
    backup = [v.numpy() for v in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, backup):
            variable.assign(value)


def save_weights(folder: Path, network: keras.Model, metrics: dict[str, Any]) -> None:
    """Write ``folder/model.weights.h5`` and ``folder/metrics.json`` as one atomic folder."""
    with atomic_dir(folder) as tmp:
        network.save_weights(tmp / WEIGHTS_NAME)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
