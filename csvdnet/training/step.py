"""The optimisation step under any ``tf.distribute`` strategy.

The objective is the multi-task loss of the **global** batch: for each task, the mean loss over
the samples of the whole batch that carry its label. A replica sees only its share of the batch,
so it computes its share of that mean, ``sum over its labelled samples / labelled samples in the
global batch``, and the optimizer's all-reduce (a SUM of gradients) adds the shares up. The
number of samples each loss term averages over (the labelled samples; for the "positive" Dice,
the labelled samples holding a lesion) is all-reduced first; it comes from the label masks and
targets alone, so it is known before the forward pass. Averaging per-replica means instead (``loss /
replicas``) is biased whenever label masks are spread unevenly over the replicas, which is the
rule for the score label (whole-brain batches only) and for partly labelled cohorts.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import keras
import tensorflow as tf
from keras import ops

from csvdnet.losses import MultiTaskLoss

Tensor = Any
Batch = tuple[tf.Tensor, dict[str, tf.Tensor], dict[str, tf.Tensor]]
TrainStep = Callable[[Batch, tf.Tensor], tuple[dict[str, tf.Tensor], tf.Tensor]]
_STOP = "__stop__"  # key of the stop flag in the label-count all-reduce (never a task name)


def replica_objective(loss: MultiTaskLoss, targets: Mapping[str, Tensor],
                      outputs: Mapping[str, Tensor], weights: Mapping[str, Tensor],
                      global_counts: Mapping[str, Tensor], replicas: int) -> dict[str, Tensor]:
    """This replica's share of the global-batch multi-task objective.

    Summed over replicas, each value is exactly what ``loss(targets, outputs, weights)`` gives
    on the whole global batch on one device: per-task masked means, and ``"total"`` combined as
    :class:`~csvdnet.losses.MultiTaskLoss` does (fixed weights, or uncertainty weighting whose
    ``log_var`` regulariser counts once, and only for tasks labelled somewhere in the batch).

    Args:
        loss: The multi-task loss (its task losses, weights and log-variances are used).
        targets: Targets of this replica's samples by task; tasks absent here are skipped.
        outputs: Model outputs by task.
        weights: Label masks ``(B_replica,)`` by task.
        global_counts: ``{task: (n_terms,)}`` samples of the global batch each term of the task
            averages over (:meth:`~csvdnet.losses.MultiTaskLoss.term_counts`, all-reduced).
        replicas: Replicas in sync.

    Returns:
        ``{task: share of the task loss}`` and ``"total"``.
    """
    shares: dict[str, Tensor] = {}
    total = ops.zeros((), "float32")
    for task in loss.tasks:
        if task not in targets:
            continue
        values = loss.term_values(task, targets[task], outputs[task])
        masks = loss.term_masks(task, targets[task], weights[task])
        counts = global_counts[task]
        share = ops.zeros((), "float32")
        for i, (value, mask) in enumerate(zip(values, masks)):
            share = share + ops.divide_no_nan(ops.sum(value * mask), counts[i])
        shares[task] = share
        if loss.weighting == "fixed":
            total = total + loss.task_weights[task] * share
        else:
            log_var = loss.log_vars[task]
            # Every term's samples are labelled ones: the task is labelled if any term counts.
            regulariser = ops.where(ops.max(counts) > 0.0, log_var / replicas, 0.0)
            total = total + ops.exp(-log_var) * share + regulariser
    shares["total"] = total
    return shares


def _skip_together(grads: list[Tensor]) -> list[Tensor]:
    """Make every replica's gradients non-finite when any replica's are.

    Keras's LossScaleOptimizer checks finiteness on the first replica's gradients before they
    are all-reduced; an overflow on another replica alone would then reach the weights as inf.
    Poisoning all replicas makes the whole step skip, as loss scaling intends.
    """
    finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in grads if g is not None]))
    overflows = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, 1.0 - ops.cast(finite, "float32"))
    poison = ops.where(overflows > 0.0, float("nan"), 0.0)
    return [g if g is None else g + ops.cast(poison, g.dtype) for g in grads]


def make_train_step(strategy: tf.distribute.Strategy, network: keras.Model, loss: MultiTaskLoss,
                    optimizer: keras.optimizers.Optimizer,
                    jit_compile: bool = False) -> TrainStep:
    """A ``tf.function`` running one optimisation step on a distributed global batch.

    Only the forward and backward passes are XLA-compiled (``jit_compile``): the all-reduces
    of the label counts and of the gradients (inside ``optimizer.apply``) stay outside, since a
    synchronisation point inside a nested compiled function is not supported by
    ``tf.distribute``.

    The step also agrees on stopping: each process passes whether it was asked to stop, the
    flag rides on the label-count all-reduce, and every worker learns whether any was. So all
    workers of a multi-worker run stop after the same step and save the same checkpoint
    (a worker that left alone would leave the others blocked in the next all-reduce).

    Args:
        strategy: The strategy whose scope created the variables.
        network: The model, called with ``training=True``.
        loss: The multi-task loss; its trainable log-variances are optimised with the network.
        optimizer: Optimizer (a ``LossScaleOptimizer`` under ``mixed_float16``).
        jit_compile: XLA-compile the forward and backward passes.

    Returns:
        ``step(batch, stop) -> (losses, stop_any)``: ``stop`` a float32 scalar tensor (1 = this
        process was asked to stop); ``losses`` the global-batch ``{task: loss, "total": loss}``;
        ``stop_any`` a bool scalar, True when any process asked.
    """
    variables = network.trainable_variables + loss.trainable_variables
    replicas = strategy.num_replicas_in_sync
    loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def gradients(x: Tensor, targets: dict[str, Tensor], weights: dict[str, Tensor],
                  counts: dict[str, Tensor]) -> tuple[list[Tensor], dict[str, Tensor]]:
        with tf.GradientTape() as tape:
            outputs = network(x, training=True)
            shares = replica_objective(loss, targets, outputs, weights, counts, replicas)
            scaled = optimizer.scale_loss(shares["total"])
        return tape.gradient(scaled, variables), shares

    if jit_compile:
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(x: Tensor, targets: dict[str, Tensor], weights: dict[str, Tensor],
                     stop: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        # tf.identity places the host-side flag on this replica's device, as all-reduce needs.
        counts = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM,
            {**loss.term_counts(targets, weights), _STOP: tf.identity(stop)})
        grads, shares = gradients(x, targets, weights, counts)
        if loss_scaling and replicas > 1:
            grads = _skip_together(grads)
        # The heads of tasks no training subject labels get no gradient: leave them untouched
        # (not even weight-decayed) instead of passing None, which Keras warns about.
        used = [(g, v) for g, v in zip(grads, variables) if g is not None]
        optimizer.apply([g for g, _ in used], [v for _, v in used])
        return shares, counts[_STOP]

    @tf.function
    def train_step(batch: Batch, stop: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        shares, stops = strategy.run(replica_step, args=(*batch, stop))
        losses = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                  for k, v in shares.items()}
        return losses, strategy.reduce(tf.distribute.ReduceOp.MEAN, stops, axis=None) > 0.0

    return train_step
