"""``fit(cfg)``: train the multi-task network on a preprocessed cache.

The loop is a plain Python loop over a ``tf.function`` step (:mod:`csvdnet.training.step`) rather
than ``keras.Model.fit``: epochs here are fixed stretches of ``train.steps_per_epoch`` global
steps, so a run stopped mid-epoch resumes at the exact step (model, optimizer and data position),
which ``Model.fit``'s whole-epoch bookkeeping cannot express; and the step owns the
global-batch loss scaling under a distribution strategy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import keras
import tensorflow as tf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from csvdnet import DETECTION_TASKS, SCORE_TASK, SEGMENTATION_TASKS
from csvdnet.config import Config, TrainConfig
from csvdnet.data import make_dataset, make_validation_dataset
from csvdnet.evaluation.validation import selected_metric, validate
from csvdnet.inference import windowed_predictor
from csvdnet.losses import MultiTaskLoss
from csvdnet.models import build_model
from csvdnet.run.layout import RunDir
from csvdnet.run.precision import dtype_policy, resolve_policy
from csvdnet.run.record import write_preprocess_record
from csvdnet.training.checkpoints import Checkpointer, ema_weights, save_weights
from csvdnet.training.plan import TrainingData, check_config, plan_data
from csvdnet.training.signals import stop_on_signals
from csvdnet.training.step import Batch, TrainStep, make_train_step
from csvdnet.training.strategy import is_chief, make_strategy, worker_id
from csvdnet.training.summaries import Summaries, overlay_images

logger = logging.getLogger(__name__)

NO_WEIGHT_DECAY = ("bias", "gamma", "beta", "log_var")
"""Variables AdamW does not decay (name substrings): biases, normalisation scales and offsets,
and the uncertainty log-variances, whose value 0 is no more plausible a priori than any other."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`fit` did.

    Attributes:
        run_dir: The run directory.
        step: Global steps (batches) done, over all (re)starts.
        epoch: Epochs completed, over all (re)starts.
        interrupted: Stopped early by SIGINT / SIGTERM (a checkpoint was saved first).
        history: One record per epoch finished in this call: ``epoch``, ``step``,
            ``learning_rate``, ``samples_per_second``, ``loss/<task>`` (training) and, when it
            validated, ``val_loss/<task>`` and ``val/<metric>``.
        best: ``best/metrics.json`` (selection score, epoch, step, metrics), or None without
            validation and on the workers of a multi-worker run other than the chief (which
            neither validate nor write the run directory, so nothing is done with it there).
        policy: The dtype policy used.
        replicas: Replicas in sync.
    """

    run_dir: Path
    step: int
    epoch: int
    interrupted: bool
    history: list[dict[str, float]]
    best: dict[str, Any] | None
    policy: str
    replicas: int


def make_optimizer(train: TrainConfig, total_steps: int) -> keras.optimizers.AdamW:
    """AdamW on a linear warm-up to ``learning_rate`` then a cosine decay to 0 at the last step."""
    warmup = min(train.warmup_steps, total_steps - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else train.learning_rate,
        decay_steps=total_steps - warmup, warmup_target=train.learning_rate if warmup else None,
        warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=train.weight_decay,
                                       use_ema=train.ema, ema_momentum=train.ema_momentum)
    optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer


class TrainingParts(NamedTuple):
    """What one optimisation step needs.

    Attributes:
        network: The model.
        loss: The multi-task loss (owns the uncertainty log-variances).
        base: The AdamW optimizer (moments, EMA), built for ``variables``.
        optimizer: ``base``, wrapped in a ``LossScaleOptimizer`` under ``mixed_float16``.
        variables: Trainable variables in the optimizer's order: network, then loss.
    """

    network: keras.Model
    loss: MultiTaskLoss
    base: keras.optimizers.AdamW
    optimizer: keras.optimizers.Optimizer
    variables: list[keras.Variable]


def build_training(cfg: Config, policy: str) -> TrainingParts:
    """Build the network, loss and optimizer (call under the strategy scope and dtype policy).

    Seeds Python, NumPy and TensorFlow with ``train.seed`` first, so the initial weights are
    reproducible.

    Args:
        cfg: The configuration (model, losses, train).
        policy: The dtype policy in force (decides loss scaling).

    Returns:
        The parts, the optimizer built for the variables (so a checkpoint restores in place).
    """
    keras.utils.set_random_seed(cfg.train.seed)
    network = build_model(cfg.model)
    loss = MultiTaskLoss.from_loss_config(cfg.losses)
    base = make_optimizer(cfg.train, cfg.train.epochs * cfg.train.steps_per_epoch)
    # Keras 3 wraps the optimizer only inside compile(): float16 needs loss scaling here.
    optimizer = (keras.optimizers.LossScaleOptimizer(base) if policy == "mixed_float16"
                 else base)
    variables = network.trainable_variables + loss.trainable_variables
    optimizer.build(variables)
    return TrainingParts(network, loss, base, optimizer, variables)


def _training_dataset(cfg: Config, data: TrainingData, start_step: int) -> tf.data.Dataset:
    data_cfg = cfg.data
    if SCORE_TASK not in data.tasks:
        # Whole-brain batches only feed the score head; without score labels they are waste.
        data_cfg = dataclasses.replace(data_cfg, whole_brain_every=0)
    dataset = make_dataset(data.cache, data.train_ids, data_cfg, batch_size=cfg.train.batch_size,
                           start_step=start_step, tasks=data.tasks,
                           score_classes=cfg.model.score_classes)
    # Every worker builds the same global batches and keeps its replicas' share, so a
    # multi-worker run sees exactly the batches of a single-machine run (and resumes alike).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


class _Means:
    """Running means of the step losses within an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, tf.Tensor]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def result(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


class _EpochEnd:
    """What happens after each epoch: summaries, validation, best / last weights, checkpoint.

    Args:
        cfg: The configuration.
        run: The run directory.
        data: The run's subjects and tasks.
        parts: Network, loss and optimizers.
        state: The resumable checkpoint.
        chief: Whether this process writes the run directory.
    """

    def __init__(self, cfg: Config, run: RunDir, data: TrainingData, parts: TrainingParts,
                 state: Checkpointer, chief: bool):
        self.cfg, self.run, self.data, self.parts, self.state = cfg, run, data, parts, state
        self.chief = chief
        self.progress = False  # a progress bar over the validation subjects (set by fit)
        self.summaries = Summaries(run.logs, enabled=chief)
        self.validation = None
        # Only the chief validates: the others would repeat its work and their results go
        # nowhere (they wait for it in the next step's all-reduce).
        if data.val_ids and chief:
            self.validation = make_validation_dataset(data.val_cache, data.val_ids, cfg.data,
                                                      tasks=data.tasks,
                                                      score_classes=cfg.model.score_classes)
        # Whole volumes of different shapes: relax the traced shape instead of one per subject.
        forward = tf.function(lambda x: parts.network(x, training=False), reduce_retracing=True)
        inference = cfg.inference
        self.predict = windowed_predictor(forward, inference.window, inference.overlap,
                                          inference.gaussian_blend)
        best = run.best / "metrics.json"
        self.best = json.loads(best.read_text(encoding="utf-8")) if best.is_file() else None

    def __call__(self, epoch: int, step: int, means: _Means, seconds: float) -> dict[str, float]:
        """Finish epoch ``epoch`` (0-based) after global step ``step``; returns its record."""
        train = self.cfg.train
        record = {"epoch": epoch + 1, "step": step,
                  "learning_rate": float(self.parts.optimizer.learning_rate),
                  "samples_per_second": means.count * train.batch_size / max(seconds, 1e-9),
                  **{f"loss/{k}": v for k, v in means.result().items()}}
        self.summaries.scalars("train", {k: v for k, v in record.items()
                                         if k not in ("epoch", "step")}, step)
        due = (epoch + 1) % train.validate_every == 0 or epoch + 1 == train.epochs
        with ema_weights(self.parts.base, self.parts.variables):
            if self.validation is not None and due:
                record.update(self._validate(epoch, step))
            if self.chief:
                save_weights(self.run.last, self.parts.network, record)
        self.state.save(step, epoch + 1)
        self.summaries.flush()
        return record

    def _validate(self, epoch: int, step: int) -> dict[str, float]:
        cfg = self.cfg
        result = validate(self.predict, self.validation, self.parts.loss, self.data.tasks,
                          self.data.val_spacing, cfg.inference.thresholds,
                          cfg.model.score_classes, cfg.inference.min_lesion_mm3,
                          progress=self.progress)
        self.summaries.scalars("validation", {
            **{f"loss/{k}": v for k, v in result.losses.items()},
            **{f"metrics/{k}": v for k, v in result.metrics.items()}}, step)
        if result.example is not None:
            image, targets, outputs = result.example
            panels = overlay_images(image, cfg.data.channels, targets, outputs,
                                    cfg.inference.thresholds)
            self.summaries.images({f"overlay/{k}": v for k, v in panels.items()}, step)
        score = result.metrics["selection"]
        if self.chief and not math.isnan(score) and (self.best is None
                                                     or score > self.best["selection"]):
            self.best = {"selection": score, "epoch": epoch + 1, "step": step,
                         "metrics": result.metrics}
            save_weights(self.run.best, self.parts.network, self.best)
        return {**{f"val_loss/{k}": v for k, v in result.losses.items()},
                **{f"val/{k}": v for k, v in result.metrics.items()}}


def epoch_line(record: dict[str, float], epochs: int, per_step: float, eta: float) -> str:
    """The line printed after an epoch: step time, ETA, training loss and, when it validated,
    each task's selection metric (validation.selected_metric) and the selection score."""
    minutes = int(round(eta / 60.0))
    eta_text = f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
    line = (f"epoch {int(record['epoch'])}/{epochs} step {int(record['step'])} "
            f"({per_step:.2f} s/step, ETA {eta_text}): loss {record['loss/total']:.4g}")
    shown = []
    for task in (*SEGMENTATION_TASKS, *DETECTION_TASKS, SCORE_TASK):
        metric = selected_metric(task)
        if metric is not None and f"val/{metric}" in record:
            name = "kappa" if task == SCORE_TASK else metric.replace(f"_{task}", "")
            shown.append(f"{task} {name.replace('_', ' ')} {record[f'val/{metric}']:.3f}")
    if "val/selection" in record:
        shown.append(f"selection {record['val/selection']:.3f}")
    return line + (" | val " + ", ".join(shown) if shown else "")


def _loop(cfg: Config, step: int, batches: Iterator[Batch], train_step: TrainStep,
          end_epoch: _EpochEnd, progress: bool) -> tuple[int, list[dict[str, float]], bool]:
    """Run the remaining epochs from global ``step``; SIGINT / SIGTERM save and stop.

    Returns:
        ``(step reached, records of the epochs finished, whether a signal stopped it)``.
    """
    spe, epochs = cfg.train.steps_per_epoch, cfg.train.epochs
    history: list[dict[str, float]] = []
    stopping = False  # agreed by all workers through the step (see make_train_step)
    bar = tqdm(total=epochs * spe, initial=step, unit="step", dynamic_ncols=True,
               disable=not progress)
    first_step, run_started = step, time.perf_counter()
    with stop_on_signals() as stop, logging_redirect_tqdm():
        for epoch in range(step // spe, epochs):
            means, started = _Means(), time.perf_counter()
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            while step < (epoch + 1) * spe and not stopping:
                losses, stop_any = train_step(next(batches),
                                              tf.constant(float(stop.requested)))
                means.add(losses)
                stopping = bool(stop_any)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{means.result()['total']:.4g}", refresh=False)
            if step < (epoch + 1) * spe:  # stopped mid-epoch: save exactly where it is
                end_epoch.state.save(step, epoch)
            else:
                history.append(end_epoch(epoch, step, means, time.perf_counter() - started))
                per_step = (time.perf_counter() - run_started) / max(step - first_step, 1)
                line = epoch_line(history[-1], epochs, per_step, (epochs * spe - step) * per_step)
                if progress:
                    bar.write(line)
                elif end_epoch.chief:
                    logger.info(line)
            if stopping:
                logger.warning("stopped by a signal at step %d: continue with --resume", step)
                break
    bar.close()
    return step, history, stopping


def fit(cfg: Config, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train the network that ``cfg.model`` describes on ``cfg.data.cache``.

    Every config and data problem is reported before any compute. The run directory
    (``cfg.train.run_dir``, layout in :mod:`csvdnet.training.checkpoints`) receives the resolved
    config, the cache's preprocessing record (``preprocess.json``), the subject split, TensorBoard logs, a resumable checkpoint at every epoch end and on
    SIGINT / SIGTERM, and the network weights of the best and of the last validated epoch.

    Args:
        cfg: The whole configuration (data, model, losses, train, inference thresholds).
        resume: Continue the run in ``run_dir`` from its last checkpoint: same model, optimizer
            state, step and data position (a run killed mid-epoch repeats at most that epoch's
            steps since the last checkpoint). Without a checkpoint the run starts fresh.
        progress: Show a progress bar (steps, loss) and a line per epoch.

    Returns:
        What was done (steps, epochs, per-epoch history, best validation).

    Raises:
        CsvdnetInputError: A bad config or cache, or a run directory that already holds a run
            (without ``resume``) or a run with a different config.
    """
    strategy = make_strategy(cfg.train.strategy)
    check_config(cfg, strategy.num_replicas_in_sync)
    run = RunDir(cfg.train.run_dir)
    data = plan_data(cfg, run.open(cfg, resume))
    chief = is_chief(strategy)
    if chief:
        run.record(cfg, data.split())
        write_preprocess_record(run.path, cfg.data.cache, cfg.data.channels)
    if data.unlabelled:
        logger.warning("no training subject is labelled for %s: not trained",
                       ", ".join(data.unlabelled))
    if tuple(cfg.inference.window) != tuple(cfg.data.patch_size):
        logger.warning("inference.window %s is not data.patch_size %s: validation windows hold "
                       "other content than training patches, and GroupNormalization normalises "
                       "by it", list(cfg.inference.window), list(cfg.data.patch_size))
    policy = resolve_policy(cfg.train.mixed_precision)
    with dtype_policy(policy):
        with strategy.scope():
            parts = build_training(cfg, policy)
            # The base optimizer is checkpointed, not the loss-scale wrapper: its dynamic scale
            # re-adapts in a few steps, and checkpoints stay loadable under any policy.
            state = Checkpointer(run.checkpoints, chief, worker_id(strategy),
                                 network=parts.network, loss=parts.loss, optimizer=parts.base)
            if resume and state.restore():
                logger.info("resumed %s at step %d", run.path, int(state.step.numpy()))
            train_step = make_train_step(strategy, parts.network, parts.loss, parts.optimizer,
                                         cfg.train.jit_compile)
        step = int(state.step.numpy())
        batches = iter(strategy.experimental_distribute_dataset(
            _training_dataset(cfg, data, step)))
        end_epoch = _EpochEnd(cfg, run, data, parts, state, chief)
        end_epoch.progress = progress and chief
        step, history, interrupted = _loop(cfg, step, batches, train_step, end_epoch,
                                           progress and chief)
    end_epoch.summaries.close()
    return TrainResult(run.path, step, step // cfg.train.steps_per_epoch, interrupted, history,
                       end_epoch.best if chief else None, policy, strategy.num_replicas_in_sync)
