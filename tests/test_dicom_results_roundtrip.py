"""The geometry round trip without the network: a vendor-like study (oblique FLAIR, enhanced
multi-frame T2, DWI b0 + b1000) converted by dcm2niix as predict converts it, findings planted on
the converted FLAIR's grid, written back by write_results: the SEG pixels land on them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

import _dicom_results_fixtures as fx
from _dicom_study import tiny_study, tiny_subject
from csvdnet.dicom.results import write_results
from csvdnet.dicom.source import dicom_sources, open_dicom

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_roundtrip")
    study = tiny_study(tiny_subject(root / "synth"), root / "inbox", patient_id="RT")
    subjects, problems = open_dicom(root / "inbox", root / "work",
                                    ("flair", "t1", "t2", "swi", "dwi"), "flair")
    assert not problems and len(subjects) == 1
    return root, study, subjects[0]


def _pixels_world(seg_path: Path, number: int) -> np.ndarray:
    """World RAS mm of every pixel of segment ``number`` (from the SEG's own plane positions)."""
    seg = pydicom.dcmread(seg_path)
    shared = seg.SharedFunctionalGroupsSequence[0]
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    points = []
    for k, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        groups = frame if "SegmentIdentificationSequence" in frame else shared
        if groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber != number:
            continue
        where = frame if "PlanePositionSequence" in frame else shared
        ipp = np.asarray(where.PlanePositionSequence[0].ImagePositionPatient, float)
        iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
        dr, dc = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
        r, c = np.nonzero(pixels[k])
        points.append(ipp + np.outer(c * dc, iop[:3]) + np.outer(r * dr, iop[3:]))
    return np.concatenate(points) * np.array([-1.0, -1.0, 1.0]) if points else np.zeros((0, 3))


def test_seg_lands_on_findings_planted_on_the_converted_flair(converted, tmp_path):
    root, study, subject = converted
    flair = nib.load(subject.sequences["flair"])
    assert not np.allclose(np.abs(flair.affine[:3, :3] / np.linalg.norm(
        flair.affine[:3, :3], axis=0)), np.eye(3), atol=1e-3)  # the FLAIR is oblique
    out = tmp_path / "pred"
    out.mkdir()
    mask = np.zeros(flair.shape[:3], np.uint8)
    centre = np.array(flair.shape[:3]) // 2
    mask[tuple(slice(c - 3, c + 3) for c in centre)] = 1
    empty = np.zeros_like(mask)
    for task, data in (("wmh", mask), ("lacune", empty), ("rssi", empty)):
        nib.save(nib.Nifti1Image(data, flair.affine), out / f"{task}_mask.nii.gz")
    world = flair.affine[:3, :3] @ (centre + [0.3, -2.2, 1.0]) + flair.affine[:3, 3]
    for task in ("cmb", "epvs"):
        with (out / f"{task}_points.tsv").open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(["index", "x", "y", "z", "confidence", "region", "side"])
            writer.writerow([1, *np.round(world, 4), 0.9, "deep_wm", "L"])
    report = json.loads(json.dumps(fx.REPORT))
    report["reference_grid"] = {"shape": list(flair.shape[:3]), "affine": flair.affine.tolist(),
                                "spacing": [1.0, 1.0, 1.0]}
    (out / "report.json").write_text(json.dumps(report))
    sources = dicom_sources(subject.source)
    files = write_results(out, sources, tmp_path / "dicom", model_id=fx.MODEL_ID,
                          model_sha256=fx.SHA)
    assert {f.name for f in files} >= {"seg-flair.dcm", "seg-t2.dcm", "seg-swi.dcm", "sr.dcm"}

    voxels = np.rint((_pixels_world(tmp_path / "dicom" / "seg-flair.dcm", 1) - flair.affine[:3, 3])
                     @ np.linalg.inv(flair.affine[:3, :3]).T).astype(int)
    found = np.zeros_like(mask)
    found[tuple(voxels.T)] = 1
    np.testing.assert_array_equal(found, mask)  # exactly the planted voxels through dcm2niix

    t2 = pydicom.dcmread(tmp_path / "dicom" / "seg-t2.dcm")
    assert t2.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPClassUID \
        == "1.2.840.10008.5.1.4.1.1.4.1"  # the enhanced multi-frame T2
    for name, radius in (("seg-t2.dcm", 1.5), ("seg-swi.dcm", 2.5)):
        ball = _pixels_world(tmp_path / "dicom" / name, 1)
        distance = np.linalg.norm(ball - world, axis=1)
        # the ball, or at least the pixel nearest the point: half a voxel's diagonal away at most
        voxel = np.linalg.norm(nib.load(subject.sequences[name[4:-4]]).affine[:3, :3], axis=0)
        assert len(ball) >= 1 and distance.max() <= max(radius, 0.5 * np.linalg.norm(voxel))
    seg = hd.seg.segread(tmp_path / "dicom" / "seg-flair.dcm")
    assert seg.StudyInstanceUID == study.study_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(
        sources["flair"][0], stop_before_pixels=True).SeriesInstanceUID
