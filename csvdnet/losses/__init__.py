"""Losses: per task (:mod:`~csvdnet.losses.tasks`) and combined (:mod:`~csvdnet.losses.multitask`).

Every loss comes as a plain function and a ``keras.losses.Loss`` subclass computing the same
thing; all compute in float32 and take per-sample label masks (see :mod:`csvdnet.losses.tasks`).
"""

from csvdnet.losses.multitask import MultiTaskLoss
from csvdnet.losses.tasks import (DICE_MODES, DICE_SMOOTH, EPSILON, MSE_FOREGROUND_WEIGHT,
                                  PEAK_THRESHOLD, BinaryFocalLoss, CenterNetFocalLoss, CoralLoss,
                                  SegmentationLoss, SoftDiceLoss, WeightedMSELoss,
                                  binary_focal_loss, centernet_focal_loss, coral_loss, masked_mean,
                                  ordinal_decode, ordinal_targets, segmentation_loss,
                                  soft_dice_loss, weighted_mse_loss)

__all__ = ["DICE_MODES", "DICE_SMOOTH", "EPSILON", "MSE_FOREGROUND_WEIGHT", "PEAK_THRESHOLD",
           "BinaryFocalLoss", "CenterNetFocalLoss", "CoralLoss", "MultiTaskLoss",
           "SegmentationLoss", "SoftDiceLoss", "WeightedMSELoss", "binary_focal_loss",
           "centernet_focal_loss", "coral_loss", "masked_mean", "ordinal_decode",
           "ordinal_targets", "segmentation_loss", "soft_dice_loss", "weighted_mse_loss"]
