"""Evaluation against reference labels: voxel, lesion, detection and score metrics.

:mod:`~csvdnet.evaluation.metrics` follows the MICCAI 2017 WMH challenge and VALDO 2021
conventions (../shared/DESIGN.md); training validation and the held-out accuracy benchmark use
it, and so will ``csvdnet evaluate``.
"""

from csvdnet.evaluation.metrics import (LesionCounts, dice, lesion_counts,
                                        remove_small_components)

__all__ = ["LesionCounts", "dice", "lesion_counts", "remove_small_components"]
