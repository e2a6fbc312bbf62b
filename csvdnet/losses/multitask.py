"""The multi-task objective: every task's loss (:mod:`csvdnet.losses.tasks`), weighted."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import keras
from keras import ops

from csvdnet import DETECTION_TASKS, SCORE_TASK, SEGMENTATION_TASKS
from csvdnet.config import LossConfig
from csvdnet.losses.tasks import (DICE_SMOOTH, MSE_FOREGROUND_WEIGHT, Tensor, _binary_focal,
                                  _centernet, _check_dice, _coral, _has_foreground, _present,
                                  _segmentation, _soft_dice, _weighted_mse, masked_mean)


@keras.saving.register_keras_serializable(package="csvdnet")
class MultiTaskLoss(keras.layers.Layer):
    """Combine the per-task losses into one training objective.

    ``weighting="fixed"``: ``total = sum_t w_t L_t``. ``weighting="uncertainty"`` (Kendall, Gal &
    Cipolla 2018): one trainable log-variance ``s_t`` per task (weight > 0), initialised at 0, and
    ``total = sum_t exp(-s_t) L_t + s_t``; the fixed weights then only switch tasks on (> 0) or off.
    A task none of whose samples carries a label in the batch adds nothing, not even ``s_t``, since
    the regulariser alone would drive its log-variance down with no data to balance it.

    The layer owns the log-variances, so train its ``trainable_variables`` with the model's and
    track it in the checkpoint; ``get_config`` round-trips.

    Args:
        task_weights: Weight per task (``wmh, rssi, lacune, cmb, epvs, score``); tasks with weight
            0 or absent are ignored.
        weighting: ``"fixed"`` or ``"uncertainty"``.
        segmentation: ``"dice_focal"`` or ``"dice_bce"`` for ``wmh, rssi, lacune``.
        focal_gamma: Focal gamma of ``"dice_focal"``.
        heatmap: ``"centernet"`` or ``"mse"`` for ``cmb, epvs``.
        heatmap_alpha: CenterNet alpha.
        heatmap_beta: CenterNet beta.
        dice: Which samples the segmentation Dice averages over: ``"per_sample"`` (every
            labelled one) or ``"positive"`` (those holding a lesion; see
            :func:`segmentation_loss`).
        dice_smooth: Dice smoothing (tiny for lesions of a few tens of voxels; see
            :class:`csvdnet.config.LossConfig`).
        pos_weight: Lesion-voxel weight of the voxel term per segmentation task (default 1).
        task_focal_gamma: Focal gamma per segmentation task, overriding ``focal_gamma``.
        **kwargs: Base layer arguments.
    """

    def __init__(self, task_weights: Mapping[str, float] | None = None,
                 weighting: Literal["fixed", "uncertainty"] = "fixed",
                 segmentation: Literal["dice_focal", "dice_bce"] = "dice_focal",
                 focal_gamma: float = 2.0, heatmap: Literal["centernet", "mse"] = "centernet",
                 heatmap_alpha: float = 2.0, heatmap_beta: float = 4.0,
                 dice: Literal["per_sample", "positive"] = "per_sample",
                 dice_smooth: float = DICE_SMOOTH, pos_weight: Mapping[str, float] | None = None,
                 task_focal_gamma: Mapping[str, float] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if weighting not in ("fixed", "uncertainty"):
            raise ValueError(f"weighting must be 'fixed' or 'uncertainty', got {weighting!r}")
        if segmentation not in ("dice_focal", "dice_bce"):
            raise ValueError(
                f"segmentation must be 'dice_focal' or 'dice_bce', got {segmentation!r}")
        if heatmap not in ("centernet", "mse"):
            raise ValueError(f"heatmap must be 'centernet' or 'mse', got {heatmap!r}")
        _check_dice(dice)
        if task_weights is None:
            task_weights = LossConfig().task_weights
        self.task_weights = dict(task_weights)
        self.weighting = weighting
        self.segmentation = segmentation
        self.focal_gamma = focal_gamma
        self.heatmap = heatmap
        self.heatmap_alpha = heatmap_alpha
        self.heatmap_beta = heatmap_beta
        self.dice = dice
        self.dice_smooth = float(dice_smooth)
        self.pos_weight = {t: float(v) for t, v in (pos_weight or {}).items()}
        self.task_focal_gamma = {t: float(v) for t, v in (task_focal_gamma or {}).items()}
        self.tasks = tuple(t for t in (*SEGMENTATION_TASKS, *DETECTION_TASKS, SCORE_TASK)
                           if self.task_weights.get(t, 0.0) > 0.0)
        self.log_vars = {}
        if weighting == "uncertainty":
            self.log_vars = {t: self.add_weight(shape=(), initializer="zeros", name=f"log_var_{t}")
                             for t in self.tasks}
        self.built = True

    @classmethod
    def from_loss_config(cls, cfg: LossConfig, **kwargs: Any) -> "MultiTaskLoss":
        """Build from the ``losses`` section of the config."""
        return cls(**dataclasses.asdict(cfg), **kwargs)

    def _positive_dice(self, task: str) -> bool:
        return task in SEGMENTATION_TASKS and self.dice == "positive"

    def term_values(self, task: str, y_true: Tensor, y_pred: Tensor) -> list[Tensor]:
        """Per-sample values ``(B,)`` of each term of a task's loss.

        A task's loss is ``sum_i masked_mean(term_values[i], term_masks[i])``: one term, except
        the ``"positive"`` segmentation loss whose Dice and voxel terms average over different
        samples. :func:`csvdnet.training.step.replica_objective` needs the terms apart to
        normalise each by its global-batch count.
        """
        if task in SEGMENTATION_TASKS:
            gamma = self.focal_gamma if self.segmentation == "dice_focal" else 0.0
            gamma = self.task_focal_gamma.get(task, gamma)
            pos_weight = self.pos_weight.get(task, 1.0)
            if self._positive_dice(task):
                return [_soft_dice(y_true, y_pred, self.dice_smooth),
                        _binary_focal(y_true, y_pred, gamma, pos_weight)]
            return [_segmentation(y_true, y_pred, gamma, self.dice_smooth, pos_weight)]
        if task in DETECTION_TASKS:
            if self.heatmap == "centernet":
                return [_centernet(y_true, y_pred, self.heatmap_alpha, self.heatmap_beta)]
            return [_weighted_mse(y_true, y_pred, MSE_FOREGROUND_WEIGHT)]
        if task == SCORE_TASK:
            return [_coral(y_true, y_pred)]
        raise KeyError(f"unknown task {task!r}")

    def term_masks(self, task: str, y_true: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Per-sample weights ``(B,)`` of each term of :meth:`term_values`, from the targets and
        the label mask alone (so they are known before the forward pass). Every term's weights
        are within the label mask; the last term's are the label mask itself."""
        present = _present(mask, y_true)
        if self._positive_dice(task):
            return [present * _has_foreground(y_true), present]
        return [present]

    def term_counts(self, y_true: Mapping[str, Tensor],
                    masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{task: (n_terms,) float32}``: samples each term of each task averages over."""
        return {task: ops.stack([ops.sum(w) for w in
                                 self.term_masks(task, y_true[task], masks.get(task))])
                for task in self.tasks if task in y_true}

    def task_loss(self, task: str, y_true: Tensor, y_pred: Tensor,
                  mask: Tensor | None = None) -> Tensor:
        """The configured loss of one task (scalar, masked mean over the batch)."""
        values = self.term_values(task, y_true, y_pred)
        weights = self.term_masks(task, y_true, mask)
        total = masked_mean(values[0], weights[0])
        for value, weight in zip(values[1:], weights[1:]):
            total = total + masked_mean(value, weight)
        return total

    def call(self, y_true: Mapping[str, Tensor], y_pred: Mapping[str, Tensor],
             masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Per-task losses and their combination.

        Args:
            y_true: Targets by task; a task missing here is skipped (no label in this dataset).
            y_pred: Model outputs by task.
            masks: Label masks ``(B,)`` by task; a task missing here counts as present.

        Returns:
            ``{task: loss}`` for every task computed, plus ``"total"``: the training objective.
        """
        masks = masks or {}
        results: dict[str, Tensor] = {}
        total = ops.zeros((), "float32")
        for task in self.tasks:
            if task not in y_true or task not in y_pred:
                continue
            mask = masks.get(task)
            value = self.task_loss(task, y_true[task], y_pred[task], mask)
            results[task] = value
            if self.weighting == "fixed":
                total = total + self.task_weights[task] * value
                continue
            log_var = self.log_vars[task]
            term = ops.exp(-log_var) * value + log_var
            if mask is not None:
                term = ops.where(ops.sum(ops.cast(mask, "float32")) > 0.0, term, 0.0)
            total = total + term
        results["total"] = total
        return results

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "task_weights": dict(self.task_weights),
                "weighting": self.weighting, "segmentation": self.segmentation,
                "focal_gamma": self.focal_gamma, "heatmap": self.heatmap,
                "heatmap_alpha": self.heatmap_alpha, "heatmap_beta": self.heatmap_beta,
                "dice": self.dice, "dice_smooth": self.dice_smooth,
                "pos_weight": dict(self.pos_weight),
                "task_focal_gamma": dict(self.task_focal_gamma)}
