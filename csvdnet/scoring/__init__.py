"""Rating definitions: named, versioned rule sets over one record of measured quantities.

Every stage that rates a subject (the synthetic cohort's ground truth, ``csvdnet predict``,
``csvdnet evaluate``) imports the definitions from here; none keeps a copy. numpy only.

- :class:`Measurements`: what was measured in one subject (``None`` = not measured);
- :data:`RULE_SETS`: ``"staals-2014"`` (total SVD score 0-4, Staals et al., Neurology 2014) and
  ``"caa-svd-2016"`` (CAA-SVD score 0-6, Charidimou et al., JAMA Neurology 2016);
  :func:`score` applies one by name and returns a :class:`RuleScore`;
- the grading helpers the rule sets are made of (:func:`epvs_grade`, :func:`wmh_point`,
  :func:`staals_total`) and the EPVS count they grade (:func:`max_side_slice_count`);
- :func:`ordinal_probabilities`: the numpy twin of the CORAL head's decoding
  (:func:`csvdnet.models.coral_head.ordinal_decode`), for reports written without TensorFlow.

A point whose inputs were not measured is not guessed: it is left out of ``RuleScore.points``,
named in ``RuleScore.notes``, and the total is ``None``. A point that the measured inputs decide
on their own (one lacune measured, another count missing) is still given.

Modules, one concept each:

- :mod:`csvdnet.scoring.rules`: :class:`Measurements`, :class:`RuleSet`, :class:`RuleScore`,
  :data:`RULE_SETS`, :func:`score`, :func:`staals_total`;
- :mod:`csvdnet.scoring.wmh`: :class:`WmhFeatures`, the Fazekas grades and their limits,
  :func:`wmh_point`;
- :mod:`csvdnet.scoring.epvs`: EPVS grades and slice counting (:func:`side_slice_keys`,
  :func:`max_side_slice_count`, :func:`slices_of`, :func:`axial_slice_axis`) and their constants;
- :mod:`csvdnet.scoring.ordinal`: :func:`ordinal_probabilities`, :func:`ordinal_class`.

Every public name is re-exported here: ``from csvdnet.scoring import score`` is the way to import.
"""

from csvdnet.scoring.epvs import (CSO_EPVS_LIMIT, EPVS_GRADE_LIMITS, NON_TISSUE_REGIONS,
                                  POINT_SEARCH_MM, SLICE_TIE_VOXELS, axial_slice_axis, epvs_grade,
                                  max_side_slice_count, side_slice_keys, slices_of)
from csvdnet.scoring.ordinal import ordinal_class, ordinal_probabilities
from csvdnet.scoring.rules import (RULE_SETS, Measurements, PointRule, RuleScore, RuleSet, score,
                                   staals_total)
from csvdnet.scoring.wmh import (FAZEKAS_DEEP_LIMITS, FAZEKAS_PV_LIMITS, WmhFeatures,
                                 fazekas_deep_from, fazekas_pv_from, wmh_point)

__all__ = ["CSO_EPVS_LIMIT", "EPVS_GRADE_LIMITS", "FAZEKAS_DEEP_LIMITS", "FAZEKAS_PV_LIMITS",
           "Measurements", "NON_TISSUE_REGIONS", "POINT_SEARCH_MM", "PointRule", "RULE_SETS",
           "RuleScore", "RuleSet", "SLICE_TIE_VOXELS", "WmhFeatures",
           "axial_slice_axis", "epvs_grade", "fazekas_deep_from", "fazekas_pv_from",
           "max_side_slice_count", "ordinal_class", "ordinal_probabilities", "score",
           "side_slice_keys", "slices_of", "staals_total", "wmh_point"]
