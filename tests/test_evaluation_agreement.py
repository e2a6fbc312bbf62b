"""Agreement statistics: hand-computed values, and kappa / Spearman equal to the libraries'."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from csvdnet.evaluation.agreement import (bland_altman, bootstrap_ci, count_agreement, icc_a1,
                                          ordinal_agreement, spearman, summarise)
from csvdnet.evaluation.detection import quadratic_weighted_kappa


def test_bland_altman_by_hand():
    ba = bland_altman([1, 2, 3, 4], [2, 2, 5, 4])  # differences 1, 0, 2, 0
    assert ba["bias"] == pytest.approx(0.75)
    sd = math.sqrt((0.25 ** 2 + 2 * 0.75 ** 2 + 1.25 ** 2) / 3)  # deviations from the bias
    assert ba["sd"] == pytest.approx(sd)
    assert ba["loa_low"] == pytest.approx(0.75 - 1.96 * sd)
    assert ba["loa_high"] == pytest.approx(0.75 + 1.96 * sd)
    assert math.isnan(bland_altman([1], [2])["sd"])


def test_icc_is_absolute_agreement():
    # A constant offset of 1: consistency would be perfect (1); absolute agreement is not.
    # MSR = 10/3, MSC = 2, MSE = 0 -> (10/3) / (10/3 + 2 * 2 / 4) = 10/13.
    assert icc_a1([1, 2, 3, 4], [2, 3, 4, 5]) == pytest.approx(10 / 13)
    assert icc_a1([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert math.isnan(icc_a1([1], [1]))
    assert math.isnan(icc_a1([2, 2, 2], [2, 2, 2]))


def test_spearman_equals_scipy_and_is_nan_when_undefined():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 10, 30), rng.integers(0, 10, 30)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2], [1, 2]))


@pytest.mark.parametrize("seed", range(5))
def test_kappa_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 5, 40)
    predicted = np.clip(true + rng.integers(-2, 3, 40), 0, 4)
    ours = quadratic_weighted_kappa(true, predicted, 5)
    assert ours == pytest.approx(cohen_kappa_score(true, predicted, weights="quadratic"))
    assert ordinal_agreement(true, predicted, 5)["kappa_quadratic"] == ours


def test_ordinal_agreement_by_hand():
    out = ordinal_agreement([0, 1, 2, 3], [0, 2, 2, 1], 4)
    assert out["accuracy"] == 0.5 and out["within_one"] == 0.75
    assert out["mean_absolute_error"] == 0.75
    assert out["confusion"] == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 1, 0, 0]]
    # One class each and the same: perfect, though sklearn divides by zero there.
    assert ordinal_agreement([2, 2], [2, 2], 5)["kappa_quadratic"] == 1.0
    assert math.isnan(ordinal_agreement([], [], 3)["accuracy"])


def test_count_agreement_and_summary():
    out = count_agreement([0, 1, 2, 3], [0, 2, 2, 5])
    assert out["n"] == 4 and out["mean_error"] == 0.75 and out["mean_absolute_error"] == 0.75
    s = summarise([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert s["n"] == 4 and s["n_undefined"] == 1
    assert (s["median"], s["q1"], s["q3"]) == (2.5, 1.75, 3.25)
    assert s["mean_ci_low"] <= 2.5 <= s["mean_ci_high"]
    assert 1.0 <= s["mean_ci_low"] and s["mean_ci_high"] <= 4.0


def test_bootstrap_interval_covers_and_is_reproducible():
    values = np.random.default_rng(1).normal(10.0, 1.0, 200)
    low, high = bootstrap_ci(lambda i: float(values[i].mean()), len(values))
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.25)
    assert (low, high) == bootstrap_ci(lambda i: float(values[i].mean()), len(values))
    assert all(math.isnan(v) for v in bootstrap_ci(lambda i: 1.0, 1))
