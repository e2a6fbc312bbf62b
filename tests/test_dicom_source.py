"""csvdnet.dicom.source: a folder of studies as subjects, problems one line each, records."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pydicom
import pytest

from _dicom_study import tiny_study, tiny_subject
from csvdnet.dicom.index import index_folder
from csvdnet.dicom.source import DEFAULT_ID, dicom_sources, open_dicom, subject_id
from csvdnet.dicom.vendor import study_attributes, write_series
from csvdnet.errors import CsvdnetInputError

CHANNELS = ("flair", "t1", "t2", "swi", "dwi")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three studies in one folder: a good one (A), one without FLAIR (B), a CT study, and a
    stray text file."""
    root = tmp_path_factory.mktemp("source")
    subject = tiny_subject(root / "synth")
    inbox = root / "inbox"
    good = tiny_study(subject, inbox, patient_id="A")
    no_flair = tiny_study(subject, inbox, patient_id="B", extras=False)
    shutil.rmtree(no_flair.root / "0002")
    write_series(good.images["flair"], inbox / "ct", "flair", study_attributes("C", modality="CT"),
                 2)
    (inbox / "readme.txt").write_text("exported by hand")
    return inbox, good, no_flair


def _id(uid, patient):
    return f"{patient}_20260101_{hashlib.sha1(uid.encode()).hexdigest()[:6]}"


def test_studies_become_subjects_or_one_line_problems(folder, tmp_path):
    inbox, good, no_flair = folder
    work = tmp_path / "work"
    subjects, problems = open_dicom(inbox, work, CHANNELS, "flair")
    good_id = _id(good.study_uid, "A")
    assert [s.id for s in subjects] == [good_id]
    subject = subjects[0]
    assert subject.sequences == {name: work / good_id / f"{name}.nii" for name in CHANNELS}
    assert sorted(problems) == sorted([_id(no_flair.study_uid, "B"),
                                       _id(study_attributes("C")["study_uid"], "C")])
    assert "no flair series" in problems[_id(no_flair.study_uid, "B")]
    assert problems[_id(study_attributes("C")["study_uid"], "C")].endswith(
        "not an MR study (modality CT): skipped")
    assert all("\n" not in message for message in problems.values())
    record = subject.source
    assert {k: v["series_number"] for k, v in record["series"].items()} == \
        {"flair": 2, "t1": 3, "t2": 4, "swi": 5, "dwi": 8, "dwi_b0": 8}
    assert record["study_uid"] == good.study_uid and record["patient_id"] == "A"
    assert json.loads((work / good_id / "selection.json").read_text()) == record
    sources = dicom_sources(record)
    assert set(sources) == set(CHANNELS)  # dwi_b0 is recorded, not a source of the outputs
    assert sources["flair"] == sorted((good.root / "0002").iterdir())
    skipped = (work / "skipped_files.tsv").read_text().splitlines()
    assert skipped == ["file\treason", f"{inbox / 'readme.txt'}\tnot a DICOM file"]
    assert not any(p.suffix == ".nii" for p in inbox.rglob("*"))  # nothing into the input


def test_rerun_reuses_the_conversion_until_an_input_changes(folder, tmp_path):
    inbox, good, _ = folder
    work = tmp_path / "work"
    subjects, _ = open_dicom(inbox, work, CHANNELS, "flair")
    flair = subjects[0].sequences["flair"]
    first = flair.stat().st_mtime_ns
    open_dicom(inbox, work, CHANNELS, "flair")
    assert flair.stat().st_mtime_ns == first
    t1 = sorted((good.root / "0003").iterdir())[0]
    os.utime(t1, ns=(t1.stat().st_atime_ns, t1.stat().st_mtime_ns + 10**9))
    open_dicom(inbox, work, CHANNELS, "flair")
    assert flair.stat().st_mtime_ns != first


def test_subject_ids(folder, tmp_path):
    inbox, good, no_flair = folder
    study = next(s for s in index_folder(good.root).studies)
    assert subject_id(study) == _id(good.study_uid, "A")
    assert DEFAULT_ID == "{patient_id}_{study_date}_{uid_hash}"
    assert subject_id(study, "{accession}/{study_id} x") == \
        study_attributes("A")["accession"] + "-1-x"
    with pytest.raises(CsvdnetInputError, match="unknown field"):
        open_dicom(inbox, tmp_path / "w", CHANNELS, "flair", id_template="{patient}")
    both = tmp_path / "both"
    shutil.copytree(good.root, both / "a")
    shutil.copytree(no_flair.root, both / "b")
    for path in (both / "b").rglob("IM*"):  # patient B's study now claims patient A
        ds = pydicom.dcmread(path)
        ds.PatientID = "A"
        ds.save_as(path)
    subjects, problems = open_dicom(both, tmp_path / "w2", CHANNELS, "flair",
                                    id_template="{patient_id}")
    # two studies of patient A: each id gets its own StudyInstanceUID hash
    assert [s.id for s in subjects] == [f"A_{_id(good.study_uid, 'A')[-6:]}"]
    assert list(problems) == [f"A_{_id(no_flair.study_uid, 'A')[-6:]}"]


def test_a_folder_without_dicom(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    with pytest.raises(CsvdnetInputError, match="no DICOM image in the folder"):
        open_dicom(tmp_path / "in", tmp_path / "w", CHANNELS, "flair")
