"""Cohort runs: inputs of every form, a bad subject recorded, finished subjects skipped."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from _oracle import normalised_level, oracle_predictor, write_subject

from csvdnet.inference.cohort import (cap_jobs, open_input, predict_cohort,
                                      progress_printer)


@pytest.fixture(autouse=True)
def mni_identity(monkeypatch):
    """The phantom sits at the MNI origin: skip the template registration (tested apart)."""
    from csvdnet.inference import regions

    monkeypatch.setattr(regions, "template_to_subject", lambda *a, **k: np.eye(4))


def test_cohort_run_records_a_corrupt_subject_and_skips_finished_ones(tmp_path):
    cohort = tmp_path / "cohort"
    subjects = [write_subject(cohort / f"s{i}", "RAS") for i in range(3)]
    (cohort / "s1" / "flair.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    found, problems, bids = open_input(cohort, ("flair", "t1"), "flair")
    assert [s.id for s in found] == ["s0", "s1", "s2"] and not problems and not bids
    predictor = oracle_predictor(normalised_level(subjects[0]))
    calls = []
    original = predictor.predict
    predictor.predict = lambda s: calls.append(s.id) or original(s)

    out = tmp_path / "out"
    summary = predict_cohort(predictor, found, out)
    assert sorted(summary.done) == ["s0", "s2"] and list(summary.failed) == ["s1"]
    assert "s1" in summary.failed["s1"] or "flair" in summary.failed["s1"]
    errors = list(csv.DictReader(open(out / "errors.tsv"), delimiter="\t"))
    assert [e["subject"] for e in errors] == ["s1"] and errors[0]["error"] == "input"
    scores = list(csv.DictReader(open(out / "scores.tsv"), delimiter="\t"))
    assert [r["subject"] for r in scores] == ["s0", "s2"]
    assert {"staals_total", "caa_svd_total", "ordinal_total", "agreement"} <= set(scores[0])
    assert scores[0]["ordinal_total"] == "2"  # cumulative logits 3, 1, -1, -3

    # A killed run: s2's folder half-written, its row lost. The rerun redoes s2 (and the
    # still-corrupt s1) but not s0.
    (out / "s2" / "report.json").unlink()
    (out / ".s2.x1y2.part").mkdir()
    calls.clear()
    summary = predict_cohort(predictor, found, out)
    assert summary.skipped == ["s0"] and sorted(calls) == ["s1", "s2"]
    assert not list(out.glob(".*.part"))
    assert [r["subject"] for r in csv.DictReader(open(out / "scores.tsv"), delimiter="\t")] \
        == ["s0", "s2"]


def test_single_subject_folder_is_an_input(tmp_path):
    subject = write_subject(tmp_path / "patient7", "RAS")
    found, problems, bids = open_input(tmp_path / "patient7", ("flair", "t1"), "flair")
    assert [s.id for s in found] == ["patient7"] and found[0].sequences == subject.sequences


def test_progress_lines_count_subjects_and_estimate_the_rest(monkeypatch):
    clock = iter([100.0, 110.0, 120.0])
    monkeypatch.setattr("csvdnet.inference.cohort.time.perf_counter", lambda: next(clock))
    stream = io.StringIO()
    show = progress_printer(4, stream)  # starts at t = 100
    show("a", "skipped", 0.0)
    show("b", "done", 9.5)  # t = 110: 10 s per finished subject, 2 left
    show("c", "failed: bad file", 0.0)
    show("d", "done", 9.0)  # t = 120: the last one
    assert stream.getvalue().splitlines() == [
        "[1/4] a: skipped", "[2/4] b: done in 9.5 s, about 20 s left",
        "[3/4] c: failed: bad file", "[4/4] d: done in 9.0 s"]


def test_a_subject_without_its_reference_is_recorded_not_fatal(tmp_path):
    cohort = tmp_path / "cohort"
    first = write_subject(cohort / "s0", "RAS")
    write_subject(cohort / "s1", "RAS")
    (cohort / "s1" / "flair.nii.gz").unlink()
    found, problems, _ = open_input(cohort, ("flair", "t1"), "flair")
    assert [s.id for s in found] == ["s0"] and list(problems) == ["s1"]
    out = tmp_path / "out"
    summary = predict_cohort(oracle_predictor(normalised_level(first)), found, out,
                             problems=problems)
    assert summary.done == ["s0"]
    errors = list(csv.DictReader(open(out / "errors.tsv"), delimiter="\t"))
    assert [(e["subject"], e["error"]) for e in errors] == [("s1", "input")]
    assert "flair" in errors[0]["message"]


def test_no_subject_folder_vanishes_hospital_capitals_are_read_others_listed(tmp_path):
    cohort = tmp_path / "cohort"
    first = write_subject(cohort / "s0", "RAS")
    write_subject(cohort / "s1", "RAS")
    for name in ("flair", "t1"):  # as a hospital export names them
        (cohort / "s1" / f"{name}.nii.gz").rename(cohort / "s1" / f"{name.upper()}.nii.gz")
    (cohort / "s2").mkdir()
    (cohort / "s2" / "export.log").write_text("DICOM export finished\n")
    found, problems, _ = open_input(cohort, ("flair", "t1"), "flair")
    assert [s.id for s in found] == ["s0", "s1"] and list(problems) == ["s2"]
    assert list(found[1].sequences) == ["flair", "t1"]

    out = tmp_path / "out"
    summary = predict_cohort(oracle_predictor(normalised_level(first)), found, out,
                             problems=problems)

    assert summary.done == ["s0", "s1"]
    scores = list(csv.DictReader(open(out / "scores.tsv"), delimiter="\t"))
    errors = list(csv.DictReader(open(out / "errors.tsv"), delimiter="\t"))
    assert [r["subject"] for r in scores] == ["s0", "s1"]
    assert [(e["subject"], e["error"]) for e in errors] == [("s2", "input")]
    assert "holds no NIfTI image (found export.log)" in errors[0]["message"]
    single, _, _ = open_input(cohort / "s1", ("flair", "t1"), "flair")
    assert [s.id for s in single] == ["s1"] and list(single[0].sequences) == ["flair", "t1"]


def test_a_subset_manifest_is_predicted_though_ratings_csv_rates_other_subjects(tmp_path):
    cohort = tmp_path / "cohort"
    write_subject(cohort / "s0", "RAS")
    write_subject(cohort / "s1", "RAS")
    (cohort / "ratings.csv").write_text("subject,cmb_count\ns0,0\ns1,2\n")
    manifest = cohort / "subset.csv"
    manifest.write_text("subject,flair,t1\ns0,s0/flair.nii.gz,s0/t1.nii.gz\n")

    found, problems, _ = open_input(manifest, ("flair", "t1"), "flair")

    assert [s.id for s in found] == ["s0"] and problems == {}


def test_jobs_beyond_the_cores_are_capped_and_said(monkeypatch):
    monkeypatch.setattr("csvdnet.inference.cohort.usable_cpus", lambda: 4)

    assert cap_jobs(3) == (3, None) and cap_jobs(4) == (4, None)
    jobs, note = cap_jobs(1000)
    assert jobs == 4
    assert note.startswith("--jobs 1000 capped at 4 (the CPU cores this process may use)")
