"""Evaluation against reference labels: voxel, lesion, detection and score metrics.

One definition of each metric, used by training validation, the held-out accuracy benchmark
and ``csvdnet evaluate`` alike (../shared/DESIGN.md, "Evaluation conventions"):

- :mod:`~csvdnet.evaluation.metrics`: Dice, 26-connected lesion counts;
- :mod:`~csvdnet.evaluation.segmentation`: the MICCAI 2017 WMH challenge metrics (HD95, AVD,
  lesion recall / F1, the label-2 exclusion);
- :mod:`~csvdnet.evaluation.detection`: one-to-one point matching, quadratic-weighted kappa;
- :mod:`~csvdnet.evaluation.points`: VALDO-style detection (matching to objects, counts, FROC,
  regions);
- :mod:`~csvdnet.evaluation.agreement`: Bland-Altman, ICC(A,1), Spearman, confusion matrices,
  bootstrap intervals;
- :mod:`~csvdnet.evaluation.evaluate`: :func:`evaluate`, the ``csvdnet evaluate`` command's
  library call, and :mod:`~csvdnet.evaluation.summary`, its cohort summary with intervals;
- :mod:`~csvdnet.evaluation.validation`: the metrics of a network on cached subjects, as training
  validates;
- readers of a training run (through :mod:`csvdnet.run`, never :mod:`csvdnet.training`):
  :mod:`~csvdnet.evaluation.run_on_cache` (the run's network over a cache),
  :mod:`~csvdnet.evaluation.calibrate` (``calibrate_run``: thresholds chosen on the validation
  subjects, ``calibration.json``) and :mod:`~csvdnet.evaluation.heldout` (``evaluate_run``: the
  held-out check on another cache).

scikit-learn and matplotlib are imported only when used (training validation imports the
metrics and needs neither).
"""

from csvdnet.evaluation.agreement import (bland_altman, bootstrap_ci, count_agreement, icc_a1,
                                          ordinal_agreement, spearman)
from csvdnet.evaluation.detection import (MATCH_DISTANCE_MM, match_pairs, match_points,
                                          quadratic_weighted_kappa)
from csvdnet.evaluation.metrics import (LesionCounts, dice, lesion_counts,
                                        remove_small_components)
from csvdnet.evaluation.points import (DetectionCounts, TrueObjects, froc, match_detections,
                                       match_radius)
from csvdnet.evaluation.segmentation import (SegmentationMetrics, absolute_volume_difference,
                                             challenge_masks, hausdorff95, segmentation_metrics)

# The function, bound after its module (same name) is imported, so it is what the name means.
from csvdnet.evaluation.evaluate import Evaluation, evaluate  # noqa: E402  isort: skip

__all__ = ["MATCH_DISTANCE_MM", "DetectionCounts", "Evaluation", "LesionCounts",
           "SegmentationMetrics", "TrueObjects", "absolute_volume_difference", "bland_altman",
           "bootstrap_ci", "challenge_masks", "count_agreement", "dice", "evaluate", "froc",
           "hausdorff95", "icc_a1", "lesion_counts", "match_detections", "match_pairs",
           "match_points", "match_radius", "ordinal_agreement", "quadratic_weighted_kappa",
           "remove_small_components", "segmentation_metrics", "spearman"]

