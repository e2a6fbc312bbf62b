"""Agreement between measured and rated quantities: counts, grades, total scores.

- **Counts and volumes** (:func:`count_agreement`): mean error, mean absolute error,
  Bland-Altman bias and 95 % limits of agreement (``bias +/- 1.96 SD`` of the differences
  predicted - true, SD with ``n - 1``), Spearman's rho (scipy), and the intraclass correlation
  :func:`icc_a1`: **ICC(A,1)** of McGraw & Wong (1996), two-way random effects, absolute
  agreement, single measurement (= ICC(2,1) of Shrout & Fleiss 1979), the form for comparing a
  method with a rater when a constant offset is an error too.
- **Grades and total scores** (:func:`ordinal_agreement`): exact accuracy, within-one accuracy,
  mean absolute error, confusion matrix (scikit-learn, rows true, columns predicted) and
  quadratic-weighted Cohen's kappa (:func:`csvdnet.evaluation.detection.quadratic_weighted_kappa`,
  which equals scikit-learn's ``cohen_kappa_score(weights="quadratic")`` and is defined where
  that divides by zero).
- **95 % confidence intervals** (:func:`bootstrap_ci`): percentile bootstrap over subjects (a
  resample draws subjects with replacement and recomputes the statistic, so pooled statistics
  such as kappa or a cohort F1 keep their pairing).

Undefined values (fewer than two subjects, no spread) are NaN, never an error.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np

from csvdnet.evaluation.detection import quadratic_weighted_kappa

__all__ = ["bland_altman", "bootstrap_ci", "count_agreement", "icc_a1", "mean_ci",
           "ordinal_agreement", "spearman", "summarise"]

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def _pair(true: Sequence[float], predicted: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    true, predicted = np.asarray(true, float).ravel(), np.asarray(predicted, float).ravel()
    if true.shape != predicted.shape:
        raise ValueError(f"{len(true)} true values vs {len(predicted)} predicted")
    return true, predicted


def bland_altman(true: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """Bias (mean of predicted - true), SD of the differences and the 95 % limits."""
    true, predicted = _pair(true, predicted)
    difference = predicted - true
    bias = float(difference.mean()) if len(difference) else math.nan
    sd = float(difference.std(ddof=1)) if len(difference) > 1 else math.nan
    return {"bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}


def icc_a1(true: Sequence[float], predicted: Sequence[float]) -> float:
    """ICC(A,1): two-way random effects, absolute agreement, single measurement.

    ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)`` with k = 2 raters, n subjects,
    MSR / MSC / MSE the subject, rater and residual mean squares. NaN for n < 2 or no variance.
    """
    true, predicted = _pair(true, predicted)
    y = np.stack([true, predicted], axis=1)
    n, k = y.shape
    if n < 2:
        return math.nan
    grand = y.mean()
    msr = k * np.sum((y.mean(axis=1) - grand) ** 2) / (n - 1)
    msc = n * np.sum((y.mean(axis=0) - grand) ** 2) / (k - 1)
    residual = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + grand
    mse = np.sum(residual ** 2) / ((n - 1) * (k - 1))
    denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    return float((msr - mse) / denominator) if denominator > 0 else math.nan


def spearman(true: Sequence[float], predicted: Sequence[float]) -> float:
    """Spearman's rank correlation (scipy); NaN with fewer than 3 subjects or a constant side."""
    true, predicted = _pair(true, predicted)
    if len(true) < 3 or np.ptp(true) == 0 or np.ptp(predicted) == 0:
        return math.nan
    from scipy import stats  # heavy to import: only when used

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(true, predicted).statistic)


def count_agreement(true: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """Every count / volume agreement statistic of the module docstring (plus ``n``)."""
    true, predicted = _pair(true, predicted)
    error = predicted - true
    out = {"n": int(len(true)),
           "mean_error": float(error.mean()) if len(error) else math.nan,
           "mean_absolute_error": float(np.abs(error).mean()) if len(error) else math.nan}
    out.update(bland_altman(true, predicted))
    out["icc_a1"] = icc_a1(true, predicted)
    out["spearman"] = spearman(true, predicted)
    return out


def ordinal_agreement(true: Sequence[int], predicted: Sequence[int],
                      num_classes: int) -> dict[str, object]:
    """Accuracy, within-one accuracy, MAE, confusion matrix and quadratic-weighted kappa."""
    true_arr, pred_arr = (np.asarray(v, int).ravel() for v in (true, predicted))
    if true_arr.shape != pred_arr.shape:
        raise ValueError(f"{len(true_arr)} true values vs {len(pred_arr)} predicted")
    n = len(true_arr)
    from sklearn.metrics import confusion_matrix  # scikit-learn loads only when used

    labels = list(range(num_classes))
    return {
        "n": n,
        "accuracy": float(np.mean(true_arr == pred_arr)) if n else math.nan,
        "within_one": float(np.mean(np.abs(true_arr - pred_arr) <= 1)) if n else math.nan,
        "mean_absolute_error": float(np.mean(np.abs(true_arr - pred_arr))) if n else math.nan,
        "kappa_quadratic": quadratic_weighted_kappa(true_arr, pred_arr, num_classes)
        if n else math.nan,
        "confusion": (confusion_matrix(true_arr, pred_arr, labels=labels).tolist() if n
                      else [[0] * num_classes for _ in labels]),
    }


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(subject indices)`` over ``n`` subjects.

    Resamples whose statistic is not finite are left out; ``(NaN, NaN)`` when n < 2 or none is.
    """
    if n < 2:
        return math.nan, math.nan
    values = np.array([statistic(i) for i in _resamples(n, resamples, seed)], float)
    return _percentile_interval(values, level)


def _resamples(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` subject indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, (resamples, n))


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_ci(values: Sequence[float], seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """:func:`bootstrap_ci` of the mean (the same resamples), computed all at once."""
    values = np.asarray(values, float).ravel()
    if len(values) < 2:
        return math.nan, math.nan
    return _percentile_interval(values[_resamples(len(values), BOOTSTRAP_RESAMPLES, seed)]
                                .mean(axis=1), 0.95)


def summarise(values: Sequence[float], seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """n, NaN count, mean (95 % bootstrap CI), SD, median, quartiles, min, max of the finite
    values (the VALDO way of reporting per-subject results: medians and quartiles)."""
    values = np.asarray(values, float).ravel()
    finite = values[np.isfinite(values)]
    out: dict[str, float] = {"n": int(len(finite)), "n_undefined": int(len(values) - len(finite))}
    if not len(finite):
        return out | {k: math.nan for k in ("mean", "mean_ci_low", "mean_ci_high", "sd",
                                            "median", "q1", "q3", "min", "max")}
    low, high = mean_ci(finite, seed)
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return out | {"mean": float(finite.mean()), "mean_ci_low": low, "mean_ci_high": high,
                  "sd": float(finite.std(ddof=1)) if len(finite) > 1 else math.nan,
                  "median": float(median), "q1": float(q1), "q3": float(q3),
                  "min": float(finite.min()), "max": float(finite.max())}
