"""The DICOM pieces of the synthetic vendor study that its classic and enhanced writers share.

SOP classes, the scanner :data:`PROTOCOLS`, seeded UIDs, slice geometry (LPS), the patient /
study / series attributes every file carries, pixel data, file meta: what
:mod:`csvdnet.dicom.vendor` (classic series) and :mod:`csvdnet.dicom.vendor_enhanced` (one
multi-frame file) both write.
"""

from __future__ import annotations

import datetime
from typing import Iterator

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"

# name -> (description, scanning sequence, variant, 2D/3D, TR, TE, TI, image type)
PROTOCOLS: dict[str, dict] = {
    "flair": dict(description="t2_tirm_tra_dark-fluid", scanning="SE\\IR", variant="SK\\SP\\MP",
                  acq="2D", tr=9000.0, te=81.0, ti=2500.0, sequence="*tir2d1_21",
                  image_type="ORIGINAL\\PRIMARY\\M\\ND\\NORM"),
    "t1": dict(description="t1_mprage_sag_p2_iso", scanning="GR\\IR", variant="SP\\MP\\OSP",
               acq="3D", tr=2300.0, te=2.98, ti=900.0, sequence="*tfl3d1_16ns",
               image_type="ORIGINAL\\PRIMARY\\M\\ND\\NORM"),
    "t2": dict(description="t2_tse_tra", scanning="SE", variant="SK\\SP\\OSP", acq="2D",
               tr=6000.0, te=99.0, ti=None, sequence="*tse2d1_15",
               image_type="ORIGINAL\\PRIMARY\\M\\NONE"),
    "swi": dict(description="SWI_Images", scanning="GR", variant="SP\\OSP", acq="3D", tr=28.0,
                te=20.0, ti=None, sequence="*swi3d1r", image_type="ORIGINAL\\PRIMARY\\SWI\\NORM"),
    "swi_phase": dict(description="Pha_Images", scanning="GR", variant="SP\\OSP", acq="3D",
                      tr=28.0, te=20.0, ti=None, sequence="*swi3d1r",
                      image_type="ORIGINAL\\PRIMARY\\P\\ND"),
    "swi_minip": dict(description="mIP_Images(SW)", scanning="GR", variant="SP\\OSP", acq="3D",
                      tr=28.0, te=20.0, ti=None, sequence="*swi3d1r",
                      image_type="DERIVED\\PRIMARY\\MNIP\\NORM"),
    "dwi": dict(description="ep2d_diff_b0_1000_tra", scanning="EP", variant="SK\\SP",
                acq="2D", tr=5200.0, te=89.0, ti=None, sequence="*ep_b1000t",
                image_type="ORIGINAL\\PRIMARY\\DIFFUSION\\TRACEW\\ND"),
    "adc": dict(description="ep2d_diff_b0_1000_tra_ADC", scanning="EP", variant="SK\\SP",
                acq="2D", tr=5200.0, te=89.0, ti=None, sequence="*ep_b1000t",
                image_type="DERIVED\\PRIMARY\\DIFFUSION\\ADC\\ND"),
    "localizer": dict(description="localizer", scanning="GR", variant="SP", acq="2D", tr=8.6,
                      te=4.0, ti=None, sequence="*fl2d1",
                      image_type="ORIGINAL\\PRIMARY\\LOCALIZER"),
}


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _lps(vector: np.ndarray) -> np.ndarray:
    return np.asarray(vector, dtype=float) * np.array([-1.0, -1.0, 1.0])


def _geometry(affine: np.ndarray) -> tuple[list[float], list[float], float, float]:
    """(IOP, PixelSpacing, slice thickness, ...) of slices along voxel axis k of ``affine``:
    DICOM columns run along voxel i, rows along voxel j."""
    a = np.asarray(affine, dtype=float)
    di, dj, dk = (float(np.linalg.norm(a[:3, n])) for n in range(3))
    iop = [*(_lps(a[:3, 0]) / di), *(_lps(a[:3, 1]) / dj)]
    return [round(float(v), 8) for v in iop], [dj, di], dk, dk


def _base(channel: str, study: dict, series_number: int, series_uid: str) -> Dataset:
    p = PROTOCOLS[channel]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Modality = study.get("modality", "MR")
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "Prisma_fit"
    ds.SoftwareVersions = "syngo MR E11"
    ds.InstitutionName = "csvdnet synthetic"
    ds.StationName = "SYNTHMR01"
    ds.MagneticFieldStrength = 3
    ds.ImagedNucleus = "1H"
    ds.ImagingFrequency = 123.2
    ds.PatientName = study["patient_name"]
    ds.PatientID = study["patient_id"]
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study["study_uid"]
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study["date"]
    ds.StudyTime = "080000"
    ds.StudyID = "1"
    ds.AccessionNumber = study["accession"]
    ds.StudyDescription = "Head^Neuro"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = ds.ProtocolName = p["description"]
    time = (datetime.datetime(2000, 1, 1, 8) + datetime.timedelta(minutes=2 * series_number))
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time.strftime("%H%M%S.%f")
    ds.FrameOfReferenceUID = study["frame_uid"]
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    return ds


def _pixels(ds: Dataset, frame: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.Rows, ds.Columns = int(frame.shape[-2]), int(frame.shape[-1])
    ds.PixelData = np.ascontiguousarray(frame, dtype="<i2").tobytes()


def _file_meta(ds: Dataset, sop_class: str, sop_uid: str) -> None:
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    ds.file_meta = meta


def _slices(image: nib.Nifti1Image) -> Iterator[tuple[int, np.ndarray, list[float]]]:
    data = np.asarray(image.dataobj).astype(np.int16)
    for k in range(data.shape[2]):
        ipp = _lps((image.affine @ np.array([0.0, 0.0, k, 1.0]))[:3])
        yield k, data[:, :, k].T, [round(float(v), 5) for v in ipp]
