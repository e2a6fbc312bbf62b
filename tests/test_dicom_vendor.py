"""csvdnet.dicom.vendor: the synthetic vendor-like study is what it claims to be."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from _dicom_study import series_files, tiny_study, tiny_subject
from csvdnet.dicom.vendor import ENHANCED_MR_IMAGE, MR_IMAGE, oblique_image


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("vendor")
    subject = tiny_subject(root / "synth")
    return subject, tiny_study(subject, root / "a"), tiny_study(subject, root / "b")


def test_series_attributes(made):
    _, study, again = made
    assert {n: p for n, (p, _) in study.series.items()} == {
        1: "localizer", 2: "flair", 3: "t1", 4: "t2", 5: "swi", 6: "swi_phase", 7: "swi_minip",
        8: "dwi", 9: "adc"}
    assert again.study_uid == study.study_uid  # UIDs from the seed: a rewrite is the same study
    flair = pydicom.dcmread(series_files(study, "flair")[0])
    assert (flair.Manufacturer, flair.SOPClassUID, flair.ScanningSequence) == \
        ("SIEMENS", MR_IMAGE, ["SE", "IR"])
    iop = np.array(flair.ImageOrientationPatient, float)
    # the tiny FLAIR is LPS; turned by 12 degrees about left-right, its columns run posterior
    # and 12 degrees down: (0, -cos, -sin) in RAS, (0, cos, -sin) in DICOM's LPS
    theta = np.deg2rad(12.0)
    assert np.allclose(iop, [1, 0, 0, 0, np.cos(theta), -np.sin(theta)], atol=1e-6)
    t1 = pydicom.dcmread(series_files(study, "t1")[0])
    assert t1.file_meta.TransferSyntaxUID == RLELossless
    assert list(map(float, t1.ImageOrientationPatient)) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # LPS
    assert t1.pixel_array.shape == (t1.Rows, t1.Columns)  # decodes
    t2 = pydicom.dcmread(series_files(study, "t2")[0])
    assert t2.SOPClassUID == ENHANCED_MR_IMAGE and t2.NumberOfFrames == study.images["t2"].shape[2]
    dwi = [pydicom.dcmread(p, stop_before_pixels=True) for p in series_files(study, "dwi")]
    assert sorted({float(d.DiffusionBValue) for d in dwi}) == [0.0, 1000.0]
    assert {d.ImageType[3] for d in dwi if d.DiffusionBValue == 0} == {"NONE"}


def test_a_rewrite_is_the_same_bytes(made):
    # "UIDs are derived from seed": the RLE-compressed T1 once drew a fresh SOPInstanceUID on
    # every write (pydicom's compress() does unless told not to).
    _, study, again = made
    for number, (_, paths) in study.series.items():
        other = again.series[number][1]
        assert [p.name for p in paths] == [p.name for p in other]
        for a, b in zip(paths, other):
            assert a.read_bytes() == b.read_bytes(), a


def test_pixels_and_positions_are_the_nifti(made):
    _, study, _ = made
    flair = study.images["flair"]
    files = series_files(study, "flair")
    k = len(files) // 2
    ds = pydicom.dcmread(files[k])
    assert np.array_equal(ds.pixel_array, np.asarray(flair.dataobj)[:, :, k].T)
    world = flair.affine @ np.array([0.0, 0.0, k, 1.0])
    assert np.allclose(np.array(ds.ImagePositionPatient, float),
                       world[:3] * [-1, -1, 1], atol=1e-4)


def test_oblique_image_keeps_the_centre_and_the_voxel_size():
    data = np.zeros((9, 9, 9), np.int16)
    data[4, 4, 4] = 100
    image = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    turned = oblique_image(image, 30.0)
    assert np.allclose(np.linalg.norm(turned.affine[:3, :3], axis=0), [2, 2, 3])
    assert np.asarray(turned.dataobj)[4, 4, 4] == 100  # the centre voxel stays in place
    centre = turned.affine @ [4, 4, 4, 1]
    assert np.allclose(centre, image.affine @ [4, 4, 4, 1])
    assert oblique_image(image, 0.0) is image


def test_command_line(made, tmp_path, capsys):
    from csvdnet.dicom.vendor import main

    subject, study, _ = made
    assert main([str(subject), str(tmp_path), "--patient-id", "P7"]) == 0
    written = capsys.readouterr().out
    files = sum(len(paths) for _, paths in study.series.values())
    assert written.startswith(f"wrote 9 series, {files} files: {tmp_path / 'P7'}")
    with pytest.raises(SystemExit):
        main([str(tmp_path), str(tmp_path / "x")])
