"""The input sections: :class:`PreprocessConfig` (how a subject's sequences become one array) and
:class:`DataConfig` (where the training data is and how patches are drawn from it)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.config.values import IntTriple, Triple, _check, _positive


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
