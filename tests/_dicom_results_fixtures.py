"""A tiny DICOM study and a fake ``csvdnet predict`` output on its FLAIR, for the DICOM writers.

The study: an axial FLAIR (the reference), an oblique SWI (tilted 20 degrees about x, finer), a
coarse DWI b1000; all MR Image Storage, one frame of reference. The predict output is on the
FLAIR's grid with dcm2niix's row flip (voxel j = rows - 1 - r), with a WMH blob, a lacune, an
RSSI of one FLAIR slice, one microbleed and two EPVS planted at known places.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

STUDY = "1.2.826.0.1.3680043.8.498.1"
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.2"
PATIENT = {"PatientName": "Test^Csvd", "PatientID": "CSVD-001", "PatientBirthDate": "19500101",
           "PatientSex": "F", "StudyDate": "20261201", "StudyTime": "101500", "StudyID": "42",
           "AccessionNumber": "ACC1", "ReferringPhysicianName": "Ref^Doc"}
SHA = "ab" * 32
MODEL_ID = "csvdnet-test/1@abababababab"


def _rotation_x(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


SERIES = {
    # channel: (series number, description, origin LPS, row dir, col dir, (dr, dc), gap,
    #           rows, cols, frames)
    "flair": (3, "t2_tirm_tra_dark-fluid", (-30.0, -36.0, -12.0), (1, 0, 0), (0, 1, 0),
              (2.0, 1.5), 3.0, 36, 40, 10),
    "swi": (7, "SWI_Images", (-28.0, -30.0, -24.0), tuple(_rotation_x(20) @ [1, 0, 0]),
            tuple(_rotation_x(20) @ [0, 1, 0]), (1.0, 0.8), 2.0, 60, 70, 16),
    "dwi": (5, "ep2d_diff_tra_TRACEW b1000", (-31.0, -37.0, -12.5), (1, 0, 0), (0, 1, 0),
            (3.0, 3.0), 5.0, 24, 22, 6),
}


def write_series(folder: Path, channel: str, uid_seed: str = "",
                 frame_of_reference: str = FRAME_OF_REFERENCE) -> list[Path]:
    """Write one source series of :data:`SERIES` as single-frame files; return the paths."""
    number, description, origin, row, col, (dr, dc), gap, rows, cols, frames = SERIES[channel]
    folder.mkdir(parents=True, exist_ok=True)
    row, col = np.asarray(row, float), np.asarray(col, float)
    normal = np.cross(row, col)
    series_uid = generate_uid(entropy_srcs=[channel, uid_seed, "series"])
    paths = []
    for k in range(frames):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[channel, uid_seed, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for key, value in PATIENT.items():
            setattr(ds, key, value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series_uid
        ds.FrameOfReferenceUID = frame_of_reference
        ds.Modality, ds.Manufacturer, ds.SeriesNumber = "MR", "SIEMENS", number
        ds.SeriesDescription, ds.InstanceNumber = description, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM"]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * gap * normal]
        ds.PixelSpacing = [dr, dc]
        ds.SliceThickness = gap
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = (np.arange(rows * cols, dtype=np.uint16) % 4000).tobytes()
        path = folder / f"IM{k:04d}"  # no extension, as scanners write them
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths[::-1]  # not in slice order: the reader sorts


def flair_affine() -> tuple[np.ndarray, tuple[int, int, int]]:
    """The FLAIR's NIfTI affine (RAS) and shape as dcm2niix writes it (rows flipped)."""
    _, _, origin, row, col, (dr, dc), gap, rows, cols, frames = SERIES["flair"]
    row, col = np.asarray(row, float), np.asarray(col, float)
    flip = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, 0] = flip @ (dc * row)
    affine[:3, 1] = flip @ (-dr * col)
    affine[:3, 2] = flip @ (gap * np.cross(row, col))
    affine[:3, 3] = flip @ (np.asarray(origin) + (rows - 1) * dr * col)
    return affine, (cols, rows, frames)


def voxel_to_ras(affine: np.ndarray, ijk) -> np.ndarray:
    return np.asarray(ijk, float) @ affine[:3, :3].T + affine[:3, 3]


PLANTED = {
    "wmh": (slice(8, 14), slice(10, 16), slice(3, 6)),
    "lacune": (slice(25, 27), slice(20, 22), slice(5, 6)),
    "rssi": (slice(18, 20), slice(26, 28), slice(4, 5)),  # between two DWI slices
}
CMB_VOXEL = (30.0, 9.0, 4.0)
EPVS_VOXELS = ((12.0, 24.0, 2.0), (20.0, 12.0, 7.0))

REPORT = {
    "schema": "csvdnet-report", "schema_version": "1.2", "csvdnet_version": "0.1.0",
    "created": "2026-12-07T12:45:01+00:00", "subject": "CSVD-001_20261201_abc123",
    "inputs": {"reference": "flair", "reference_path": "flair.nii.gz", "sequences": {}},
    "model": {"id": MODEL_ID, "path": "m", "sha256": SHA, "kind": "saved_model",
              "channels": ["flair", "t1", "t2", "swi", "dwi"], "spacing": [1.5, 1.5, 1.5],
              "thresholds": {}, "min_lesion_mm3": {}, "modality_dropout": True, "edited": None},
    "markers": {
        "wmh": {"kind": "segmentation", "predicted": True, "count": 1, "volume_ml": 0.972,
                "findings": [], "by_region": {}, "not_measured": None},
        "lacune": {"kind": "segmentation", "predicted": True, "count": 1, "volume_ml": 0.036,
                   "findings": [], "by_region": {}, "not_measured": None},
        "rssi": {"kind": "segmentation", "predicted": True, "count": 1, "volume_ml": 0.036,
                 "findings": [], "by_region": {}, "not_measured": None},
        "cmb": {"kind": "detection", "predicted": True, "count": 1, "volume_ml": None,
                "findings": [], "by_region": {}, "not_measured": None},
        "epvs": {"kind": "detection", "predicted": True, "count": 2, "volume_ml": None,
                 "findings": [], "by_region": {}, "not_measured": None}},
    "measurements": {"fazekas_pv": 2, "fazekas_deep": None, "epvs_bg_count": 1,
                     "epvs_bg_grade": 1, "epvs_cso_count": 1, "epvs_cso_grade": 1,
                     "cmb_lobar": 1, "cmb_deep": 0, "cmb_infratentorial": None, "cmb_count": 1,
                     "lacune_count": 1, "rssi_count": 1, "lacune_volume_ml": 0.036,
                     "rssi_volume_ml": 0.036, "wmh_volume_ml": 0.972,
                     "wmh_periventricular_ml": 0.5, "wmh_deep_ml": 0.472},
    "quantities": {},
    "scores": {"staals-2014": {"rule_set": "staals-2014", "version": "1", "total": None,
                               "maximum": 4, "points": {"lacunes": 1, "microbleeds": 1},
                               "undecided": ["wmh"], "notes": []},
               "caa-svd-2016": {"rule_set": "caa-svd-2016", "version": "1", "total": 1,
                                "maximum": 6, "points": {"lobar_microbleeds": 0, "cso_epvs": 0,
                                                         "wmh": 1},
                                "undecided": [], "notes": []}},
    "ordinal": {"total": 3, "class_probabilities": [0.1, 0.1, 0.1, 0.6, 0.1],
                "cumulative": [0.9, 0.8, 0.7, 0.1]},
    "agreement": None, "flags": [], "timings": {},
}


def write_subject(folder: Path, report: dict | None = None) -> Path:
    """The fake predict output of the FLAIR's subject; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    affine, shape = flair_affine()
    report = copy.deepcopy(REPORT if report is None else report)
    report["reference_grid"] = {"shape": list(shape), "affine": affine.tolist(),
                                "spacing": [1.5, 2.0, 3.0]}
    for task in ("wmh", "lacune", "rssi", "cmb", "epvs"):
        mask = np.zeros(shape, np.uint8)
        if task in PLANTED:
            mask[PLANTED[task]] = 1
        nib.save(nib.Nifti1Image(mask, affine), folder / f"{task}_mask.nii.gz")
    for task, voxels in (("cmb", [CMB_VOXEL]), ("epvs", EPVS_VOXELS)):
        lines = ["index\tx\ty\tz\tconfidence\tregion\tside"]
        for n, xyz in enumerate(voxel_to_ras(affine, voxels), start=1):
            lines.append(f"{n}\t{xyz[0]:.4f}\t{xyz[1]:.4f}\t{xyz[2]:.4f}\t0.9\tdeep_wm\tL")
        (folder / f"{task}_points.tsv").write_text("\n".join(lines) + "\n")
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    return folder


def read_headers(paths) -> list[Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]


def write_enhanced(folder: Path, channel: str = "swi") -> Path:
    """:data:`SERIES` ``channel`` as one Enhanced MR Image Storage file, frames in reverse
    slice order (per-frame positions, shared orientation and pixel measures)."""
    from pydicom.sequence import Sequence

    number, description, origin, row, col, (dr, dc), gap, rows, cols, frames = SERIES[channel]
    row, col = np.asarray(row, float), np.asarray(col, float)
    normal = np.cross(row, col)
    folder.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=[channel, "enhanced"])
    for key, value in PATIENT.items():
        setattr(ds, key, value)
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = STUDY, FRAME_OF_REFERENCE
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[channel, "enhanced", "series"])
    ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "MR", "SIEMENS", number, 1
    ds.SeriesDescription = description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames, rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [float(v) for v in (*row, *col)]
    measures.PixelSpacing, measures.SliceThickness = [dr, dc], gap
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in reversed(range(frames)):
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * gap * normal]
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.zeros((frames, rows, cols), np.uint16).tobytes()
    path = folder / "ENHANCED"
    ds.save_as(path, enforce_file_format=True)
    return path
