"""DICOM in, through ``csvdnet predict`` / ``preprocess``: a folder of studies predicted like the
NIfTI of the same subject, bad studies one line each in errors.tsv, DICOM objects beside the
NIfTI outputs, nothing written into the input."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from _dicom_study import tiny_study, tiny_subject
from csvdnet.cli import cli
from csvdnet.dicom.vendor import study_attributes, write_series
from csvdnet.inference.report import validate_report

TASKS = ("wmh", "rssi", "lacune", "cmb", "epvs")


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _id(uid: str, patient: str) -> str:
    return f"{patient}_20260101_{hashlib.sha1(uid.encode()).hexdigest()[:6]}"


@pytest.fixture(scope="module")
def inbox(tmp_path_factory):
    """A folder of four studies of one synthetic subject: good (A), no FLAIR (B), CT (C), a
    FLAIR file truncated (D); and the NIfTI the good study's DICOM holds."""
    root = tmp_path_factory.mktemp("dicom_run")
    subject = tiny_subject(root / "synth")
    inbox = root / "inbox"
    good = tiny_study(subject, inbox, patient_id="A")
    no_flair = tiny_study(subject, inbox, patient_id="B", extras=False)
    shutil.rmtree(no_flair.root / "0002")
    ct = study_attributes("C", modality="CT")
    write_series(good.images["flair"], inbox / "C" / "ct", "flair", ct, 2)
    cut = tiny_study(subject, inbox, patient_id="D", extras=False)
    victim = cut.root / "0002" / "IM00010"
    victim.write_bytes(victim.read_bytes()[:5000])
    nifti = root / "nifti" / _id(good.study_uid, "A")
    nifti.mkdir(parents=True)
    for channel, image in good.images.items():
        nib.save(image, str(nifti / f"{channel}.nii.gz"))
    ids = {"A": _id(good.study_uid, "A"), "B": _id(no_flair.study_uid, "B"),
           "C": _id(ct["study_uid"], "C"), "D": _id(cut.study_uid, "D")}
    return inbox, nifti.parent, ids


def _world_values(image, onto):
    """``onto``'s voxels at the world positions of every voxel of ``image`` (same geometry)."""
    ijk = np.indices(image.shape).reshape(3, -1)
    world = image.affine[:3, :3] @ ijk + image.affine[:3, 3:]
    inverse = np.linalg.inv(onto.affine)
    voxel = inverse[:3, :3] @ world + inverse[:3, 3:]
    nearest = np.round(voxel).astype(int)
    assert np.abs(voxel - nearest).max() < 1e-3  # the same grid up to axis order
    return np.asarray(onto.dataobj)[tuple(nearest)]


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


@pytest.mark.slow
def test_predict_dicom_folder_like_its_nifti(tiny_run, inbox, tmp_path):
    _, run_dir = tiny_run
    folder, nifti, ids = inbox
    before = _listing(folder)
    out_dicom, out_nifti = tmp_path / "from_dicom", tmp_path / "from_nifti"
    result = run("predict", str(folder), "--model", str(run_dir), "--out", str(out_dicom))
    assert result.exit_code == 1, result.output
    assert "predicted 1, skipped 0 already done, failed 3 of 4 subjects" in result.output
    errors = {r["subject"]: r for r in csv.DictReader(open(out_dicom / "errors.tsv"),
                                                      delimiter="\t")}
    assert set(errors) == {ids["B"], ids["C"], ids["D"]}
    assert "no flair series" in errors[ids["B"]]["message"]
    assert errors[ids["C"]]["message"].endswith("not an MR study (modality CT): skipped")
    assert "a missing slice: 9.00 mm between slices 9 and 10" in errors[ids["D"]]["message"]
    assert all(e["error"] == "input" for e in errors.values())
    assert f"failed {ids['B']}: " in result.output
    skipped = (out_dicom / ".csvdnet" / "dicom" / "skipped_files.tsv").read_text()
    assert "IM00010\ttruncated: its pixel data is cut off" in skipped
    assert _listing(folder) == before  # nothing written into the input

    again = run("predict", str(nifti), "--model", str(run_dir), "--out", str(out_nifti))
    assert again.exit_code == 0, again.output
    a, b = out_dicom / ids["A"], out_nifti / ids["A"]
    for task in TASKS:  # on each run's own reference grid; the same world positions
        prob_b = nib.load(str(b / f"{task}_prob.nii.gz"))
        prob_a = _world_values(prob_b, nib.load(str(a / f"{task}_prob.nii.gz")))
        assert np.allclose(prob_a, np.asarray(prob_b.dataobj).reshape(-1), atol=1e-5), task
        mask_b = nib.load(str(b / f"{task}_mask.nii.gz"))
        mask_a = _world_values(mask_b, nib.load(str(a / f"{task}_mask.nii.gz")))
        assert np.array_equal(mask_a, np.asarray(mask_b.dataobj).reshape(-1)), task
    report_a = json.loads((a / "report.json").read_text())
    report_b = json.loads((b / "report.json").read_text())
    for key in ("markers", "measurements", "scores"):
        assert report_a[key] == report_b[key], key
    assert report_a["ordinal"]["total"] == report_b["ordinal"]["total"]
    assert np.allclose(report_a["ordinal"]["class_probabilities"],
                       report_b["ordinal"]["class_probabilities"], atol=1e-6)
    source = report_a["dicom_source"]  # which series each channel came from, and why
    assert {c: s["series_number"] for c, s in source["series"].items()} == \
        {"flair": 2, "t1": 3, "t2": 4, "swi": 5, "dwi": 8, "dwi_b0": 8}
    assert source["series"]["flair"]["reason"].endswith("meets the flair rules; the only "
                                                        "candidate")
    assert source["excluded"]["series 6 'Pha_Images'"] == "ImageType P"
    assert "dicom_source" not in report_b
    assert validate_report(report_a) == [] and validate_report(report_b) == []
    page = (a / "report.html").read_text()
    assert 'data-dicom-source="1"' in page and "t2_tirm_tra_dark-fluid" in page
    assert "data-dicom-source" not in (b / "report.html").read_text()
    assert sorted(p.name for p in (a / "dicom").iterdir())[:2] == ["report-1.dcm", "report-2.dcm"]
    assert (a / "dicom" / "sr.dcm").is_file() and (a / "dicom" / "seg-flair.dcm").is_file()

    rerun = run("predict", str(folder), "--model", str(run_dir), "--out", str(out_dicom))
    assert rerun.exit_code == 1 and "skipped 1 already done, failed 3 of 4" in rerun.output


@pytest.mark.slow
def test_preprocess_a_dicom_folder(inbox, tmp_path):
    folder, _, ids = inbox
    cache = tmp_path / "cache"
    result = run("preprocess", str(folder), "--out", str(cache), "--spacing", "4",
                 "--no-register", "--quiet")
    assert result.exit_code == 1, result.output
    assert "preprocessed 1 of 4 subjects" in result.output
    index = json.loads((cache / "index.json").read_text())
    assert set(index["failed"]) == {ids["B"], ids["C"], ids["D"]}
    assert (cache / ids["A"]).is_dir()
    assert (cache / ".csvdnet" / "dicom" / ids["A"] / "flair.nii").is_file()


@pytest.mark.slow
def test_dicom_folder_refused_on_beam_and_a_bad_rules_file(inbox, tiny_run, tmp_path):
    folder, _, _ = inbox
    result = run("predict", str(folder), "--model", str(tiny_run[1]), "--out",
                 str(tmp_path / "o"), "--engine", "beam")
    assert result.exit_code == 2 and "DICOM folder is predicted with --engine local" \
        in result.output
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nchannels: {}\n")
    result = run("predict", str(folder), "--model", str(tiny_run[1]), "--out",
                 str(tmp_path / "o"), "--series-rules", str(rules))
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {rules}: series rules need an 'exclude' mapping and a non-empty 'channels' "
        "mapping")


@pytest.mark.slow
def test_shipped_model_finds_the_same_from_dicom_and_nifti(inbox, tmp_path):
    """The shipped network (co-registration on) on one subject from DICOM and from its NIfTI
    in the voxel order dcm2niix gives (the FLAIR's rows flipped): the same counts and scores,
    masks within a voxel or two. (The NIfTI in its own voxel order moves about as many mask
    voxels as that flip alone does, with or without DICOM: benchmarks/RESULTS.md.)"""
    from pathlib import Path

    folder, nifti, ids = inbox
    model = Path(__file__).resolve().parents[1] / "saved_models" / "csvdnet-synthetic"
    good = tmp_path / "good"
    shutil.copytree(next(p.parent.parent for p in folder.glob("A/*/0002/IM00001")), good)
    out_a, out_b = tmp_path / "from_dicom", tmp_path / "from_nifti"
    result = run("predict", str(good), "--model", str(model), "--out", str(out_a), "--quiet")
    assert result.exit_code == 0, result.output
    converted = out_a / ".csvdnet" / "dicom" / ids["A"]
    same_order = tmp_path / "nifti" / ids["A"]
    same_order.mkdir(parents=True)
    for path in (nifti / ids["A"]).glob("*.nii.gz"):
        image = nib.load(str(path))
        target = nib.load(str(converted / path.name.replace(".nii.gz", ".nii")))
        flip = nib.orientations.ornt_transform(nib.io_orientation(image.affine),
                                               nib.io_orientation(target.affine))
        nib.save(image.as_reoriented(flip), str(same_order / path.name))
    result = run("predict", str(same_order.parent), "--model", str(model), "--out", str(out_b),
                 "--quiet")
    assert result.exit_code == 0, result.output
    a, b = out_a / ids["A"], out_b / ids["A"]
    report_a = json.loads((a / "report.json").read_text())
    report_b = json.loads((b / "report.json").read_text())
    counts = {t: (report_a["markers"][t]["count"], report_b["markers"][t]["count"])
              for t in TASKS}
    assert all(x == y for x, y in counts.values()), counts
    assert sum(x for x, _ in counts.values()) > 0  # something was found
    assert {k: v["total"] for k, v in report_a["scores"].items()} == \
        {k: v["total"] for k, v in report_b["scores"].items()}
    assert report_a["ordinal"]["total"] == report_b["ordinal"]["total"]
    for task in TASKS:
        mask_b = nib.load(str(b / f"{task}_mask.nii.gz"))
        mask_a = _world_values(mask_b, nib.load(str(a / f"{task}_mask.nii.gz"))) > 0
        mask_b = np.asarray(mask_b.dataobj).reshape(-1) > 0
        both = mask_a.sum() + mask_b.sum()
        dice = 1.0 if both == 0 else 2 * np.sum(mask_a & mask_b) / both
        assert dice >= 0.99, (task, dice)


def test_conversion_holds_the_output_lock_and_stays_out_of_the_input(inbox, tmp_path):
    from csvdnet.dicom.run import open_dicom_cohort
    from csvdnet.errors import CsvdnetInputError, CsvdnetOutputError
    from csvdnet.inference.cohort import output_lock

    folder, _, ids = inbox
    with pytest.raises(CsvdnetInputError, match="the output folder is inside the DICOM input"):
        open_dicom_cohort(folder, folder / "out", ("flair",), "flair")
    assert not (folder / "out").exists()
    out = tmp_path / "out"
    with output_lock(out):  # another run holds OUT
        with pytest.raises(CsvdnetOutputError, match="in use by another csvdnet run"):
            open_dicom_cohort(folder, out, ("flair",), "flair")
    subjects, problems = open_dicom_cohort(folder, out, ("flair",), "flair")
    assert [s.id for s in subjects] == [ids["A"]]
    assert set(problems) == {ids["B"], ids["C"], ids["D"]}
    assert sorted(p.name for p in (out / ".csvdnet" / "dicom" / ids["A"]).iterdir()) == \
        ["flair.json", "flair.nii", "selection.json"]
