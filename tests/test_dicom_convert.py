"""csvdnet.dicom.convert: dcm2niix per channel, each NIfTI checked against the DICOM headers."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from _dicom_study import tiny_study, tiny_subject
from csvdnet.dicom import convert
from csvdnet.dicom.convert import (ConversionError, check_geometry, convert_selection,
                                   dcm2niix_binary, run_dcm2niix)
from csvdnet.dicom.index import index_folder
from csvdnet.dicom.rules import load_rules
from csvdnet.dicom.select import select_study
from csvdnet.errors import CsvdnetInputError


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    study = tiny_study(tiny_subject(root / "synth"), root / "dicom")
    selection = select_study(index_folder(study.root).studies[0], load_rules(),
                             ("flair", "t1", "t2", "swi", "dwi"), "flair")
    paths = convert_selection(selection, root / "work" / "s1", study.root)
    return study, selection, paths


def _voxels_in(image, onto):
    """Values of ``onto`` at the world positions of every voxel of ``image`` (exact grids)."""
    ijk = np.indices(image.shape).reshape(3, -1)
    world = image.affine[:3, :3] @ ijk + image.affine[:3, 3:]
    voxel = np.linalg.inv(onto.affine)[:3, :3] @ world + np.linalg.inv(onto.affine)[:3, 3:]
    nearest = np.round(voxel).astype(int)
    assert np.abs(voxel - nearest).max() < 1e-3
    return np.asarray(onto.dataobj)[tuple(nearest)]


def test_every_channel_converted_exactly_in_world_space(converted):
    study, selection, paths = converted
    assert sorted(p.name for p in paths.values()) == \
        ["dwi.nii", "dwi_b0.nii", "flair.nii", "swi.nii", "t1.nii", "t2.nii"]
    for channel, image in study.images.items():  # oblique FLAIR, LPS T1, enhanced T2, RLE T1
        made = nib.load(str(paths[channel]))
        assert made.shape == image.shape or sorted(made.shape) == sorted(image.shape)
        assert np.array_equal(_voxels_in(image, made), np.asarray(image.dataobj).reshape(-1)), \
            channel
    sidecar = json.loads(paths["flair"].with_suffix(".json").read_text())
    assert sidecar["EchoTime"] == pytest.approx(0.081)
    assert sidecar["InversionTime"] == pytest.approx(2.5)
    assert nib.load(str(paths["dwi"])).ndim == 3  # b1000 alone; b0 in dwi_b0.nii
    assert not paths["dwi"].with_suffix(".bval").exists()


def test_geometry_check_catches_lps_ras_and_row_column_mixups(converted):
    _, selection, paths = converted
    flair = nib.load(str(paths["flair"]))
    instances = selection.chosen["flair"].instances
    check_geometry(flair, instances)  # as converted: passes
    data = np.asarray(flair.dataobj)
    ras_as_lps = nib.Nifti1Image(data, np.diag([-1.0, -1.0, 1.0, 1.0]) @ flair.affine)
    with pytest.raises(ConversionError, match=r"pixel \(row \d+, column \d+\) of slice 1 "):
        check_geometry(ras_as_lps, instances)
    assert data.shape[0] == data.shape[1]  # square slices: only the values can tell
    transposed = nib.Nifti1Image(np.ascontiguousarray(data.transpose(1, 0, 2)), flair.affine)
    with pytest.raises(ConversionError, match="rows / columns or the slice order are mixed up"):
        check_geometry(transposed, instances)
    reversed_slices = nib.Nifti1Image(np.ascontiguousarray(data[:, :, ::-1]), flair.affine)
    with pytest.raises(ConversionError, match="mixed up"):
        check_geometry(reversed_slices, instances)
    with pytest.raises(ConversionError, match="the NIfTI has shape"):
        check_geometry(flair.slicer[:, :, 1:], instances)


def test_failures_are_named_and_leave_no_work_folder(converted, tmp_path, monkeypatch):
    study, selection, _ = converted
    assert dcm2niix_binary().endswith("dcm2niix")
    text = tmp_path / "not_dicom"
    text.write_text("hello")
    with pytest.raises(ConversionError, match="dcm2niix failed"):
        run_dcm2niix([text], tmp_path / "out", "x")

    def broken(image, instances, **kwargs):
        raise ConversionError("made up")

    monkeypatch.setattr(convert, "check_geometry", broken)
    work = tmp_path / "work" / "s1"
    with pytest.raises(CsvdnetInputError) as error:
        convert_selection(selection, work, study.root)
    assert str(error.value) == (f"{study.root}: study {study.study_uid} (patient SYNTH0001, "
                                "date 20260101): series 2 't2_tirm_tra_dark-fluid' (flair): "
                                "made up")
    assert not work.exists() and list((tmp_path / "work").iterdir()) == []
