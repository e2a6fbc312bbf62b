"""Per-task losses and the CORAL ordinal helpers (the multi-task combination: ``multitask``).

Every loss comes as a plain function and a ``keras.losses.Loss`` subclass computing the same thing:

- segmentation (wmh, rssi, lacune): :func:`segmentation_loss` / :class:`SegmentationLoss`
  = :func:`soft_dice_loss` / :class:`SoftDiceLoss` + :func:`binary_focal_loss` /
  :class:`BinaryFocalLoss`;
- heatmaps (cmb, epvs): :func:`centernet_focal_loss` / :class:`CenterNetFocalLoss` or
  :func:`weighted_mse_loss` / :class:`WeightedMSELoss`;
- ordinal score: :func:`coral_loss` / :class:`CoralLoss`, with :func:`ordinal_targets` and
  :func:`~csvdnet.models.coral_head.ordinal_decode` (re-exported);
- all tasks together: :class:`~csvdnet.losses.multitask.MultiTaskLoss` (fixed or learned uncertainty weights).

Label masks: a subject may lack any label. Each loss is first computed **per sample** (shape
``(B,)``) and then averaged over the samples whose label is present: the plain functions take
``mask`` (``(B,)``, 1 = present, 0 = absent), the Loss classes take the same vector as
``sample_weight`` (their default reduction is ``"mean_with_sample_weight"``). A masked sample
contributes exactly zero loss and zero gradient, and a batch with no label present gives 0, not
NaN. The target of a masked sample is still read, so the data pipeline must fill it with finite
placeholders (zeros); its value never matters.

All losses compute in float32 whatever the inputs' dtype. The plain functions return per-replica
values; a custom training loop under a distribution strategy scales them as usual (the Loss classes
do that themselves through Keras's reduction).
"""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import ops

from csvdnet.data.targets import ordinal_targets  # one definition, shared with the pipeline
# Re-exported for older callers: the decoding lives beside the head whose logits it decodes.
from csvdnet.models.coral_head import ordinal_decode  # noqa: F401

DICE_MODES = ("per_sample", "positive")
"""How the segmentation Dice treats samples: every labelled sample, or only those with a lesion."""
DICE_SMOOTH = 1.0
"""Dice smoothing used by :class:`~csvdnet.losses.multitask.MultiTaskLoss` (the functions' default)."""
MSE_FOREGROUND_WEIGHT = 100.0
"""Heatmap foreground weight used by :class:`~csvdnet.losses.multitask.MultiTaskLoss` (the functions' default)."""
EPSILON = 1e-7
"""Probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logs."""
PEAK_THRESHOLD = 1.0 - 1e-3
"""Heatmap voxels at or above this value are peaks (object centres rendered as exactly 1)."""

Tensor = Any


# --------------------------------------------------------------------------------------------
# Shared helpers.

def _per_sample(x: Tensor) -> Tensor:
    """``(B, ...)`` -> ``(B, N)`` float32, so every reduction below is over one sample's voxels."""
    x = ops.cast(x, "float32")
    return ops.reshape(x, (ops.shape(x)[0], -1))


def masked_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of per-sample ``values`` over the samples whose label is present.

    Args:
        values: Per-sample losses, ``(B,)``.
        mask: ``(B,)`` (or ``(B, 1)``) weights, 1 = label present, 0 = absent; None = all present.

    Returns:
        Scalar float32: ``sum(mask * values) / sum(mask)``, 0 when no label is present.
    """
    values = ops.cast(values, "float32")
    if mask is None:
        return ops.mean(values)
    mask = ops.reshape(ops.cast(mask, "float32"), (-1,))
    return ops.divide_no_nan(ops.sum(values * mask), ops.sum(mask))


def _clip_probabilities(y_pred: Tensor) -> Tensor:
    return ops.clip(_per_sample(y_pred), EPSILON, 1.0 - EPSILON)


# --------------------------------------------------------------------------------------------
# Per-sample losses, shape (B,). The public functions and Loss classes are thin wrappers.

def _soft_dice(y_true: Tensor, y_pred: Tensor, smooth: float) -> Tensor:
    y_true, y_pred = _per_sample(y_true), _per_sample(y_pred)
    intersection = ops.sum(y_true * y_pred, axis=1)
    total = ops.sum(y_true, axis=1) + ops.sum(y_pred, axis=1)
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


def _binary_focal(y_true: Tensor, y_pred: Tensor, gamma: float,
                  pos_weight: float = 1.0) -> Tensor:
    y_true, p = _per_sample(y_true), _clip_probabilities(y_pred)
    bce = -(pos_weight * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
    if gamma == 0.0:
        return ops.mean(bce, axis=1)
    p_true = y_true * p + (1.0 - y_true) * (1.0 - p)
    return ops.mean(ops.power(1.0 - p_true, gamma) * bce, axis=1)


def _segmentation(y_true: Tensor, y_pred: Tensor, gamma: float, smooth: float,
                  pos_weight: float = 1.0) -> Tensor:
    return _soft_dice(y_true, y_pred, smooth) + _binary_focal(y_true, y_pred, gamma, pos_weight)


def _has_foreground(y_true: Tensor) -> Tensor:
    """``(B,)`` float32: 1 where the sample's binary target has a foreground voxel."""
    return ops.cast(ops.max(_per_sample(y_true), axis=1) > 0.5, "float32")


def _present(mask: Tensor | None, y_true: Tensor) -> Tensor:
    """The label mask as ``(B,)`` float32; all ones when None."""
    if mask is None:
        return ops.ones((ops.shape(y_true)[0],), "float32")
    return ops.reshape(ops.cast(mask, "float32"), (-1,))


def _check_dice(dice: str) -> None:
    if dice not in DICE_MODES:
        raise ValueError(f"dice must be one of {', '.join(map(repr, DICE_MODES))}, got {dice!r}")


def _centernet(y_true: Tensor, y_pred: Tensor, alpha: float, beta: float) -> Tensor:
    y_true, p = _per_sample(y_true), _clip_probabilities(y_pred)
    peaks = ops.cast(y_true >= PEAK_THRESHOLD, "float32")
    positive = peaks * ops.power(1.0 - p, alpha) * ops.log(p)
    # Penalty reduction: background near a peak (high Gaussian target) is punished less.
    negative = ((1.0 - peaks) * ops.power(1.0 - y_true, beta)
                * ops.power(p, alpha) * ops.log(1.0 - p))
    # CenterNet normalises by the number of peaks; with none, by 1 (background term only).
    num_peaks = ops.maximum(ops.sum(peaks, axis=1), 1.0)
    return -(ops.sum(positive, axis=1) + ops.sum(negative, axis=1)) / num_peaks


def _weighted_mse(y_true: Tensor, y_pred: Tensor, foreground_weight: float) -> Tensor:
    y_true, y_pred = _per_sample(y_true), _per_sample(y_pred)
    weights = 1.0 + foreground_weight * y_true
    return ops.sum(weights * ops.square(y_pred - y_true), axis=1) / ops.sum(weights, axis=1)


def _coral(y_true: Tensor, logits: Tensor) -> Tensor:
    logits = ops.cast(logits, "float32")
    levels = _as_levels(y_true, logits.shape[-1] + 1)
    # Stable binary cross-entropy from logits: log(1 - sigmoid(z)) = log_sigmoid(z) - z.
    log_p = ops.log_sigmoid(logits)
    return -ops.sum(levels * log_p + (1.0 - levels) * (log_p - logits), axis=1)


def _as_levels(y_true: Tensor, num_classes: int) -> Tensor:
    """Cumulative levels ``(B, K-1)`` from either levels ``(B, K-1)`` or integer scores ``(B,)``."""
    y_true = ops.cast(y_true, "float32")
    if len(y_true.shape) == 2 and y_true.shape[-1] == num_classes - 1:
        return y_true
    return ordinal_targets(ops.reshape(y_true, (-1,)), num_classes)


# --------------------------------------------------------------------------------------------
# Plain functions: scalar, mean over the present samples.

def soft_dice_loss(y_true: Tensor, y_pred: Tensor, mask: Tensor | None = None,
                   smooth: float = DICE_SMOOTH) -> Tensor:
    """Soft Dice loss ``1 - (2 |y p| + s) / (|y| + |p| + s)``, per sample, masked mean.

    Computed per sample so that a sample with an empty target is judged on its own (an empty
    prediction scores 0 loss) instead of disappearing into a batch Dice. ``smooth`` = 1 keeps the
    gradient informative on empty targets (a false positive of n voxels costs n / (n + 1)).

    Args:
        y_true: Binary target ``(B, X, Y, Z[, 1])``.
        y_pred: Probabilities, same shape.
        mask: Label mask ``(B,)``; None = all present.
        smooth: Smoothing added to numerator and denominator.
    """
    return masked_mean(_soft_dice(y_true, y_pred, smooth), mask)


def binary_focal_loss(y_true: Tensor, y_pred: Tensor, mask: Tensor | None = None,
                      gamma: float = 2.0, pos_weight: float = 1.0) -> Tensor:
    """Voxel-mean binary focal loss ``-(1 - p_t) ** gamma * log(p_t)``, per sample, masked mean.

    ``gamma = 0`` is the binary cross-entropy. Lesion voxels weigh ``pos_weight`` (the mean is
    still over all voxels).

    Args:
        y_true: Binary target ``(B, X, Y, Z[, 1])``.
        y_pred: Probabilities, same shape.
        mask: Label mask ``(B,)``; None = all present.
        gamma: Focusing parameter.
        pos_weight: Weight of the lesion voxels' term.
    """
    return masked_mean(_binary_focal(y_true, y_pred, gamma, pos_weight), mask)


def segmentation_loss(y_true: Tensor, y_pred: Tensor, mask: Tensor | None = None,
                      gamma: float = 2.0, smooth: float = DICE_SMOOTH,
                      dice: Literal["per_sample", "positive"] = "per_sample",
                      pos_weight: float = 1.0) -> Tensor:
    """Soft Dice + binary focal (``gamma = 0``: Dice + BCE), per sample, masked mean.

    Dice handles the extreme foreground / background imbalance at the lesion level; the voxel
    term gives well-behaved gradients early on when Dice is flat (nnU-Net's Dice + CE recipe).

    ``dice="per_sample"`` averages the Dice term over every labelled sample, so a lesion-free
    sample scores 0 only for an empty prediction. ``dice="positive"`` averages it over the
    labelled samples that hold a lesion and leaves the lesion-free ones to the voxel term alone:
    for a rare lesion (lacunes, RSSI), where most training patches hold none, the per-sample Dice
    of the empty patches outweighs the few lesion patches and "predict nothing" wins; the
    positive-sample Dice keeps the lesion patches' pull (nnU-Net's batch Dice serves the same end).
    A batch with no lesion then gives only the voxel term (no NaN).

    Args:
        y_true: Binary target ``(B, X, Y, Z[, 1])``.
        y_pred: Probabilities, same shape.
        mask: Label mask ``(B,)``; None = all present.
        gamma: Focal gamma.
        smooth: Dice smoothing.
        dice: ``"per_sample"`` or ``"positive"`` (see above).
        pos_weight: Weight of lesion voxels in the voxel term.
    """
    _check_dice(dice)
    if dice == "per_sample":
        return masked_mean(_segmentation(y_true, y_pred, gamma, smooth, pos_weight), mask)
    present = _present(mask, y_true)
    return (masked_mean(_soft_dice(y_true, y_pred, smooth), present * _has_foreground(y_true))
            + masked_mean(_binary_focal(y_true, y_pred, gamma, pos_weight), present))


def centernet_focal_loss(y_true: Tensor, y_pred: Tensor, mask: Tensor | None = None,
                         alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """Penalty-reduced pixel-wise focal loss (CenterNet, Zhou et al. 2019), per sample.

    ``-1/N sum( (1-p)^alpha log p  at peaks;  (1-y)^beta p^alpha log(1-p)  elsewhere )``, N = number
    of peaks (voxels with target >= :data:`PEAK_THRESHOLD`), or 1 when the sample has none so that
    an empty heatmap still penalises false positives without dividing by zero.

    Args:
        y_true: Gaussian heatmap target ``(B, X, Y, Z[, 1])``, exactly 1 at object centres.
        y_pred: Predicted heatmap (probabilities), same shape.
        mask: Label mask ``(B,)``; None = all present.
        alpha: Focusing exponent.
        beta: Penalty-reduction exponent around peaks.
    """
    return masked_mean(_centernet(y_true, y_pred, alpha, beta), mask)


def weighted_mse_loss(y_true: Tensor, y_pred: Tensor, mask: Tensor | None = None,
                      foreground_weight: float = MSE_FOREGROUND_WEIGHT) -> Tensor:
    """Foreground-weighted mean squared error on heatmaps, per sample, masked mean.

    Voxel weight ``1 + foreground_weight * y``: without it the near-empty background would teach
    the network to predict 0 everywhere (a few Gaussians cover well under 1 % of a patch).

    Args:
        y_true: Heatmap target ``(B, X, Y, Z[, 1])`` in [0, 1].
        y_pred: Predicted heatmap, same shape.
        mask: Label mask ``(B,)``; None = all present.
        foreground_weight: Extra weight per unit of target value.
    """
    return masked_mean(_weighted_mse(y_true, y_pred, foreground_weight), mask)


def coral_loss(y_true: Tensor, logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """CORAL loss: binary cross-entropy summed over the K-1 cumulative tasks, masked mean.

    Summed, as in Cao et al. (2020), so one mis-ranked class boundary costs one BCE whatever K.

    Args:
        y_true: Integer scores ``(B,)`` or cumulative levels ``(B, K - 1)``
            (see :func:`ordinal_targets`).
        logits: Cumulative logits ``(B, K - 1)``.
        mask: Label mask ``(B,)``; None = all present.
    """
    return masked_mean(_coral(y_true, logits), mask)


# --------------------------------------------------------------------------------------------
# keras.losses.Loss classes: call() gives the per-sample losses, sample_weight is the label mask.

class _MaskedLoss(keras.losses.Loss):
    """Base: per-sample ``call`` and a reduction that averages over present samples only."""

    def __init__(self, name: str, reduction: str | None = "mean_with_sample_weight",
                 dtype: str | None = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")


@keras.saving.register_keras_serializable(package="csvdnet")
class SoftDiceLoss(_MaskedLoss):
    """Loss class of :func:`soft_dice_loss`; pass the label mask as ``sample_weight``."""

    def __init__(self, smooth: float = DICE_SMOOTH, name: str = "soft_dice", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.smooth = smooth

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _soft_dice(y_true, y_pred, self.smooth)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="csvdnet")
class BinaryFocalLoss(_MaskedLoss):
    """Loss class of :func:`binary_focal_loss`; pass the label mask as ``sample_weight``."""

    def __init__(self, gamma: float = 2.0, name: str = "binary_focal", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.gamma = gamma

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _binary_focal(y_true, y_pred, self.gamma)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="csvdnet")
class SegmentationLoss(_MaskedLoss):
    """Loss class of :func:`segmentation_loss`; pass the label mask as ``sample_weight``.

    With ``dice="positive"`` the two terms have different denominators (lesion samples, labelled
    samples), which one reduction cannot express: the call then goes to the function.
    """

    def __init__(self, gamma: float = 2.0, smooth: float = DICE_SMOOTH,
                 dice: Literal["per_sample", "positive"] = "per_sample",
                 name: str = "segmentation", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        _check_dice(dice)
        self.gamma = gamma
        self.smooth = smooth
        self.dice = dice

    def __call__(self, y_true: Tensor, y_pred: Tensor,
                 sample_weight: Tensor | None = None) -> Tensor:
        if self.dice == "per_sample" or self.reduction in (None, "none"):
            return super().__call__(y_true, y_pred, sample_weight)
        return segmentation_loss(y_true, y_pred, sample_weight, self.gamma, self.smooth, self.dice)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        """Per-sample values; with ``dice="positive"`` a lesion-free sample's Dice counts 0 (the
        loss divides the Dice sum by the lesion samples, so it is not the mean of these)."""
        if self.dice == "per_sample":
            return _segmentation(y_true, y_pred, self.gamma, self.smooth)
        return (_soft_dice(y_true, y_pred, self.smooth) * _has_foreground(y_true)
                + _binary_focal(y_true, y_pred, self.gamma))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "smooth": self.smooth,
                "dice": self.dice}


@keras.saving.register_keras_serializable(package="csvdnet")
class CenterNetFocalLoss(_MaskedLoss):
    """Loss class of :func:`centernet_focal_loss`; pass the label mask as ``sample_weight``."""

    def __init__(self, alpha: float = 2.0, beta: float = 4.0, name: str = "centernet_focal",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha = alpha
        self.beta = beta

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _centernet(y_true, y_pred, self.alpha, self.beta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="csvdnet")
class WeightedMSELoss(_MaskedLoss):
    """Loss class of :func:`weighted_mse_loss`; pass the label mask as ``sample_weight``."""

    def __init__(self, foreground_weight: float = MSE_FOREGROUND_WEIGHT, name: str = "weighted_mse",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.foreground_weight = foreground_weight

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _weighted_mse(y_true, y_pred, self.foreground_weight)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "foreground_weight": self.foreground_weight}


@keras.saving.register_keras_serializable(package="csvdnet")
class CoralLoss(_MaskedLoss):
    """Loss class of :func:`coral_loss`; pass the label mask as ``sample_weight``."""

    def __init__(self, name: str = "coral", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _coral(y_true, y_pred)
