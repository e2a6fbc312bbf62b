"""The training sections: :class:`LossConfig` (per-task losses and their weighting) and
:class:`TrainConfig` (the training run: schedule, precision, strategy)."""

from __future__ import annotations

import dataclasses
from typing import Literal, Mapping

from csvdnet import SEGMENTATION_TASKS
from csvdnet.config.values import _check


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Per-task losses and how they are weighted.

    Attributes:
        task_weights: Fixed weight per task (wmh, rssi, lacune, cmb, epvs, score).
        weighting: ``"fixed"`` or ``"uncertainty"`` (learned homoscedastic weights).
        segmentation: ``"dice_focal"`` or ``"dice_bce"``.
        focal_gamma: Focal loss gamma.
        heatmap: ``"centernet"`` (penalty-reduced focal) or ``"mse"`` (foreground-weighted).
        heatmap_alpha: CenterNet alpha.
        heatmap_beta: CenterNet beta.
        dice: Samples the segmentation Dice averages over: ``"per_sample"`` (every labelled
            one) or ``"positive"`` (those holding a lesion; lesion-free ones keep the voxel term).
        dice_smooth: Dice smoothing ``s`` in ``1 - (2|yp| + s) / (|y| + |p| + s)``. With ``s`` = 1 a
            lesion patch of T voxels costs only ``1 - 1 / (T + 1)`` for an empty prediction, and
            the smoothing pushes every background voxel down ~N / T**2 times harder than the
            lesion pulls: for lesions of tens of voxels (lacunes, infarcts) use a tiny value.
        pos_weight: Weight of lesion voxels in the voxel term, per segmentation task (default 1).
            A lacune patch's lesion fraction is ~1e-4: unweighted, the voxel term's optimum is a
            head that says "no" everywhere.
        task_focal_gamma: Focal gamma per segmentation task, overriding ``focal_gamma`` (0 =
            cross-entropy, whose gradient does not vanish on a quiet head as the focal one does).
    """

    task_weights: dict[str, float] = dataclasses.field(default_factory=lambda: {
        "wmh": 1.0, "rssi": 1.0, "lacune": 1.0, "cmb": 1.0, "epvs": 1.0, "score": 0.5})
    weighting: Literal["fixed", "uncertainty"] = "fixed"
    segmentation: Literal["dice_focal", "dice_bce"] = "dice_focal"
    focal_gamma: float = 2.0
    heatmap: Literal["centernet", "mse"] = "centernet"
    heatmap_alpha: float = 2.0
    heatmap_beta: float = 4.0
    dice: Literal["per_sample", "positive"] = "per_sample"
    dice_smooth: float = 1.0
    pos_weight: dict[str, float] = dataclasses.field(default_factory=dict)
    task_focal_gamma: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        def by_task(values: Mapping[str, float], low: float) -> bool:
            return all(t in SEGMENTATION_TASKS and v >= low for t, v in values.items())

        _check("losses", {
            "dice_smooth": (self.dice_smooth > 0, f"must be > 0, got {self.dice_smooth}"),
            "pos_weight": (by_task(self.pos_weight, 1.0),
                           f"keys must be among {', '.join(SEGMENTATION_TASKS)} and values >= 1, "
                           f"got {dict(self.pos_weight)}"),
            "task_focal_gamma": (by_task(self.task_focal_gamma, 0.0),
                                 f"keys must be among {', '.join(SEGMENTATION_TASKS)} and values "
                                 f">= 0, got {dict(self.task_focal_gamma)}"),
        })


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training run.

    Attributes:
        run_dir: Run directory (resolved config, TensorBoard logs, checkpoints).
        epochs: Number of epochs.
        steps_per_epoch: Optimizer steps per epoch.
        batch_size: Global batch size (divisible by the number of replicas).
        learning_rate: Peak learning rate (after warm-up).
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps before cosine decay.
        ema: Keep an exponential moving average of the weights (validation and saved weights
            use the average).
        ema_momentum: Decay of the moving average per step (0.999: ~1,000 steps of memory).
        mixed_precision: ``"auto"``, ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        strategy: ``"auto"``, ``"default"``, ``"mirrored"`` or ``"multi_worker"``.
        jit_compile: XLA-compile the train step (fast on GPU, slow on CPU).
        validate_every: Validate every N epochs.
        seed: Global seed.
        val_cache: Preprocessed cache of separate validation subjects; if unset, a
            ``data.val_fraction`` split of ``data.cache`` (drawn with ``data.seed``) validates.
    """

    run_dir: str = "runs/csvdnet"
    epochs: int = 50
    steps_per_epoch: int = 100
    batch_size: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    ema: bool = False
    ema_momentum: float = 0.999
    mixed_precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = "auto"
    jit_compile: bool = False
    validate_every: int = 1
    seed: int = 0
    val_cache: str | None = None

    def __post_init__(self) -> None:
        _check("train", {
            "epochs": (self.epochs >= 1, f"must be >= 1, got {self.epochs}"),
            "steps_per_epoch": (self.steps_per_epoch >= 1,
                                f"must be >= 1, got {self.steps_per_epoch}"),
            "batch_size": (self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"),
            "learning_rate": (self.learning_rate > 0, f"must be > 0, got {self.learning_rate}"),
            "weight_decay": (self.weight_decay >= 0, f"must be >= 0, got {self.weight_decay}"),
            "warmup_steps": (self.warmup_steps >= 0, f"must be >= 0, got {self.warmup_steps}"),
            "ema_momentum": (0.0 < self.ema_momentum < 1.0,
                             f"must be in (0, 1), got {self.ema_momentum}"),
            "validate_every": (self.validate_every >= 1,
                               f"must be >= 1, got {self.validate_every}"),
        })
