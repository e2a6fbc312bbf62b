"""Evaluation against reference labels: voxel, lesion, detection and score metrics.

:mod:`~csvdnet.evaluation.metrics` follows the MICCAI 2017 WMH challenge and VALDO 2021
conventions (../shared/DESIGN.md); :mod:`~csvdnet.evaluation.detection` matches points and
measures ordinal agreement. Training validation and the held-out accuracy benchmark use them,
and so will ``csvdnet evaluate``.
"""

from csvdnet.evaluation.detection import MATCH_DISTANCE_MM, match_points, quadratic_weighted_kappa
from csvdnet.evaluation.metrics import (LesionCounts, dice, lesion_counts,
                                        remove_small_components)

__all__ = ["MATCH_DISTANCE_MM", "LesionCounts", "dice", "lesion_counts", "match_points",
           "quadratic_weighted_kappa", "remove_small_components"]
