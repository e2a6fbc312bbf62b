"""The enhanced multi-frame series of the synthetic vendor study (:mod:`csvdnet.dicom.vendor`).

One Enhanced MR Image Storage file holds the whole volume: shared functional groups (pixel
measures, orientation, timing, echo, frame type, rescale), per-frame plane positions and frame
content, a one-dimension index (in-stack position).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from csvdnet.dicom.vendor_common import (ENHANCED_MR_IMAGE, PROTOCOLS, _base, _file_meta,
                                         _geometry, _pixels, _slices, _uid)

__all__ = ["write_enhanced"]


def write_enhanced(image: nib.Nifti1Image, folder: Path, channel: str, study: dict,
                   series_number: int) -> list[Path]:
    """Write ``image`` as one Enhanced MR Image Storage file (one frame per slice k)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = _uid(study["study_uid"], series_number)
    p = PROTOCOLS[channel]
    ds = _base(channel, study, series_number, series_uid)
    ds.ImageType = ds_type = "ORIGINAL\\PRIMARY\\T2\\NONE"
    ds.InstanceNumber = 1
    ds.ContentQualification = "PRODUCT"
    ds.PulseSequenceName = p["sequence"]
    ds.MRAcquisitionType = p["acq"]
    ds.EchoPulseSequence = "SPIN" if "SE" in p["scanning"] else "GRADIENT"
    ds.MultipleSpinEcho = "NO"
    ds.PhaseContrast = ds.TimeOfFlightContrast = ds.SteadyStatePulseSequence = "NO"
    ds.InversionRecovery = "YES" if "IR" in p["scanning"] else "NO"
    ds.EchoPlanarPulseSequence = "YES" if "EP" in p["scanning"] else "NO"
    ds.ResonantNucleus, ds.ComplexImageComponent = "1H", "MAGNITUDE"
    ds.AcquisitionContrast = "T2"
    ds.VolumetricProperties, ds.VolumeBasedCalculationTechnique = "VOLUME", "NONE"
    ds.PixelPresentation = "MONOCHROME"
    ds.BurnedInAnnotation = "NO"
    ds.AcquisitionDateTime = study["date"] + ds.AcquisitionTime
    ds.ContentDate, ds.ContentTime = study["date"], ds.AcquisitionTime
    iop, spacing, thickness, _ = _geometry(image.affine)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [round(v, 6) for v in spacing], thickness
    measures.SpacingBetweenSlices = thickness
    orientation = Dataset()
    orientation.ImageOrientationPatient = iop
    timing = Dataset()
    timing.RepetitionTime, timing.FlipAngle, timing.EchoTrainLength = p["tr"], 150, 15
    frame_type = Dataset()
    frame_type.FrameType, frame_type.PixelPresentation = ds_type, "MONOCHROME"
    frame_type.VolumetricProperties, frame_type.VolumeBasedCalculationTechnique = "VOLUME", "NONE"
    frame_type.ComplexImageComponent, frame_type.AcquisitionContrast = "MAGNITUDE", "T2"
    transform = Dataset()
    transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = 0, 1, "US"
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.MRTimingAndRelatedParametersSequence = DicomSequence([timing])
    shared.MRImageFrameTypeSequence = DicomSequence([frame_type])
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    echo = Dataset()
    echo.EffectiveEchoTime = p["te"]
    shared.MREchoSequence = DicomSequence([echo])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    dimension = ds.DimensionOrganizationUID = _uid(series_uid, "dimension")
    index = Dataset()
    index.DimensionOrganizationUID = dimension
    index.DimensionIndexPointer = 0x00209057  # In-Stack Position Number
    index.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
    organisation = Dataset()
    organisation.DimensionOrganizationUID = dimension
    ds.DimensionOrganizationSequence = DicomSequence([organisation])
    ds.DimensionIndexSequence = DicomSequence([index])
    frames, per_frame = [], []
    for k, frame, ipp in _slices(image):
        item, content, position = Dataset(), Dataset(), Dataset()
        content.StackID, content.InStackPositionNumber = "1", k + 1
        content.DimensionIndexValues = [k + 1]
        position.ImagePositionPatient = ipp
        item.FrameContentSequence = DicomSequence([content])
        item.PlanePositionSequence = DicomSequence([position])
        per_frame.append(item)
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.NumberOfFrames = len(frames)
    _pixels(ds, np.stack(frames))
    _file_meta(ds, ENHANCED_MR_IMAGE, _uid(series_uid, 1))
    path = folder / "IM00001"
    ds.save_as(path, enforce_file_format=True)
    return [path]
