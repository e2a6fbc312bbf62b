"""Configuration: one frozen dataclass per concern, read from and written to YAML.

A config file is a YAML mapping whose top-level keys are the sections of :class:`Config`
(``data``, ``preprocess``, ``model``, ``losses``, ``train``, ``inference``, ``export``). Every
key is checked before any compute: an unknown key or a value of the wrong type raises
:class:`~csvdnet.errors.CsvdnetInputError` naming the file and the dotted key.

Overrides from the command line use the same dotted keys: ``train.epochs=3``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.errors import CsvdnetInputError
from csvdnet.scoring import RULE_SETS

Triple = tuple[float, float, float]
IntTriple = tuple[int, int, int]
# Built from the rule sets themselves, so a config names only rule sets that exist and a wrong
# name is reported with the file and the dotted key like any other bad value.
RuleSetName = Literal[tuple(RULE_SETS)]  # type: ignore[valid-type]


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
            extent and count over the whole brain, gradient stopped: ``models.HeadSummary``).
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
    score_inputs: Literal["encoder", "encoder_and_heads"] = "encoder"


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


# --------------------------------------------------------------------------------------------
# Strict conversion from plain data (YAML / JSON) to the dataclasses.

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise a CsvdnetInputError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(expected: str) -> CsvdnetInputError:
        return CsvdnetInputError(source, f"{where}: expected {expected}, got {value!r}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise bad(f"a mapping for section {tp.__name__}")
        return _from_mapping(tp, value, where, source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, source)
            except CsvdnetInputError as exc:
                errors.append(exc)
        raise bad(" or ".join(_type_name(a) for a in args))
    if origin is Literal:
        if value not in args:
            raise bad("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin is tuple:
        if isinstance(value, (int, float)) and len(args) > 1 and args[-1] is not Ellipsis \
                and len(set(args)) == 1 and not isinstance(value, bool):
            value = [value] * len(args)  # a scalar for an isotropic triple
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list ({_type_name(tp)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad(f"a list of {len(args)} values")
        return tuple(_convert(v, a, f"{where}[{i}]", source)
                     for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        kt, vt = args
        return {_convert(k, kt, where, source): _convert(v, vt, f"{where}.{k}", source)
                for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug in this module


def _from_mapping(cls: type, data: Mapping[str, Any], where: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise CsvdnetInputError(
            source, f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        sub = f"{where}.{key}" if where else key
        kwargs[key] = _convert(value, hints[key], sub, source)
    return cls(**kwargs)


def from_dict(cls: type, data: Mapping[str, Any], source: str = "<config>") -> Any:
    """Build dataclass ``cls`` from a plain mapping, strictly.

    Args:
        cls: A config dataclass (e.g. :class:`Config`, :class:`PreprocessConfig`).
        data: Plain data (e.g. parsed YAML / JSON).
        source: Name of the file the data came from, for error messages.

    Raises:
        CsvdnetInputError: Unknown key or wrong type, naming ``source`` and the dotted key.
    """
    return _from_mapping(cls, data or {}, "", source)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-data form of a config dataclass (tuples as lists), for YAML / JSON."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise CsvdnetInputError("<override>", f"{text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to plain config data."""
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise CsvdnetInputError("<override>", f"{text!r}: {k} is not a section")
        node[keys[-1]] = value
    return data


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Relative paths in ``data.cohort``, ``data.cache``, ``data.val_cohort`` and ``train.run_dir``
    stay as written: they are resolved against the current directory, like any CLI path.

    Raises:
        CsvdnetInputError: Missing or unreadable file, invalid YAML, unknown key, wrong type.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise CsvdnetInputError(p, "config file not found")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise CsvdnetInputError(p, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise CsvdnetInputError(p, "a config must be a YAML mapping of sections")
    data = apply_overrides(data, list(overrides))
    return from_dict(Config, data, source)


def dump_config(cfg: Any) -> str:
    """YAML text of a config dataclass (round-trips through :func:`from_dict`)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
