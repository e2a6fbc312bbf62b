"""The config sections: one frozen dataclass per concern, each checking its own ranges, and
:class:`Config`, whose ``validate()`` checks the sections against each other."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

from csvdnet import DEFAULT_SEQUENCES, SEGMENTATION_TASKS
from csvdnet.errors import CsvdnetInputError
from csvdnet.scoring import RULE_SETS

Triple = tuple[float, float, float]
IntTriple = tuple[int, int, int]
# Built from the rule sets themselves, so a config names only rule sets that exist and a wrong
# name is reported with the file and the dotted key like any other bad value.
RuleSetName = Literal[tuple(RULE_SETS)]  # type: ignore[valid-type]


class ConfigValueError(CsvdnetInputError):
    """A config value out of its range: names the dotted key (and the file, once known).

    Attributes:
        key: The dotted key, e.g. ``preprocess.spacing``.
    """

    def __init__(self, key: str, reason: str, source: str = "<config>"):
        self.key = key
        super().__init__(source, f"{key}: {reason}")
        self.reason = reason  # without the key: __reduce__ and re-raising rebuild the message

    def __reduce__(self):
        return (type(self), (self.key, self.reason, self.path))


def _check(section: str, problems: Mapping[str, tuple[bool, str]]) -> None:
    """Raise :class:`ConfigValueError` for the first ``key: (ok, reason)`` that is not ok."""
    for key, (ok, reason) in problems.items():
        if not ok:
            raise ConfigValueError(f"{section}.{key}" if section else key, reason)


def _positive(values: Any) -> bool:
    return all(v > 0 for v in values)



@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """How a subject's sequences become one normalised channels-last array.

    Attributes:
        reference: Sequence whose grid is the subject's reference grid (outputs go back to it).
        spacing: Working voxel size in mm (x, y, z in canonical RAS); ``None`` keeps the
            reference grid's voxel size.
        register: Rigidly co-register each sequence to the reference (mutual information).
            Switch off when inputs are already co-registered.
        brain_mask: ``"auto"`` derives a brain mask from the images; ``"none"`` uses the whole
            field of view; ``"label"`` uses the subject's ``brain_mask`` label.
        crop_margin_mm: Margin kept around the brain bounding box.
        clip_percentiles: Intensity percentiles (inside the brain) clipped before z-scoring.
        pad_multiple: Pad the cropped array to a multiple of this (2 ** network depth).
        interpolation_order: Spline order for resampling images (1 = trilinear).
    """

    reference: str = "flair"
    spacing: Triple | None = (1.0, 1.0, 1.0)
    register: bool = True
    brain_mask: Literal["auto", "none", "label"] = "auto"
    crop_margin_mm: float = 4.0
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    pad_multiple: int = 16
    interpolation_order: int = 1

    def __post_init__(self) -> None:
        lo, hi = self.clip_percentiles
        _check("preprocess", {
            "brain_mask": (self.brain_mask in ("auto", "none", "label"),
                           f"must be 'auto', 'none' or 'label', got {self.brain_mask!r}"),
            "spacing": (self.spacing is None or _positive(self.spacing),
                        f"must be positive, got {self.spacing and list(self.spacing)}"),
            "crop_margin_mm": (self.crop_margin_mm >= 0,
                               f"must be >= 0, got {self.crop_margin_mm}"),
            "clip_percentiles": (0.0 <= lo < hi <= 100.0,
                                 f"must satisfy 0 <= low < high <= 100, got {[lo, hi]}"),
            "pad_multiple": (self.pad_multiple >= 1, f"must be >= 1, got {self.pad_multiple}"),
            "interpolation_order": (0 <= self.interpolation_order <= 5,
                                    f"must be a spline order 0..5, got {self.interpolation_order}"),
        })


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training data is and how patches are drawn from it.

    Attributes:
        cohort: Manifest CSV or cohort folder of the training subjects.
        cache: Folder of the preprocessed cache (written by ``csvdnet preprocess``).
        val_cohort: Separate validation cohort; if unset, ``val_fraction`` of ``cohort`` is held out.
        val_fraction: Fraction of subjects held out for validation when ``val_cohort`` is unset.
        channels: Input sequences, in channel order.
        patch_size: Training patch size in voxels at the working spacing.
        heatmap_sigma_mm: Gaussian sigma of the CMB / EPVS detection heatmaps.
        lesion_oversample: Probability that a patch is centred on a lesion voxel / point.
        lesion_task_weights: Relative odds of each dense task being the one a lesion-centred
            patch is centred on (among the tasks the subject has lesions of); unnamed tasks
            weigh 1. Raise a rare, hard marker (lacunes) above the frequent ones.
        whole_brain_every: Every N-th training batch is a batch of whole (padded) brains so that
            the ordinal score head sees whole-brain features (0 = never).
        modality_dropout: Probability of blanking each input channel (never all of them).
        augment: Enable in-graph augmentation.
        seed: Seed of the data pipeline (stateless random ops).
    """

    cohort: str | None = None
    cache: str | None = None
    val_cohort: str | None = None
    val_fraction: float = 0.2
    channels: tuple[str, ...] = DEFAULT_SEQUENCES
    patch_size: IntTriple = (64, 64, 64)
    heatmap_sigma_mm: float = 2.0
    lesion_oversample: float = 0.6
    lesion_task_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    whole_brain_every: int = 4
    modality_dropout: float = 0.1
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS

        dense = SEGMENTATION_TASKS + DETECTION_TASKS
        _check("data", {
            "val_fraction": (0.0 <= self.val_fraction < 1.0,
                             f"must be in [0, 1), got {self.val_fraction}"),
            "channels": (0 < len(self.channels) == len(set(self.channels)),
                         f"must name each sequence once, got {list(self.channels)}"),
            "patch_size": (_positive(self.patch_size),
                           f"must be positive, got {list(self.patch_size)}"),
            "heatmap_sigma_mm": (self.heatmap_sigma_mm > 0,
                                 f"must be > 0, got {self.heatmap_sigma_mm}"),
            "lesion_oversample": (0.0 <= self.lesion_oversample <= 1.0,
                                  f"must be in [0, 1], got {self.lesion_oversample}"),
            "lesion_task_weights": (
                set(self.lesion_task_weights) <= set(dense)
                and all(w >= 0 for w in self.lesion_task_weights.values()),
                f"must map dense tasks ({', '.join(dense)}) to weights >= 0, "
                f"got {self.lesion_task_weights}"),
            "whole_brain_every": (self.whole_brain_every >= 0,
                                  f"must be >= 0, got {self.whole_brain_every}"),
            "modality_dropout": (0.0 <= self.modality_dropout <= 1.0,
                                 f"must be in [0, 1], got {self.modality_dropout}"),
        })


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The multi-task network.

    Attributes:
        input_channels: Number of input channels (= len(data.channels)).
        base_filters: Filters of the first encoder level; doubled at each level.
        depth: Number of downsamplings (inputs must be a multiple of 2 ** depth).
        blocks_per_level: Residual blocks at each encoder level (length depth + 1).
        max_filters: Cap on filters per level.
        norm_groups: GroupNormalization groups (-1 = instance norm).
        decoder: ``"shared"`` U-Net decoder for all dense heads or ``"per_head"`` light decoders.
        score_classes: Ordinal classes of the total SVD score (0..4 -> 5).
        dropout: Dropout before the ordinal head.
        head_prior: Initial foreground probability per dense head (its sigmoid bias starts at
            the logit of it); a task not named starts at ``models.heads.HEAD_PRIOR``. Near the
            true foreground fraction of a patch, the soft Dice of a rare-lesion head has a
            gradient from the first step; far above it, AdamW must first walk the bias down
            (see training/README.md).
        score_inputs: What the ordinal score head reads: ``"encoder"`` (globally pooled deepest
            features) or ``"encoder_and_heads"`` (also each dense head's peak probability,
            extent and count over the whole brain, gradient stopped: ``models.HeadSummary``) or
            ``"points"`` (the sum of the four Staals points, each a logistic unit on its own
            head's whole-brain summary: ``models.PointScore``; needs ``score_classes`` 5).
    """

    input_channels: int = len(DEFAULT_SEQUENCES)
    base_filters: int = 16
    depth: int = 4
    blocks_per_level: tuple[int, ...] = (1, 2, 2, 2, 2)
    max_filters: int = 256
    norm_groups: int = 8
    decoder: Literal["shared", "per_head"] = "shared"
    score_classes: int = 5
    dropout: float = 0.2
    head_prior: dict[str, float] = dataclasses.field(default_factory=dict)
    score_inputs: Literal["encoder", "encoder_and_heads", "points"] = "encoder"

    def __post_init__(self) -> None:
        from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS

        dense = SEGMENTATION_TASKS + DETECTION_TASKS
        blocks = list(self.blocks_per_level)
        _check("model", {
            "input_channels": (self.input_channels >= 1, "must be >= 1"),
            "base_filters": (self.base_filters >= 1, "must be >= 1"),
            "depth": (self.depth >= 1, "must be >= 1"),
            "blocks_per_level": (
                len(blocks) == self.depth + 1 and min(blocks, default=0) >= 1,
                f"needs depth + 1 = {self.depth + 1} entries, each >= 1, got {blocks}"),
            "max_filters": (self.max_filters >= 1, "must be >= 1"),
            "norm_groups": (self.norm_groups == -1 or self.norm_groups >= 1,
                            "must be -1 or >= 1"),
            "decoder": (self.decoder in ("shared", "per_head"), "must be 'shared' or 'per_head'"),
            "score_classes": (self.score_classes >= 2 and (
                self.score_inputs != "points" or self.score_classes == 5),
                "must be >= 2 (5 with score_inputs 'points': the total of four points)"),
            "score_inputs": (self.score_inputs in ("encoder", "encoder_and_heads", "points"),
                             "must be 'encoder', 'encoder_and_heads' or 'points'"),
            "head_prior": (
                set(self.head_prior) <= set(dense)
                and all(0.0 < float(v) < 1.0 for v in self.head_prior.values()),
                f"must map dense tasks ({', '.join(dense)}) to probabilities in (0, 1), "
                f"got {self.head_prior}"),
            "dropout": (0.0 <= self.dropout < 1.0, "must be in [0, 1)"),
        })


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


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """Sliding-window prediction and post-processing.

    Attributes:
        window: Sliding-window size in voxels (multiple of 2 ** depth).
        overlap: Fractional overlap between windows.
        gaussian_blend: Blend windows with a Gaussian importance map.
        mirror: Test-time mirroring along the left-right axis.
        thresholds: Probability / heatmap thresholds per task.
        min_lesion_mm3: Components smaller than this are dropped, per segmentation task.
        rule_sets: Scoring rule sets reported, by name (keys of
            :data:`csvdnet.scoring.RULE_SETS`: ``"staals-2014"``, ``"caa-svd-2016"``).
    """

    window: IntTriple = (128, 128, 128)
    overlap: float = 0.25
    gaussian_blend: bool = True
    mirror: bool = False
    thresholds: dict[str, float] = dataclasses.field(default_factory=lambda: {
        "wmh": 0.5, "rssi": 0.5, "lacune": 0.5, "cmb": 0.3, "epvs": 0.3})
    min_lesion_mm3: dict[str, float] = dataclasses.field(default_factory=lambda: {
        "wmh": 3.0, "rssi": 10.0, "lacune": 10.0})
    rule_sets: tuple[RuleSetName, ...] = ("staals-2014", "caa-svd-2016")

    def __post_init__(self) -> None:
        _check("inference", {
            "window": (_positive(self.window), f"must be positive, got {list(self.window)}"),
            "overlap": (0.0 <= self.overlap < 1.0, f"must be in [0, 1), got {self.overlap}"),
            "thresholds": (all(0.0 < v < 1.0 for v in self.thresholds.values()),
                           f"must be probabilities in (0, 1), got {self.thresholds}"),
            "min_lesion_mm3": (all(v >= 0 for v in self.min_lesion_mm3.values()),
                               f"must be >= 0, got {self.min_lesion_mm3}"),
            "rule_sets": (all(name in RULE_SETS for name in self.rule_sets),
                          f"must name rule sets of {', '.join(RULE_SETS)}, "
                          f"got {list(self.rule_sets)}"),
        })


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """SavedModel export.

    Attributes:
        name: Model name (the TF Serving model directory).
        version: Model version (the numbered sub-directory).
        description: Training data description written into metadata.json.
    """

    name: str = "csvdnet"
    version: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        _check("export", {
            "name": (bool(self.name) and "/" not in self.name and not self.name.startswith("."),
                     f"must be a folder name, got {self.name!r}"),
            "version": (self.version >= 1, f"must be >= 1, got {self.version}"),
        })


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole configuration, one section per concern."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    preprocess: PreprocessConfig = dataclasses.field(default_factory=PreprocessConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    losses: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def validate(self, replicas: int = 1, *, model: bool = True) -> Config:
        """Check what no single section can: the sections against each other.

        Every entry point (train, preprocess, predict, export) calls it once the config is
        loaded; each section has already checked its own ranges when it was built.

        Args:
            replicas: Replicas in sync of the training strategy (the global batch is split).
            model: Also check the network against the data (channels, patch, window);
                ``False`` for preprocessing, which builds no network.

        Returns:
            ``self``, so that ``cfg = load_config(path).validate()`` reads naturally.

        Raises:
            ConfigValueError: The first problem found, naming the dotted key.
        """
        _check("", {"preprocess.reference": (
            self.preprocess.reference in self.data.channels,
            f"{self.preprocess.reference!r} is not one of data.channels "
            f"({', '.join(self.data.channels)})")})
        if not model:
            return self
        stride = 2 ** self.model.depth
        _check("", {
            "train.batch_size": (
                self.train.batch_size % replicas == 0,
                f"must be a positive multiple of the {replicas} replicas, "
                f"got {self.train.batch_size}"),
            "model.input_channels": (
                self.model.input_channels == len(self.data.channels),
                f"is {self.model.input_channels} but data.channels names "
                f"{len(self.data.channels)} sequences ({', '.join(self.data.channels)})"),
            "data.patch_size": (
                all(p >= stride and p % stride == 0 for p in self.data.patch_size),
                f"must be multiples of 2 ** model.depth = {stride}, "
                f"got {list(self.data.patch_size)}"),
            "inference.window": (
                all(w >= stride and w % stride == 0 for w in self.inference.window),
                f"must be multiples of 2 ** model.depth = {stride}, "
                f"got {list(self.inference.window)}"),
        })
        return self
