"""Agreement of two reviewers: kappa of grades and totals, Cohen's kappa of decisions."""

from __future__ import annotations

import pytest
from _review_fixture import FALSE_CMB, SUBJECT, make_prediction
from click.testing import CliRunner

from csvdnet.cli import cli
from csvdnet.review.agreement import agreement
from csvdnet.review.store import ReviewStore
from csvdnet.review.subject import ReviewSubject


def test_two_reviewers_kappa_and_one_reviewer_refused(tmp_path):
    planted = make_prediction(tmp_path)
    pred = planted["pred"]
    subject = ReviewSubject.load(pred, SUBJECT)
    ids = sorted(f.id for f in subject.findings)
    for name, rejects in (("ann", {FALSE_CMB}), ("ben", {FALSE_CMB, ids[-1]})):
        store = ReviewStore(pred, name)
        for fid in ids:
            store.change(SUBJECT, subject.report,
                         {"decide": fid, "decision": "reject" if fid in rejects else "accept"},
                         set(ids))
        if name == "ann":
            result = CliRunner().invoke(cli, ["review", "agreement", str(pred)])
            assert result.exit_code == 2 and "needs two reviewers" in result.output
    found = agreement(pred)
    assert found["reviewers"] == ["ann", "ben"] and found["subjects"] == 1
    decisions = found["items"]["finding decisions"]
    assert decisions["n"] == len(ids)
    assert decisions["agreement"] == pytest.approx((len(ids) - 1) / len(ids))
    # 2x2 table: both reject 1, ann accept / ben reject 1, both accept n-2
    n = len(ids)
    observed = (n - 1) / n
    expected = (1 / n) * (2 / n) + ((n - 1) / n) * ((n - 2) / n)
    assert decisions["kappa"] == pytest.approx((observed - expected) / (1 - expected))
    assert found["items"]["fazekas_pv"]["n"] == 1
    result = CliRunner().invoke(cli, ["review", "agreement", str(pred)])
    assert result.exit_code == 0 and "finding decisions" in result.output
