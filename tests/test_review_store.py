"""review.json: each change written atomically, reviewers kept apart, bad changes refused."""

from __future__ import annotations

import json

import pytest
from _review_fixture import FALSE_CMB, SUBJECT, make_prediction

from csvdnet.errors import CsvdnetInputError
from csvdnet.review.rating import reviewed_rating
from csvdnet.review.store import ReviewStore, check_reviewer, read_review, status_of
from csvdnet.review.subject import ReviewSubject


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make_prediction(tmp_path_factory.mktemp("review-store"))


def test_each_change_is_on_disk_when_change_returns_and_reviewers_stay_apart(planted):
    subject = ReviewSubject.load(planted["pred"], SUBJECT)
    ids = {f.id for f in subject.findings}
    alice, bob = ReviewStore(planted["pred"], "alice"), ReviewStore(planted["pred"], "bob")
    alice.change(SUBJECT, subject.report, {"decide": FALSE_CMB, "decision": "reject"}, ids)
    on_disk = json.loads(alice.path(SUBJECT).read_text())
    assert on_disk["decisions"][FALSE_CMB]["decision"] == "reject"
    assert on_disk["reviewer"] == "alice" and on_disk["model"]["id"] == "review-fixture"
    assert on_disk["log"][-1]["what"] == f"{FALSE_CMB} reject"
    bob.change(SUBJECT, subject.report, {"decide": FALSE_CMB, "decision": "accept"}, ids)
    assert read_review(alice.path(SUBJECT))["decisions"][FALSE_CMB]["decision"] == "reject"
    assert read_review(bob.path(SUBJECT))["decisions"][FALSE_CMB]["decision"] == "accept"
    assert status_of(read_review(alice.path(SUBJECT)), sorted(ids)) == "in progress"
    assert list(alice.path(SUBJECT).parent.iterdir()) == [alice.path(SUBJECT)]  # no .part left


@pytest.mark.parametrize("what, message", [
    ({"decide": "cmb:99", "decision": "accept"}, "no finding"),
    ({"decide": FALSE_CMB, "decision": "maybe"}, "decision"),
    ({"add": "tumour", "world": [0, 0, 0]}, "cannot add"),
    ({"grade": "fazekas_pv", "value": 4}, "fazekas_pv must be"),
    ({"grade": "total", "value": 1}, "not an adjustable grade"),
])
def test_a_bad_change_is_refused_and_leaves_the_file_as_it_was(planted, what, message):
    subject = ReviewSubject.load(planted["pred"], SUBJECT)
    store = ReviewStore(planted["pred"], "carol")
    ids = {f.id for f in subject.findings}
    store.change(SUBJECT, subject.report, {"grade": "fazekas_deep", "value": 1}, ids)
    before = store.path(SUBJECT).read_bytes()
    with pytest.raises(ValueError, match=message):
        store.change(SUBJECT, subject.report, what, ids)
    assert store.path(SUBJECT).read_bytes() == before


def test_an_untouched_review_rates_as_predict_did_and_grades_override(planted):
    subject = ReviewSubject.load(planted["pred"], SUBJECT)
    assert reviewed_rating(subject, None)["totals"] == planted["model_totals"]
    store = ReviewStore(planted["pred"], "dave")
    ids = {f.id for f in subject.findings}
    review = store.change(SUBJECT, subject.report, {"grade": "epvs_bg_grade", "value": 0}, ids)
    rated = reviewed_rating(subject, review)
    assert rated["ratings"]["epvs_bg_grade"] == 0
    assert rated["points"]["staals-2014"]["epvs"] == 0
    review = store.change(SUBJECT, subject.report, {"grade": "epvs_bg_grade", "value": None}, ids)
    assert reviewed_rating(subject, review)["totals"] == planted["model_totals"]


def test_reviewer_names_and_broken_files_are_refused_in_one_line(tmp_path):
    with pytest.raises(CsvdnetInputError, match="not a reviewer name"):
        check_reviewer("../eve")
    broken = tmp_path / "review.json"
    broken.write_text('{"format": "csvdnet-review", "version": 1, "subj')
    with pytest.raises(CsvdnetInputError, match="not a readable review.json"):
        read_review(broken)
