"""Cohort runs: inputs of every form, a bad subject recorded, finished subjects skipped."""

from __future__ import annotations

import csv
import io

import pytest
from _oracle import mni_at_world_origin, normalised_level, oracle_predictor, write_subject

from csvdnet.inference.cohort import (cap_jobs, open_input, predict_cohort,
                                      progress_printer)


def dead_pid() -> int:
    """The id of a process that has exited."""
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


@pytest.fixture(autouse=True)
def mni_identity(monkeypatch):
    """The phantom sits at the MNI origin: skip the template registration (tested apart)."""
    mni_at_world_origin(monkeypatch)


def test_cohort_run_records_a_corrupt_subject_and_skips_finished_ones(tmp_path):
    cohort = tmp_path / "cohort"
    subjects = [write_subject(cohort / f"s{i}", "RAS") for i in range(3)]
    (cohort / "s1" / "flair.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    found, problems, bids = open_input(cohort, ("flair", "t1"), "flair")
    assert [s.id for s in found] == ["s0", "s1", "s2"] and not problems and not bids
    predictor = oracle_predictor(normalised_level(subjects[0]))
    calls = []
    original = predictor.prepare
    predictor.prepare = lambda s: calls.append(s.id) or original(s)

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
    (out / f".s2.{dead_pid()}.0badc0de.part").mkdir()  # the killed run's temporary folder
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


def _two_subjects(tmp_path):
    cohort = tmp_path / "cohort"
    subjects = [write_subject(cohort / f"s{i}", "RAS") for i in range(2)]
    return subjects, oracle_predictor(normalised_level(subjects[0]))


def _rows(path):
    return list(csv.DictReader(open(path), delimiter="\t"))


def test_a_rerun_with_another_model_rules_or_options_is_refused_unless_overwrite(tmp_path):
    import dataclasses

    from csvdnet.errors import CsvdnetOutputError

    subjects, first = _two_subjects(tmp_path)
    out = tmp_path / "out"
    predict_cohort(first, subjects, out)
    assert {r["model"] for r in _rows(out / "scores.tsv")} == {"oracle"}

    other = oracle_predictor(normalised_level(subjects[0]))
    other.info = dataclasses.replace(other.info, id="other/3", sha256="1" * 64)
    with pytest.raises(CsvdnetOutputError, match=(
            r"/out/s0: already done, but it was predicted by model oracle \(sha256 000000000000…"
            r"\), this run's is other/3 \(sha256 111111111111…\): one output folder holds one "
            r"model's results; choose another --out, or --overwrite to redo the subjects")):
        predict_cohort(other, subjects, out)
    fewer_rules = oracle_predictor(normalised_level(subjects[0]))
    fewer_rules.rule_sets = ("staals-2014",)
    with pytest.raises(CsvdnetOutputError, match="scored with rule sets caa-svd-2016, "
                                                 "staals-2014, this run's are staals-2014"):
        predict_cohort(fewer_rules, subjects, out)
    flipped = oracle_predictor(normalised_level(subjects[0]), tta=True)
    with pytest.raises(CsvdnetOutputError, match="predicted with tta=False, this run uses "
                                                 "tta=True"):
        predict_cohort(flipped, subjects, out)
    assert {r["model"] for r in _rows(out / "scores.tsv")} == {"oracle"}  # nothing touched

    summary = predict_cohort(other, subjects, out, overwrite=True)

    assert sorted(summary.done) == ["s0", "s1"] and summary.skipped == []
    assert {r["model"] for r in _rows(out / "scores.tsv")} == {"other/3"}
    assert predict_cohort(other, subjects, out).skipped == ["s0", "s1"]


def test_one_run_per_output_folder_a_dead_runs_lock_is_taken_over(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    from csvdnet.errors import CsvdnetOutputError

    subjects, predictor = _two_subjects(tmp_path)
    out = tmp_path / "out"
    lock = out / ".csvdnet" / "lock"
    lock.parent.mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": live.pid, "host": socket.gethostname(),
                                    "since": "2026-12-07T10:00:00+00:00"}))
        calls = []
        original = predictor.prepare
        predictor.prepare = lambda s: calls.append(s.id) or original(s)
        with pytest.raises(CsvdnetOutputError, match=(
                rf"/out: in use by another csvdnet run \(pid {live.pid} on "
                rf"{socket.gethostname()}, since 2026-12-07T10:00:00\+00:00\): one run per "
                r"output folder")):
            predict_cohort(predictor, subjects, out)
        assert calls == [] and lock.is_file()
    finally:
        live.kill()
        live.wait()
    lock.write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))

    summary = predict_cohort(predictor, subjects, out)  # the killed run's lock is stale

    assert sorted(summary.done) == ["s0", "s1"] and not lock.exists()


def test_tables_are_merged_from_the_subject_folders_on_disk(tmp_path):
    from csvdnet.inference import outputs
    from csvdnet.inference.cohort import (plan_cohort, predict_subject, score_columns,
                                          score_row, write_tables)

    subjects, predictor = _two_subjects(tmp_path)
    out = tmp_path / "out"
    columns = score_columns(predictor.rule_sets, predictor.score_classes)
    late = plan_cohort(subjects, out, columns)  # a run that planned both, then was slow
    predict_cohort(predictor, subjects[1:], out)  # another finished s1 meanwhile
    result = predict_subject(predictor, subjects[0])
    outputs.write_subject(result, out)

    write_tables(late, {"s0": score_row(result)}, [])

    assert [r["subject"] for r in _rows(out / "scores.tsv")] == ["s0", "s1"]  # s1 kept
    assert _rows(out / "errors.tsv") == []


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path):
    from click.testing import CliRunner

    from csvdnet.cli import cli
    from csvdnet.errors import CsvdnetOutputError

    subjects, predictor = _two_subjects(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should go\n")
    calls = []
    predictor.prepare = lambda s: calls.append(s.id)
    with pytest.raises(CsvdnetOutputError, match="not-a-folder: is a file, not an output folder"):
        predict_cohort(predictor, subjects, blocker)
    with pytest.raises(CsvdnetOutputError, match=r"not-a-folder/out: cannot write into the "
                                                 r"output folder: Not a directory"):
        predict_cohort(predictor, subjects, blocker / "out")
    assert calls == []
    # The CLI says so before loading the model (here a model folder that does not exist).
    result = CliRunner().invoke(cli, ["predict", str(subjects[0].sequences["flair"].parent),
                                      "--model", str(tmp_path / "no-model"), "--out",
                                      str(blocker / "out")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {blocker / 'out'}: cannot write into the output folder: Not a directory")


def test_a_full_disk_names_the_file_and_the_reason(tmp_path, monkeypatch):
    import errno

    import nibabel

    from csvdnet.errors import CsvdnetOutputError

    subjects, predictor = _two_subjects(tmp_path)
    out = tmp_path / "out"
    real_save = nibabel.save

    def full_disk(image, path):  # as gzip raises it: no file name
        if "s1" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(image, path)

    monkeypatch.setattr(nibabel, "save", full_disk)
    summary = predict_cohort(predictor, subjects, out)

    assert summary.done == ["s0"]
    errors = _rows(out / "errors.tsv")
    assert [(e["subject"], e["error"]) for e in errors] == [("s1", "write")]
    assert errors[0]["message"] == f"No space left on device: {out / 's1' / 'wmh_prob.nii.gz'}"
    assert not (out / "s1").exists() and not list(out.glob(".*.part"))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("csvdnet.inference.cohort_table.atomic_path", no_space)
    with pytest.raises(CsvdnetOutputError, match=r"/out/scores\.tsv: cannot be written: No "
                                                 r"space left on device"):
        predict_cohort(predictor, subjects, out, overwrite=True)


@pytest.fixture
def phantom_signatures(tmp_path, monkeypatch):
    """Signatures of the phantom's FLAIR and T1 (the installed ones describe five sequences
    of the synthetic profiles), measured on one correctly named phantom subject."""
    from csvdnet.preprocessing import sequence_check

    subject = write_subject(tmp_path / "fit" / "p0", "RAS")
    prepared = oracle_predictor(normalised_level(subject)).prepare(subject)
    signatures = sequence_check.fit_signatures([(prepared.array, prepared.brain_working)],
                                               ("flair", "t1"))
    monkeypatch.setattr(sequence_check, "_signatures", lambda: signatures)
    return signatures


def test_swapped_sequences_are_flagged_in_report_and_scores_or_refused_strict(
        tmp_path, phantom_signatures):
    import json

    cohort = tmp_path / "cohort"
    good = write_subject(cohort / "s0", "RAS")
    swapped = write_subject(cohort / "s1", "RAS",
                            names={"flair": "t1.nii.gz", "t1": "flair.nii.gz"})
    subjects = [good, as_discovered(swapped)]
    predictor = oracle_predictor(normalised_level(good))
    out = tmp_path / "out"

    summary = predict_cohort(predictor, subjects, out)

    assert sorted(summary.done) == ["s0", "s1"]
    flag = ("sequence check: the flair image looks like T1, the t1 image looks like FLAIR "
            "(tissue contrasts inside the brain): were the files swapped or misnamed? The "
            "ratings are unreliable until the names are right")
    reports = {s: json.loads((out / s / "report.json").read_text()) for s in ("s0", "s1")}
    assert reports["s1"]["flags"][0] == flag and flag not in reports["s0"]["flags"]
    assert "sequence_check" in reports["s1"]["timings"]
    assert flag in (out / "s1" / "report.html").read_text()
    rows = {r["subject"]: r for r in _rows(out / "scores.tsv")}
    assert rows["s1"]["flags"].startswith(flag) and "sequence check" not in rows["s0"]["flags"]

    strict = predict_cohort(predictor, subjects, tmp_path / "strict", strict=True)

    assert strict.done == ["s0"] and list(strict.failed) == ["s1"]
    errors = _rows(tmp_path / "strict" / "errors.tsv")
    assert [(e["subject"], e["error"]) for e in errors] == [("s1", "input")]
    assert errors[0]["message"] == (f"{cohort / 's1' / 'flair.nii.gz'}, "
                                    f"{cohort / 's1' / 't1.nii.gz'}: {flag} (refused: --strict)")
    assert not (tmp_path / "strict" / "s1").exists()


def as_discovered(subject):
    """The subject as cohort discovery reads its folder (file names decide the sequences)."""
    from csvdnet.io import Subject, find_sequences

    return Subject(id=subject.id, sequences=find_sequences(
        next(iter(subject.sequences.values())).parent, ("flair", "t1")))
