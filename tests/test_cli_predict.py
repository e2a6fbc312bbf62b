"""``csvdnet predict`` end to end: a model from ``csvdnet train`` on a synthetic cohort, in the
folder and the BIDS form, through click's CliRunner."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from csvdnet.cli import cli

pytestmark = pytest.mark.slow


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_predict_cohort_folder_end_to_end(tiny_run, tmp_path):
    manifest, run_dir = tiny_run
    cohort = manifest.parent
    out = tmp_path / "out"
    result = run("predict", str(manifest), "--model", str(run_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "predicted 3, skipped 0 already done, failed 0 of 3" in result.output
    for subject in ("sub-0000", "sub-0001", "sub-0002"):
        folder = out / subject
        flair = nib.load(cohort / subject / "flair.nii.gz")
        for task in ("wmh", "rssi", "lacune", "cmb", "epvs"):
            prob = nib.load(folder / f"{task}_prob.nii.gz")
            assert prob.shape == flair.shape and np.allclose(prob.affine, flair.affine, atol=1e-4)
            assert prob.get_data_dtype() == np.float32
        report = json.loads((folder / "report.json").read_text())
        assert report["subject"] == subject
        assert (folder / "report.html").read_text().startswith("<!DOCTYPE html>")
    rows = list(csv.DictReader(open(out / "scores.tsv"), delimiter="\t"))
    assert [r["subject"] for r in rows] == ["sub-0000", "sub-0001", "sub-0002"]
    assert all(r["staals_total"] in "01234" and r["ordinal_total"] in "01234" for r in rows)

    again = run("predict", str(manifest), "--model", str(run_dir), "--out", str(out))
    assert again.exit_code == 0 and "skipped 3 already done" in again.output


def test_predict_bids_dataset_and_a_bad_subject(tiny_run, tmp_path):
    manifest, run_dir = tiny_run
    cohort = manifest.parent
    bids = tmp_path / "bids"
    suffix = {"flair": "FLAIR", "t1": "T1w", "t2": "T2w", "swi": "swi"}
    for i, subject in enumerate(("sub-0000", "sub-0001")):
        anat = bids / f"sub-{i:02d}" / "anat"
        anat.mkdir(parents=True)
        for name, bids_suffix in suffix.items():
            shutil.copy(cohort / subject / f"{name}.nii.gz",
                        anat / f"sub-{i:02d}_{bids_suffix}.nii.gz")
        (anat.parent / "dwi").mkdir()
        shutil.copy(cohort / subject / "dwi.nii.gz", anat.parent / "dwi" / f"sub-{i:02d}_dwi.nii.gz")
    (bids / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz").write_bytes(b"not a nifti")
    (bids / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.10.0"}')
    out = tmp_path / "derivatives"
    result = run("predict", str(bids), "--model", str(run_dir), "--out", str(out), "--quiet")
    assert result.exit_code == 1
    assert "failed sub-01" in result.output and "sub-01_FLAIR.nii.gz" in result.output
    assert (out / "sub-00" / "anat" / "sub-00_space-orig_label-WMH_probseg.nii.gz").is_file()
    assert (out / "sub-00" / "anat" / "sub-00_desc-csvd_report.json").is_file()
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] \
        == "derivative"
    errors = list(csv.DictReader(open(out / "errors.tsv"), delimiter="\t"))
    assert [e["subject"] for e in errors] == ["sub-01"]


def test_predict_bad_arguments_exit_2(tiny_run, tmp_path):
    manifest, run_dir = tiny_run
    result = run("predict", str(manifest), "--model", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "not a model directory" in result.output
    result = run("predict", str(manifest), "--model", str(run_dir), "--out", str(tmp_path / "o"),
                 "--rules", "staals-2014,nope")
    assert result.exit_code == 2 and "unknown rule set(s) nope" in result.output


def test_swapped_sequences_rerun_with_other_rules_and_too_many_jobs(tiny_run, tmp_path):
    manifest, run_dir = tiny_run
    cohort = tmp_path / "cohort"
    for subject in ("sub-0000", "sub-0001"):
        shutil.copytree(manifest.parent / subject, cohort / subject,
                        ignore=shutil.ignore_patterns("labels"))
    swapped = cohort / "sub-0001"
    (swapped / "flair.nii.gz").rename(swapped / "was_flair.nii.gz")
    (swapped / "t1.nii.gz").rename(swapped / "flair.nii.gz")
    (swapped / "was_flair.nii.gz").rename(swapped / "t1.nii.gz")
    out = tmp_path / "out"

    result = run("predict", str(cohort), "--model", str(run_dir), "--out", str(out),
                 "--jobs", "1000")

    assert result.exit_code == 0, result.output
    assert "--jobs 1000 capped at" in result.output
    rows = {r["subject"]: r for r in csv.DictReader(open(out / "scores.tsv"), delimiter="\t")}
    assert rows["sub-0001"]["flags"].startswith("sequence check: the flair image looks like T1")
    assert "sequence check" not in rows["sub-0000"]["flags"]
    report = json.loads((out / "sub-0001" / "report.json").read_text())
    assert any(flag.startswith("sequence check:") for flag in report["flags"])

    other = run("predict", str(cohort), "--model", str(run_dir), "--out", str(out),
                "--rules", "staals-2014")
    assert other.exit_code == 2
    assert other.output.strip().splitlines()[-1].startswith(
        f"error: {out / 'sub-0000'}: already done, but it was scored with rule sets")

    strict = run("predict", str(cohort), "--model", str(run_dir), "--out",
                 str(tmp_path / "strict"), "--strict", "--quiet")
    assert strict.exit_code == 1 and "failed sub-0001" in strict.output
    assert "(refused: --strict)" in strict.output
