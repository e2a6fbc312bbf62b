"""csvdnet.io.cohort: cohort folders and manifests, located and loaded."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from _nifti_files import LPS, RAMP, raises_input_error
from csvdnet.io import Ratings, load_subject, read_cohort, save_nifti

# --------------------------------------------------------------------------------------------
# Cohorts: folder form

def touch(root: Path, *names: str) -> None:
    """Empty files: discovery only locates files, it must never read them."""
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()


def make_cohort_folder(root: Path) -> Path:
    touch(root, "s02/flair.nii.gz", "s02/t1.nii", "s02/dwi.nii.gz", "s02/labels/wmh.nii.gz",
          "s02/labels/rssi@dwi.nii.gz", "s02/labels/cmb.csv", "s02/labels/notes.txt",
          "s01/flair.nii", "s01/flair.nii.bak", "backup/flair.nii.bak", "docs/readme.txt",
          ".s03.part/flair.nii.gz")
    (root / "s01" / "labels").mkdir()
    (root / "ratings.csv").write_text("subject,fazekas_pv,cmb_count\ns02,2,3\n")
    return root


def test_cohort_folder_discovery(tmp_path):
    root = make_cohort_folder(tmp_path / "cohort")

    cohort = read_cohort(root)

    assert [s.id for s in cohort] == ["s01", "s02"] and len(cohort) == 2
    assert cohort.root == root and cohort.manifest is None
    assert cohort.sequences == ("flair", "t1", "t2", "swi", "dwi") and cohort.reference == "flair"
    s01, s02 = cohort["s01"], cohort["s02"]
    assert s01.sequences == {"flair": root / "s01" / "flair.nii"}
    assert s01.labels == {} and s01.present_labels() == () and s01.ratings is None
    assert list(s02.sequences) == ["flair", "t1", "dwi"]  # cohort order, not file order
    assert s02.sequences["dwi"] == root / "s02" / "dwi.nii.gz"
    assert s02.labels == {"wmh": root / "s02/labels/wmh.nii.gz",
                          "rssi": root / "s02/labels/rssi@dwi.nii.gz",
                          "cmb": root / "s02/labels/cmb.csv"}
    assert s02.label_sequence == {"wmh": "flair", "rssi": "dwi", "cmb": "flair"}
    assert s02.present_labels() == ("wmh", "rssi", "cmb")  # lacune, epvs absent, not faked
    assert s02.ratings == Ratings(fazekas_pv=2, cmb_count=3)
    with pytest.raises(KeyError, match="s03"):
        cohort["s03"]
    # every folder is a subject or a listed problem, never skipped without a word
    assert list(cohort.problems) == ["backup", "docs"]
    assert cohort.problems["backup"] == (
        f"{root / 'backup'}: no flair image (the reference sequence): the folder holds no NIfTI "
        "image (found flair.nii.bak)")
    assert cohort.problems["docs"].endswith("the folder holds no NIfTI image (found readme.txt)")


@pytest.mark.parametrize("names, expected", [
    (("FLAIR.nii.gz", "T1.nii.gz"), {"flair": "FLAIR.nii.gz", "t1": "T1.nii.gz"}),
    (("T2_FLAIR.nii.gz", "t1w.nii", "T2W.nii.gz", "SWI.nii.gz", "DWI.nii"),
     {"flair": "T2_FLAIR.nii.gz", "t1": "t1w.nii", "t2": "T2W.nii.gz", "swi": "SWI.nii.gz",
      "dwi": "DWI.nii"}),
    (("Flair.NII.GZ", "T2star.nii.gz", "b1000.nii.gz", "MPRAGE.nii"),
     {"flair": "Flair.NII.GZ", "t1": "MPRAGE.nii", "swi": "T2star.nii.gz",
      "dwi": "b1000.nii.gz"}),
], ids=["hospital-capitals", "aliases", "more-aliases"])
def test_sequence_names_match_case_insensitively_with_aliases(tmp_path, names, expected):
    root = tmp_path / "cohort"
    touch(root, *(f"s01/{name}" for name in names))

    cohort = read_cohort(root)

    assert cohort.problems == {}
    assert cohort["s01"].sequences == {seq: root / "s01" / name for seq, name in expected.items()}


def test_a_folder_without_usable_images_is_a_listed_problem(tmp_path):
    root = make_cohort_folder(tmp_path / "cohort")
    touch(root, "s03/notes.txt", "s04/brain.nii.gz", "s04/scan2.nii", "s05/t1.nii.gz",
          "s06/FLAIR.nii.gz", "s06/t2_flair.nii")
    (root / "s07").mkdir()
    (root / "s08").mkdir()
    (root / "s08" / "flair.nii.gz").symlink_to("flair.nii.gz")  # loops onto itself

    cohort = read_cohort(root)

    assert [s.id for s in cohort] == ["s01", "s02"]
    problems = cohort.problems
    assert problems["s03"].endswith("the folder holds no NIfTI image (found notes.txt)")
    assert problems["s04"].endswith(
        "no NIfTI file is named after a sequence (flair may be named flair, t2_flair, t2-flair, "
        "t2flair, flair_t2, any case); found brain.nii.gz, scan2.nii")
    assert problems["s05"] == f"{root / 's05'}: no flair image (the reference sequence)"
    assert problems["s06"] == (f"{root / 's06'}: both FLAIR.nii.gz and t2_flair.nii are taken as "
                               "flair: keep one")
    assert problems["s07"].endswith("no flair image (the reference sequence): the folder is empty")
    assert problems["s08"] == (f"{root / 's08' / 'flair.nii.gz'}: a broken or self-looping "
                               "symbolic link (its target cannot be reached)")


def test_cohort_folder_with_fewer_sequences(tmp_path):
    root = make_cohort_folder(tmp_path / "cohort")
    (root / "s02" / "labels" / "rssi@dwi.nii.gz").unlink()

    cohort = read_cohort(root, sequences=("t1", "flair"))

    assert list(cohort["s02"].sequences) == ["t1", "flair"]


@pytest.mark.parametrize("change, at, reason", [
    (lambda root: (root / "s01/flair.nii").rename(root / "s01/t1.nii"), "s01",
     r"no flair image \(the reference sequence\)"),
    (lambda root: touch(root, "s01/labels/wmh_mask.nii.gz"), "s01/labels/wmh_mask.nii.gz",
     "unknown label 'wmh_mask' .*wmh, rssi, lacune, cmb, epvs, regions, brain_mask"),
    (lambda root: touch(root, "s01/labels/rssi@dwi.nii.gz"), "s01",
     r"label rssi \(rssi@dwi.nii.gz\) is drawn on dwi, but the subject has no dwi image"),
    (lambda root: touch(root, "s01/labels/rssi@adc.nii.gz"), "s01/labels/rssi@adc.nii.gz",
     "label 'rssi@adc' is drawn on 'adc', which is not one of the sequences"),
    (lambda root: touch(root, "s01/labels/wmh.csv"), "s01/labels",
     "wmh.csv: label wmh must be a .nii/.nii.gz file"),
    (lambda root: touch(root, "s01/labels/cmb.csv", "s01/labels/cmb.nii.gz"), "s01/labels",
     "two files for label cmb: cmb.csv and cmb.nii.gz"),
    (lambda root: touch(root, "s01/flair.nii.gz"), "s01",
     "both flair.nii and flair.nii.gz are taken as flair: keep one"),
    (lambda root: (root / "ratings.csv").write_text("subject,cmb_count\ns09,1\n"), "ratings.csv",
     "subject s09 is rated but not in the cohort"),
], ids=["no-reference", "unknown-label", "label-sequence-absent", "label-sequence-unknown",
        "mask-as-csv", "two-files", "two-flairs", "stranger-rated"])
def test_bad_cohort_folders_fail_the_subject_or_refuse_the_cohort(tmp_path, change, at, reason):
    root = make_cohort_folder(tmp_path / "cohort")
    change(root)

    if at == "ratings.csv":  # a problem of the cohort: refused
        with raises_input_error(root / at, reason):
            read_cohort(root)
        return
    cohort = read_cohort(root)  # a problem of s01: it fails alone
    assert [s.id for s in cohort] == ["s02"]
    assert list(cohort.problems) == ["backup", "docs", "s01"]  # backup, docs: no images at all
    assert re.match(re.escape(str(root / at)) + ": " + reason, cohort.problems["s01"])


def test_a_reference_no_subject_has_refuses_the_cohort(tmp_path):
    root = make_cohort_folder(tmp_path / "cohort")
    with raises_input_error(root, r"no subject has a t2 image \(the reference sequence\)"):
        read_cohort(root, sequences=("flair", "t2"), reference="t2")


def test_cohort_path_must_exist_and_hold_subjects(tmp_path):
    with raises_input_error(tmp_path / "absent", "cohort folder or manifest not found"):
        read_cohort(tmp_path / "absent")
    with raises_input_error(tmp_path, "no subject folders"):
        read_cohort(tmp_path)
    touch(tmp_path, "docs/flair.nii.bak")
    with raises_input_error(tmp_path, r"no subject has a flair image \(the reference sequence\)"):
        read_cohort(tmp_path)
    with raises_input_error(tmp_path, "reference sequence 'flair' is not one of the sequences"):
        read_cohort(tmp_path, sequences=("t1",))


def test_load_subject_loads_sequences_in_cohort_order(tmp_path):
    root = tmp_path / "cohort"
    (root / "s01").mkdir(parents=True)
    save_nifti(RAMP + 1, np.eye(4), root / "s01" / "t1.nii.gz")
    save_nifti(RAMP, LPS, root / "s01" / "flair.nii.gz")

    images = load_subject(read_cohort(root)["s01"])

    assert list(images) == ["flair", "t1"]
    assert np.array_equal(images["t1"].data, RAMP + 1)
    np.testing.assert_allclose(images["flair"].affine, LPS, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Cohorts: manifest form

MANIFEST_FILES = ("data/s01_flair.nii.gz", "data/s01_t1.nii", "data/s01_wmh.nii.gz",
                  "data/s01_cmb.csv", "data/s02_flair.nii.gz", "data/s02_dwi.nii.gz",
                  "data/s02_rssi.nii.gz")


def make_manifest(tmp_path: Path, rows: str, header: str | None = None) -> Path:
    study = tmp_path / "study"
    touch(study, *MANIFEST_FILES)
    manifest = study / "manifest.csv"
    header = "subject,flair,t1,dwi,wmh,rssi@dwi,cmb" if header is None else header
    manifest.write_text(f"{header}\n{rows}")
    return manifest


def test_manifest_paths_resolve_against_the_manifest(tmp_path, monkeypatch):
    study = tmp_path / "study"
    manifest = make_manifest(tmp_path, "s01,data/s01_flair.nii.gz,data/s01_t1.nii,,"
                                       "data/s01_wmh.nii.gz,,./data/s01_cmb.csv\n"
                                       f"s02,data/s02_flair.nii.gz,,{study}/data/s02_dwi.nii.gz,,"
                                       "data/s02_rssi.nii.gz,\n")
    (study / "ratings.csv").write_text("subject,total_score\ns01,1\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")

    cohort = read_cohort(Path("..") / "study" / "manifest.csv")

    data = study / "data"
    assert cohort.root == study and cohort.manifest == manifest
    assert [s.id for s in cohort] == ["s01", "s02"]
    s01, s02 = cohort["s01"], cohort["s02"]
    assert s01.sequences == {"flair": data / "s01_flair.nii.gz", "t1": data / "s01_t1.nii"}
    assert s01.labels == {"wmh": data / "s01_wmh.nii.gz", "cmb": data / "s01_cmb.csv"}
    assert s01.label_sequence == {"wmh": "flair", "cmb": "flair"}
    assert s01.ratings == Ratings(total_score=1)
    assert s02.sequences == {"flair": data / "s02_flair.nii.gz", "dwi": data / "s02_dwi.nii.gz"}
    assert s02.labels == {"rssi": data / "s02_rssi.nii.gz"}
    assert s02.label_sequence == {"rssi": "dwi"}
    assert s02.ratings is None


def test_manifest_sequence_columns_match_case_insensitively_with_aliases(tmp_path):
    manifest = make_manifest(tmp_path, "s01,data/s01_flair.nii.gz,data/s01_t1.nii\n",
                             "subject,FLAIR,T1w")

    cohort = read_cohort(manifest)

    data = tmp_path / "study" / "data"
    assert cohort["s01"].sequences == {"flair": data / "s01_flair.nii.gz",
                                       "t1": data / "s01_t1.nii"}


def test_manifest_sequences_follow_cohort_order_and_unused_ones_are_ignored(tmp_path):
    manifest = make_manifest(tmp_path, "s01,data/s01_t1.nii,data/s02_dwi.nii.gz,"
                                       "data/s01_flair.nii.gz\n", "subject,t1,dwi,flair")

    cohort = read_cohort(manifest, sequences=("flair", "t1"))

    assert list(cohort["s01"].sequences) == ["flair", "t1"]


@pytest.mark.parametrize("header, rows, reason", [
    (None, "s01,data/s01_flair.nii.gz,,,,,\ns01,data/s02_flair.nii.gz,,,,,\n",
     r"row 3: subject s01 is listed twice \(also row 2\)"),
    ("subject,flare", "s01,data/s01_flair.nii.gz\n",
     r"unknown column 'flare' \(known: subject, flair, t1, t2, swi, dwi or an alias of theirs, "
     r"wmh, rssi, lacune, cmb, epvs, regions, brain_mask, or <label>@<sequence>\)"),
    ("subject,FLAIR,t2_flair", "s01,data/s01_flair.nii.gz,data/s01_flair.nii.gz\n",
     "columns 'FLAIR' and 't2_flair' are both taken as flair: keep one"),
    ("id,flair", "s01,data/s01_flair.nii.gz\n", r"missing column\(s\) subject"),
    (None, "s01,data/s01_flair.nii.gz,,,data/s01_lacune.nii.gz,,\n",
     r"row 2 \(subject s01\): column wmh: .*s01_lacune.nii.gz does not exist"),
    (None, "", r"no subjects \(the manifest has no data rows\)"),
    ("", "", r"missing column\(s\) subject \(header: none\)"),
    (None, "s01,,data/s01_t1.nii,,,,\ns02,data/s02_flair.nii.gz,,,,,\n",
     r"row 2 \(subject s01\): no flair image"),
    (None, "s01,data/s01_flair.nii.gz,,,data/s01_cmb.csv,,\n",
     r"row 2 \(subject s01\): column wmh: s01_cmb.csv: label wmh must be a .nii/.nii.gz file"),
    (None, "s01,data/s01_cmb.csv,,,,,\n",
     r"row 2 \(subject s01\): column flair: s01_cmb.csv: a sequence must be a .nii/.nii.gz file"),
    (None, "s01,data/s01_flair.nii.gz,,,,data/s02_rssi.nii.gz,\n",
     r"row 2 \(subject s01\): label rssi \(s02_rssi.nii.gz\) is drawn on dwi, but the subject has "
     "no dwi image"),
    ("subject,flair,rssi@adc", "s01,data/s01_flair.nii.gz,\n",
     "column 'rssi@adc': label 'rssi@adc' is drawn on 'adc', which is not one of the sequences"),
], ids=["duplicate", "unknown-column", "no-subject-column", "missing-file", "no-rows", "empty-file",
        "two-flair-columns", "no-reference", "mask-as-csv", "sequence-as-csv",
        "label-sequence-absent", "label-sequence-unknown"])
def test_bad_manifests_name_the_manifest_and_row(tmp_path, header, rows, reason):
    manifest = make_manifest(tmp_path, rows, header)

    if "subject s01\\)" not in reason:  # a problem of the whole manifest: refused
        with raises_input_error(manifest, reason):
            read_cohort(manifest)
        return
    cohort = read_cohort(manifest)  # a problem of one row: that subject fails alone
    assert "s01" not in [s.id for s in cohort] and list(cohort.problems) == ["s01"]
    assert re.match(re.escape(str(manifest)) + ": " + reason, cohort.problems["s01"])


def test_one_bad_manifest_row_or_ratings_row_fails_only_its_subject(tmp_path):
    manifest = make_manifest(tmp_path, "s01,data/s01_flair.nii.gz,,,,,\n"
                                       "s02,data/s02_flair.nii.gz,,,data/missing.nii.gz,,\n"
                                       "s03,data/s02_flair.nii.gz,,,,,\n")
    (manifest.parent / "ratings.csv").write_text("subject,fazekas_pv\ns01,2\ns03,7\n")

    cohort = read_cohort(manifest)

    assert [s.id for s in cohort] == ["s01"] and cohort["s01"].ratings.fazekas_pv == 2
    assert list(cohort.problems) == ["s02", "s03"]
    assert "column wmh: " in cohort.problems["s02"] and "does not exist" in cohort.problems["s02"]
    assert re.search(r"ratings\.csv: row 3, column fazekas_pv: 7 is out of range",
                     cohort.problems["s03"])


def test_unknown_files_in_a_subject_folder_are_named_in_a_warning(tmp_path, caplog):
    root = make_cohort_folder(tmp_path / "cohort")
    touch(root, "s02/flair_old.nii.gz", "s02/dwi.bval", "s02/synth.json")

    with caplog.at_level("WARNING", logger="csvdnet.io.cohort"):
        read_cohort(root)

    warnings = [r.getMessage() for r in caplog.records]
    assert any(str(root / "s01") in w and w.endswith(": flair.nii.bak") for w in warnings)
    assert any(str(root / "s02") in w and w.endswith(": flair_old.nii.gz") for w in warnings)


def test_manifest_ratings_for_unknown_subject_are_refused(tmp_path):
    manifest = make_manifest(tmp_path, "s01,data/s01_flair.nii.gz,,,,,\n")
    ratings = manifest.parent / "ratings.csv"
    ratings.write_text("subject,cmb_count\ns01,0\ns02,1\n")

    with raises_input_error(ratings, "subject s02 is rated but not in the cohort"):
        read_cohort(manifest)


def test_a_nifti_given_as_the_cohort_is_called_an_image_not_a_bad_csv(tmp_path):
    root = make_cohort_folder(tmp_path / "cohort")

    with raises_input_error(root / "s01" / "flair.nii", "is one image, not a cohort: give the "
                                                         r"subject's folder \(holding flair"):
        read_cohort(root / "s01" / "flair.nii")


def test_a_manifest_cell_naming_a_looping_symlink_says_so(tmp_path):
    manifest = make_manifest(tmp_path, "s01,data/loop.nii.gz,,,,,\n")
    (manifest.parent / "data" / "loop.nii.gz").symlink_to("loop.nii.gz")

    cohort = read_cohort(manifest)

    assert cohort.problems["s01"].endswith("loop.nii.gz is a broken or self-looping symbolic link")


def test_ratings_of_subjects_outside_a_subset_manifest_only_warn_when_not_strict(tmp_path,
                                                                               caplog):
    manifest = make_manifest(tmp_path, "s01,data/s01_flair.nii.gz,,,,,\n")
    (manifest.parent / "ratings.csv").write_text("subject,cmb_count\ns01,0\ns02,1\ns03,2\n")

    with caplog.at_level("WARNING", logger="csvdnet.io.cohort"):
        cohort = read_cohort(manifest, strict_ratings=False)

    assert [s.id for s in cohort] == ["s01"] and cohort["s01"].ratings == Ratings(cmb_count=0)
    assert any(w.getMessage().endswith("ignoring the ratings of 2 subject(s) not in this "
                                       "cohort: s02, s03") for w in caplog.records)
