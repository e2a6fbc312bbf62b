"""A synthetic subject written as vendor-like DICOM: the input half's test and demo study.

:func:`write_study` takes a subject folder of ``csvdnet synth`` (``flair``, ``t1``, ``t2``,
``swi``, ``dwi`` NIfTI files) and writes one MR study the way a Siemens scanner exports one:

- a three-plane localiser (excluded by selection),
- the FLAIR as a 2-D inversion-recovery series, resampled onto an **oblique** grid
  (``oblique_deg`` about the left-right axis, as an AC-PC-angled acquisition),
- the T1 as a 3-D MPRAGE (gradient echo with inversion), reoriented to **LPS** voxel order,
  pixel data **RLE Lossless** compressed (pydicom encodes it without further packages),
- the T2 as one **enhanced multi-frame** file (Enhanced MR Image Storage, per-frame positions),
- SWI magnitude plus its phase and minIP series (the last two excluded by selection),
- DWI with b0 and b1000 images at the same slice positions in one series (the b0 resampled
  from the T2 onto the DWI grid), and its ADC map (excluded).

Files go under ``out/<PatientID>/<StudyUID hash>/<series number>/IM<n>`` without extensions.
UIDs are derived from ``seed`` so a rewrite gives the same study. :class:`VendorStudy` returns,
per channel, the NIfTI image the DICOM holds (after resampling / reorientation), which is what a
round-trip test compares the DICOM path with.

The DICOM pieces both this module and :mod:`csvdnet.dicom.vendor_enhanced` write (protocols, UIDs,
geometry, common attributes, pixels, file meta) live in :mod:`csvdnet.dicom.vendor_common`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from csvdnet.dicom.vendor_common import (ENHANCED_MR_IMAGE, MR_IMAGE, PROTOCOLS, _base, _file_meta,
                                         _geometry, _pixels, _slices, _uid)

__all__ = ["MR_IMAGE", "ENHANCED_MR_IMAGE", "VendorStudy", "main", "oblique_image",
           "study_attributes", "write_series", "write_study"]


@dataclasses.dataclass
class VendorStudy:
    """What :func:`write_study` wrote.

    Attributes:
        root: Folder of the study's files.
        study_uid: StudyInstanceUID.
        series: Series number -> (protocol name, files).
        images: Channel -> the NIfTI image the DICOM of that channel holds (``dwi``: b1000).
    """

    root: Path
    study_uid: str
    series: dict[int, tuple[str, list[Path]]]
    images: dict[str, nib.Nifti1Image]


def oblique_image(image: nib.Nifti1Image, degrees: float) -> nib.Nifti1Image:
    """``image`` resampled (trilinear) onto its own grid rotated by ``degrees`` about the
    world left-right axis through the grid's centre: an oblique (angled) acquisition."""
    from scipy import ndimage

    if not degrees:
        return image
    theta = np.deg2rad(degrees)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    centre = image.affine @ np.r_[(np.array(image.shape[:3]) - 1) / 2.0, 1.0]
    shift, back = np.eye(4), np.eye(4)
    shift[:3, 3], back[:3, 3] = -centre[:3], centre[:3]
    affine = back @ rot @ shift @ image.affine
    data = np.asarray(image.dataobj, dtype=np.float32)
    to_source = np.linalg.inv(image.affine) @ affine
    out = ndimage.affine_transform(data, to_source[:3, :3], to_source[:3, 3], order=1,
                                   mode="constant", cval=0.0)
    return nib.Nifti1Image(np.round(out).astype(np.int16), affine)


def _mr_attributes(ds: Dataset, channel: str) -> None:
    p = PROTOCOLS[channel]
    ds.ScanningSequence = p["scanning"]
    ds.SequenceVariant = p["variant"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = p["acq"]
    ds.SequenceName = p["sequence"]
    ds.RepetitionTime = p["tr"]
    ds.EchoTime = p["te"]
    if p["ti"] is not None:
        ds.InversionTime = p["ti"]
    ds.EchoTrainLength = 1
    ds.EchoNumbers = 1
    ds.NumberOfAverages = 1
    ds.FlipAngle = 150 if "SE" in p["scanning"] else 15


def write_series(image: nib.Nifti1Image, folder: Path, channel: str, study: dict,
                 series_number: int, *, b_value: float | None = None, first_instance: int = 1,
                 series_uid: str | None = None, compress: bool = False) -> list[Path]:
    """Write ``image`` as one classic MR Image Storage file per slice (voxel axis k).

    Args:
        image: 3-D NIfTI image (int16 values).
        folder: Destination folder (created).
        channel: A key of :data:`PROTOCOLS`.
        study: Patient / study attributes (see :func:`write_study`).
        series_number: SeriesNumber.
        b_value: Diffusion b-value (DWI), written as DiffusionBValue and Siemens' (0019,100C).
        first_instance: InstanceNumber of the first slice (b1000 after b0 in one series).
        series_uid: SeriesInstanceUID (default: derived from the study and series number).
        compress: RLE Lossless pixel data.

    Returns:
        The files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or _uid(study["study_uid"], series_number)
    iop, spacing, thickness, between = _geometry(image.affine)
    normal = np.cross(iop[:3], iop[3:])
    paths = []
    for k, frame, ipp in _slices(image):
        number = first_instance + k
        ds = _base(channel, study, series_number, series_uid)
        _mr_attributes(ds, channel)
        image_type = PROTOCOLS[channel]["image_type"]
        # Siemens marks the b0 images of a trace series NONE
        ds.ImageType = image_type.replace("TRACEW", "NONE") if b_value == 0 else image_type
        ds.InstanceNumber = number
        ds.ImagePositionPatient, ds.ImageOrientationPatient = ipp, iop
        ds.PixelSpacing = [round(v, 6) for v in spacing]
        ds.SliceThickness = round(thickness, 6)
        ds.SpacingBetweenSlices = round(between, 6)
        ds.SliceLocation = round(float(np.dot(normal, ipp)), 5)
        if b_value is not None:
            ds.DiffusionBValue = float(b_value)
            ds.DiffusionDirectionality = "ISOTROPIC" if b_value else "NONE"
            ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(
                0x0C, "IS", str(int(b_value)))
        _pixels(ds, frame)
        _file_meta(ds, MR_IMAGE, _uid(series_uid, number))
        if compress:
            # the SOPInstanceUID stays the seeded one (compress() would draw a random one)
            ds.compress(RLELossless, frame.astype(np.int16), generate_instance_uid=False)
        path = folder / f"IM{number:05d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _resample(image: nib.Nifti1Image, onto: nib.Nifti1Image) -> nib.Nifti1Image:
    from scipy import ndimage

    to_source = np.linalg.inv(image.affine) @ onto.affine
    data = ndimage.affine_transform(np.asarray(image.dataobj, dtype=np.float32),
                                    to_source[:3, :3], to_source[:3, 3],
                                    output_shape=onto.shape[:3], order=1)
    return nib.Nifti1Image(np.round(data).astype(np.int16), onto.affine)


def _load(path: Path) -> nib.Nifti1Image:
    image = nib.load(str(path))
    data = np.asarray(image.dataobj)
    if data.ndim == 4:  # a 4-D diffusion series: its last volume
        data = data[..., -1]
    return nib.Nifti1Image(np.round(data).astype(np.int16), image.affine)


def study_attributes(patient_id: str = "SYNTH0001", study_date: str = "20260101",
                     seed: int = 0, modality: str = "MR") -> dict:
    """The patient / study attributes :func:`write_series` takes (UIDs derived from the
    arguments: the same arguments give the same study)."""
    study_uid = _uid("csvdnet-vendor", patient_id, study_date, seed)
    return {"patient_id": patient_id, "patient_name": f"SYNTH^{patient_id}",
            "study_uid": study_uid, "date": study_date, "modality": modality,
            "accession": "A" + hashlib.sha1(study_uid.encode()).hexdigest()[:8].upper(),
            "frame_uid": _uid(study_uid, "frame")}


def write_study(subject_dir: str | Path, out: str | Path, *, patient_id: str = "SYNTH0001",
                study_date: str = "20260101", seed: int = 0, oblique_deg: float = 12.0,
                extras: bool = True, modality: str = "MR",
                enhanced: bool = True) -> VendorStudy:
    """Write a synthetic subject folder as one vendor-like DICOM study (see the module doc).

    Args:
        subject_dir: A ``csvdnet synth`` subject folder (flair, t1, t2, swi, dwi ``.nii.gz``;
            missing sequences are left out).
        out: Root folder; the study goes under ``out/<patient_id>/<study hash>/``.
        patient_id: PatientID (also PatientName).
        study_date: StudyDate (YYYYMMDD).
        seed: Makes the UIDs (same seed, same UIDs).
        oblique_deg: FLAIR grid rotation; 0 keeps the NIfTI grid.
        extras: Also write the series selection must exclude (localiser, phase, minIP, ADC).
        modality: Modality of every series (``CT`` makes a non-MR study for tests).
        enhanced: The T2 as one enhanced multi-frame file; False: one classic file per slice.

    Returns:
        The written study.
    """
    subject_dir, out = Path(subject_dir), Path(out)
    study = study_attributes(patient_id, study_date, seed, modality)
    study_uid = study["study_uid"]
    root = out / patient_id / study_uid.rsplit(".", 1)[-1][-8:]
    found = {name: subject_dir / f"{name}.nii.gz" for name in ("flair", "t1", "t2", "swi", "dwi")}
    images = {name: _load(path) for name, path in found.items() if path.is_file()}
    if "flair" in images:
        images["flair"] = oblique_image(images["flair"], oblique_deg)
    if "t1" in images:
        images["t1"] = nib.as_closest_canonical(images["t1"])  # RAS, written below as LPS
        flip = nib.orientations.ornt_transform(nib.io_orientation(images["t1"].affine),
                                               nib.orientations.axcodes2ornt("LPS"))
        images["t1"] = images["t1"].as_reoriented(flip)
    series: dict[int, tuple[str, list[Path]]] = {}

    def add(number: int, name: str, files: list[Path]) -> None:
        series[number] = (name, files)

    if extras and "flair" in images:
        add(1, "localizer", write_series(images["flair"].slicer[:, :, images["flair"].shape[2] // 2:
                                                                 images["flair"].shape[2] // 2 + 1],
                                         root / "0001", "localizer", study, 1))
    if "flair" in images:
        add(2, "flair", write_series(images["flair"], root / "0002", "flair", study, 2))
    if "t1" in images:
        add(3, "t1", write_series(images["t1"], root / "0003", "t1", study, 3, compress=True))
    if "t2" in images and enhanced:
        from csvdnet.dicom.vendor_enhanced import write_enhanced

        add(4, "t2", write_enhanced(images["t2"], root / "0004", "t2", study, 4))
    elif "t2" in images:
        add(4, "t2", write_series(images["t2"], root / "0004", "t2", study, 4))
    if "swi" in images:
        add(5, "swi", write_series(images["swi"], root / "0005", "swi", study, 5))
        if extras:
            rng = np.random.default_rng(seed)
            phase = nib.Nifti1Image(rng.integers(-4096, 4096, images["swi"].shape, dtype=np.int16),
                                    images["swi"].affine)
            add(6, "swi_phase", write_series(phase, root / "0006", "swi_phase", study, 6))
            add(7, "swi_minip", write_series(images["swi"], root / "0007", "swi_minip", study, 7))
    if "dwi" in images:
        dwi = images["dwi"]
        b0 = _resample(images["t2"], dwi) if "t2" in images else dwi
        uid = _uid(study_uid, 8)
        files = write_series(b0, root / "0008", "dwi", study, 8, b_value=0, series_uid=uid)
        files += write_series(dwi, root / "0008", "dwi", study, 8, b_value=1000, series_uid=uid,
                              first_instance=dwi.shape[2] + 1)
        add(8, "dwi", files)
        if extras:
            add(9, "adc", write_series(dwi, root / "0009", "adc", study, 9))
    return VendorStudy(root=root, study_uid=study_uid, series=series, images=images)


def main(argv: list[str] | None = None) -> int:
    """``python -m csvdnet.dicom.vendor SUBJECT_DIR OUT``: a synth subject as a DICOM study."""
    import argparse

    parser = argparse.ArgumentParser(description="Write a csvdnet synth subject folder as a "
                                                 "vendor-like DICOM study.")
    parser.add_argument("subject_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--patient-id", default="SYNTH0001")
    parser.add_argument("--study-date", default="20260101")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oblique-deg", type=float, default=12.0)
    args = parser.parse_args(argv)
    if not (args.subject_dir / "flair.nii.gz").is_file():
        parser.error(f"{args.subject_dir}: no flair.nii.gz (a csvdnet synth subject folder?)")
    study = write_study(args.subject_dir, args.out, patient_id=args.patient_id,
                        study_date=args.study_date, seed=args.seed, oblique_deg=args.oblique_deg)
    files = sum(len(paths) for _, paths in study.series.values())
    print(f"wrote {len(study.series)} series, {files} files: {study.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
