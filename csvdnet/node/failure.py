"""A small Basic Text SR telling the PACS that a study could not be rated, and why.

Sent like results (``failure_report: true``, the default) so that a radiologist who looks for
csvdnet's findings beside the images finds the reason instead of nothing. It carries the
study's patient / study attributes (copied from one received instance), the reason as a TEXT
item (patient names and IDs already scrubbed by the node), SeriesNumber 9919 "csvdnet: not
rated"; its UIDs are derived from the study, the revision and the reason
(:func:`csvdnet.dicom.provenance.derived_uid`), so sending it again leaves one copy.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from csvdnet import __version__
from csvdnet.dicom.provenance import MANUFACTURER, derived_uid
from csvdnet.fsutil import atomic_path

__all__ = ["BASIC_TEXT_SR", "write_failure_report"]

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SERIES = (9919, "csvdnet: not rated")
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
           "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
           "StudyDescription")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def write_failure_report(source: Path, reason: str, revision: int, dest: Path) -> Path:
    """Write the SR for a study that could not be rated.

    Args:
        source: One received instance of the study (its patient / study attributes are copied).
        reason: Why (one line, already free of patient names and IDs).
        revision: The study's revision (one SR series per revision).
        dest: The file to write (atomically).
    """
    header = pydicom.dcmread(source, stop_before_pixels=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ds = Dataset()
    for name in _COPIED:
        setattr(ds, name, header.get(name, ""))
    study = str(header.StudyInstanceUID)
    ds.SeriesInstanceUID = derived_uid("csvdnet-series", study, "not-rated", str(revision))
    ds.SOPInstanceUID = derived_uid("csvdnet-instance", ds.SeriesInstanceUID, reason)
    ds.SOPClassUID, ds.Modality = BASIC_TEXT_SR, "SR"
    ds.SeriesNumber, ds.SeriesDescription = SERIES[0], SERIES[1] + (
        f" (rating {revision + 1})" if revision else "")
    ds.InstanceNumber = 1
    ds.Manufacturer, ds.SoftwareVersions = MANUFACTURER, __version__
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    ds.SeriesDate, ds.SeriesTime = ds.ContentDate, ds.ContentTime
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic imaging report")]
    text = Dataset()
    text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
    text.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    text.TextValue = f"csvdnet could not rate this study: {reason}"[:1024]
    ds.ContentSequence = [text]
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = []
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return dest
