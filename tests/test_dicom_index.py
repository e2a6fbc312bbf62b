"""csvdnet.dicom.index: any layout, headers only, non-DICOM and unusable files listed."""

from __future__ import annotations

import shutil

import pytest
from pydicom.fileset import FileSet

from _dicom_study import series_files, tiny_study, tiny_subject
from csvdnet.dicom.index import index_folder, looks_like_dicom_folder, read_instance


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    return tiny_study(tiny_subject(root / "synth"), root / "dicom")


def test_index_groups_series_and_lists_what_is_not_dicom(study, tmp_path):
    root = tmp_path / "in"
    shutil.copytree(study.root, root / "deep" / "nested")
    (root / "notes.txt").write_text("not an image")
    (root / "deep" / "Thumbs.db").write_bytes(b"\0" * 300)
    index = index_folder(root)
    assert len(index.studies) == 1
    found = index.studies[0]
    assert found.uid == study.study_uid
    # series 1..9 of the vendor study, in SeriesNumber order; DWI b0 + b1000 in one series
    assert [s.number for s in found.series] == list(range(1, 10))
    counts = {s.number: s.frame_count for s in found.series}
    assert counts[2] == study.images["flair"].shape[2]
    assert counts[4] == study.images["t2"].shape[2]  # one enhanced file, one frame per slice
    assert counts[8] == 2 * study.images["dwi"].shape[2]
    assert len(found.series[3].instances) == 1
    assert set(index.skipped) == {root / "notes.txt", root / "deep" / "Thumbs.db"}
    assert set(index.skipped.values()) == {"not a DICOM file"}


def test_truncated_copy_and_dicomdir(study, tmp_path):
    root = tmp_path / "in"
    shutil.copytree(study.root, root)
    flair = sorted((root / "0002").iterdir())
    data = flair[3].read_bytes()
    flair[3].write_bytes(data[:-100])  # pixel data cut off
    (root / "zz_copies").mkdir()  # walked after 0002/: the copy is the one set aside
    shutil.copy(flair[4], root / "zz_copies" / "flair_5")
    index = index_folder(root)
    assert index.skipped[flair[3]] == "truncated: its pixel data is cut off"
    assert index.skipped[root / "zz_copies" / "flair_5"] == \
        f"a copy of {flair[4]} (same SOPInstanceUID)"
    series = {s.number: s for s in index.studies[0].series}
    assert len(series[2].instances) == study.images["flair"].shape[2] - 1
    # a DICOMDIR-indexed copy (pydicom's FileSet layout): the DICOMDIR is listed, images read
    fs_root = tmp_path / "media"
    fs = FileSet()
    for path in series_files(study, "t1")[:3]:
        fs.add(str(path))
    fs.write(fs_root)
    media = index_folder(fs_root)
    assert [len(s.instances) for s in media.studies[0].series] == [3]
    assert media.skipped == {fs_root / "DICOMDIR": "a DICOMDIR (the folder's files are read "
                                                   "directly)"}


def test_enhanced_frames_and_b_values(study):
    t2 = read_instance(series_files(study, "t2")[0])
    assert len(t2.frames) == study.images["t2"].shape[2]
    assert t2.orientation is not None and t2.spacing == pytest.approx((3.5, 3.5))
    dwi = [read_instance(p) for p in series_files(study, "dwi")]
    b_values = sorted({f.b_value for i in dwi for f in i.frames})
    assert b_values == [0.0, 1000.0]
    b0 = {f.position for i in dwi for f in i.frames if f.b_value == 0}
    b1000 = {f.position for i in dwi for f in i.frames if f.b_value == 1000}
    assert b0 == b1000  # same slice positions, kept apart by their b-value


def test_dicom_folder_detection(study, tmp_path):
    assert looks_like_dicom_folder(study.root)
    nifti = tmp_path / "cohort" / "sub-1"
    nifti.mkdir(parents=True)
    (nifti / "flair.nii.gz").write_bytes(b"x")
    assert not looks_like_dicom_folder(tmp_path / "cohort")
    bids = tmp_path / "bids"
    shutil.copytree(study.root, bids / "sourcedata")
    (bids / "dataset_description.json").write_text("{}")
    assert not looks_like_dicom_folder(bids)
    assert not looks_like_dicom_folder(series_files(study, "t1")[0])  # a file, not a folder


def test_b_values_of_each_vendor():
    from pydicom.dataset import Dataset

    from csvdnet.dicom.index import _b_value

    siemens = Dataset()
    siemens.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    siemens.add_new(0x0019100C, "IS", "1000")
    ge = Dataset()
    ge.add_new(0x00431039, "IS", ["1000001000", "8", "0", "0"])  # GE adds 1e9
    philips = Dataset()
    philips.add_new(0x20011003, "FL", 500.0)
    standard = Dataset()
    standard.DiffusionBValue = 0.0
    assert [_b_value(d) for d in (siemens, ge, philips, standard, Dataset())] == \
        [1000.0, 1000.0, 500.0, 0.0, None]
