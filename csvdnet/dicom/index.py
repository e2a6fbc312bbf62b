"""Indexing a folder of DICOM files: headers only, grouped into studies and series.

:func:`index_folder` walks a folder in any layout (nested, with or without a DICOMDIR, files
with or without extensions), reads each file's header up to the pixel data
(``stop_before_pixels``), and groups the images by StudyInstanceUID and SeriesInstanceUID.
Files that are not DICOM, DICOMDIR files, and DICOM files that cannot be used (truncated pixel
data, an unreadable header, no StudyInstanceUID) are listed in :attr:`DicomIndex.skipped` with
the reason, never dropped without a word.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

__all__ = ["DicomIndex", "Instance", "Series", "Study", "index_folder", "is_dicom_file",
           "looks_like_dicom_folder", "read_instance"]

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
# b-value attributes: the standard one, then Siemens, GE, Philips private ones.
_B_VALUE_TAGS = ((0x0018, 0x9087), (0x0019, 0x100C), (0x0043, 0x1039), (0x2001, 0x1003))


@dataclasses.dataclass(frozen=True)
class Frame:
    """One image plane: ImagePositionPatient (LPS mm) and its b-value / echo, if any."""

    position: tuple[float, float, float]
    b_value: float | None = None
    echo: int | None = None


@dataclasses.dataclass
class Instance:
    """One DICOM file (an image, or a multi-frame image) as its header tells.

    Attributes:
        path: The file.
        header: Its dataset without pixel data.
        frames: Its image planes (one for a classic image).
        orientation: ImageOrientationPatient (row then column direction, LPS).
        spacing: PixelSpacing (between rows, between columns) in mm.
        shape: (Rows, Columns).
    """

    path: Path
    header: Any
    frames: list[Frame]
    orientation: tuple[float, ...] | None
    spacing: tuple[float, float] | None
    shape: tuple[int, int]

    @property
    def image_type(self) -> tuple[str, ...]:
        value = self.header.get("ImageType", ())
        values = [value] if isinstance(value, str) else list(value)
        return tuple(str(v).upper() for v in values)

    @property
    def number(self) -> int:
        return _int(self.header.get("InstanceNumber")) or 0


@dataclasses.dataclass
class Series:
    """The images of one SeriesInstanceUID (in InstanceNumber order)."""

    uid: str
    instances: list[Instance]

    @property
    def header(self) -> Any:
        return self.instances[0].header

    @property
    def number(self) -> int:
        return _int(self.header.get("SeriesNumber")) or 0

    @property
    def description(self) -> str:
        return str(self.header.get("SeriesDescription", "") or "")

    @property
    def modality(self) -> str:
        return str(self.header.get("Modality", "") or "")

    @property
    def frame_count(self) -> int:
        return sum(len(i.frames) for i in self.instances)

    def label(self) -> str:
        """``series 3 't1_mprage'`` for messages."""
        return f"series {self.number} {self.description!r}"


@dataclasses.dataclass
class Study:
    """The series of one StudyInstanceUID."""

    uid: str
    series: list[Series]

    @property
    def header(self) -> Any:
        return self.series[0].header

    def label(self) -> str:
        """``study <uid> (patient P, date D)`` for messages."""
        h = self.header
        return (f"study {self.uid} (patient {h.get('PatientID', '?') or '?'}, "
                f"date {h.get('StudyDate', '?') or '?'})")


@dataclasses.dataclass
class DicomIndex:
    """A folder's studies and the files that are not usable images, with the reason."""

    root: Path
    studies: list[Study]
    skipped: dict[Path, str]


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` starts with the DICOM Part 10 preamble and ``DICM`` marker."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def looks_like_dicom_folder(path: Path, probe: int = 64) -> bool:
    """Whether ``path`` is a folder of DICOM files rather than NIfTI subjects: among the first
    ``probe`` files (sorted walk) at least one is DICOM and none is NIfTI, and it is not a
    BIDS dataset (whose ``sourcedata/`` may hold DICOM)."""
    if not path.is_dir() or (path / "dataset_description.json").is_file():
        return False
    dicom = False
    for n, file in enumerate(_walk(path)):
        if n >= probe:
            break
        if file.name.lower().endswith((".nii", ".nii.gz")):
            return False
        dicom = dicom or is_dicom_file(file)
    return dicom


def _pixel_data_complete(handle: Any, size: int, little: bool, explicit: bool) -> bool:
    """Whether the pixel data element starting at ``handle.tell()`` ends inside the file."""
    start = handle.tell()
    head = handle.read(12 if explicit else 8)
    if len(head) < 8:
        return start == size  # no pixel data element at all: nothing to be cut off
    order = "<" if little else ">"
    if explicit:
        vr = head[4:6]
        length = (struct.unpack(order + "I", head[8:12])[0] if vr in (b"OB", b"OW", b"OF", b"UN")
                  else struct.unpack(order + "H", head[6:8])[0])
        offset = 12 if vr in (b"OB", b"OW", b"OF", b"UN") else 8
    else:
        length, offset = struct.unpack(order + "I", head[4:8])[0], 8
    if length == 0xFFFFFFFF:  # encapsulated: the sequence delimiter ends the file
        handle.seek(max(size - 8, 0))
        return handle.read(8) == _SEQUENCE_DELIMITER
    return start + offset + length <= size


def _frames(ds: Any) -> tuple[list[Frame], tuple[float, ...] | None, tuple[float, float] | None]:
    """Image planes, orientation and pixel spacing of a classic or enhanced image."""
    b_value, echo = _b_value(ds), _int(ds.get("EchoNumbers"))
    if "PerFrameFunctionalGroupsSequence" not in ds:
        position = ds.get("ImagePositionPatient")
        frame = Frame(tuple(float(v) for v in position) if position else None, b_value, echo)
        return ([frame], _floats(ds.get("ImageOrientationPatient")),
                _floats(ds.get("PixelSpacing")))
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds \
        else None
    orientation = spacing = None
    frames = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        groups = [item] + ([shared] if shared is not None else [])
        plane = _group(groups, "PlanePositionSequence", "ImagePositionPatient")
        orientation = orientation or _floats(_group(groups, "PlaneOrientationSequence",
                                                    "ImageOrientationPatient"))
        spacing = spacing or _floats(_group(groups, "PixelMeasuresSequence", "PixelSpacing"))
        diffusion = _group(groups, "MRDiffusionSequence", "DiffusionBValue")
        frames.append(Frame(tuple(float(v) for v in plane) if plane else None,
                            float(diffusion) if diffusion is not None else b_value, echo))
    return frames, orientation, spacing


def _group(groups: list[Any], sequence: str, keyword: str) -> Any:
    for group in groups:
        if sequence in group and len(group[sequence].value):
            value = group[sequence][0].get(keyword)
            if value is not None:
                return value
    return None


def _floats(value: Any) -> tuple[float, ...] | None:
    try:
        return tuple(float(v) for v in value) if value else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _b_value(ds: Any) -> float | None:
    for tag in _B_VALUE_TAGS:
        if tag in ds:
            value = ds[tag].value
            if isinstance(value, bytes):
                value = value.decode("ascii", "ignore").strip("\x00 ")
            if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
                value = value[0] if value else None
            try:
                b = float(str(value).split("\\")[0])
            except (TypeError, ValueError):
                continue
            return b % 1e9 if tag == (0x0043, 0x1039) else b  # GE adds 1e9 to flag b-values
    return None


def read_instance(path: Path) -> Instance:
    """Read one file's header (up to the pixel data).

    Raises:
        InvalidDicomError: Not a DICOM file.
        ValueError: A DICOM file that cannot be used, with the reason.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        ds = pydicom.dcmread(handle, stop_before_pixels=True)
        if ds.get("SOPClassUID") == DICOMDIR_CLASS or \
                ds.file_meta.get("MediaStorageSOPClassUID") == DICOMDIR_CLASS:
            raise ValueError("a DICOMDIR (the folder's files are read directly)")
        if "Rows" not in ds:
            raise ValueError("holds no image (SOP class "
                             f"{ds.get('SOPClassUID', '?')})")
        syntax = ds.file_meta.get("TransferSyntaxUID")
        little = syntax is None or syntax.is_little_endian
        explicit = syntax is None or not syntax.is_implicit_VR
        if not _pixel_data_complete(handle, size, little, explicit):
            raise ValueError("truncated: its pixel data is cut off")
    if not ds.get("StudyInstanceUID") or not ds.get("SeriesInstanceUID"):
        raise ValueError("no StudyInstanceUID / SeriesInstanceUID")
    frames, orientation, spacing = _frames(ds)
    return Instance(path=path, header=ds, frames=frames, orientation=orientation,
                    spacing=spacing, shape=(int(ds.Rows), int(ds.get("Columns", 0))))


def index_folder(root: str | os.PathLike) -> DicomIndex:
    """Index every DICOM image under ``root`` into studies and series (headers only).

    Studies are ordered by StudyDate then UID, series by SeriesNumber then UID, instances by
    InstanceNumber then file name. Two files with the same SOPInstanceUID count once (the
    second is listed in ``skipped``).

    Returns:
        The index; a folder without DICOM images gives no studies.
    """
    root = Path(root)
    skipped: dict[Path, str] = {}
    by_series: dict[tuple[str, str], list[Instance]] = {}
    seen: dict[str, Path] = {}
    for path in _walk(root):
        try:
            instance = read_instance(path)
        except InvalidDicomError:
            skipped[path] = "not a DICOM file"
            continue
        except ValueError as exc:
            skipped[path] = str(exc)
            continue
        except Exception as exc:  # pydicom raises many types on a damaged header
            skipped[path] = f"unreadable DICOM header ({type(exc).__name__}: {exc})"
            continue
        sop = str(instance.header.get("SOPInstanceUID", ""))
        if sop and sop in seen:
            skipped[path] = f"a copy of {seen[sop]} (same SOPInstanceUID)"
            continue
        seen[sop] = path
        key = (str(instance.header.StudyInstanceUID), str(instance.header.SeriesInstanceUID))
        by_series.setdefault(key, []).append(instance)
    studies: dict[str, list[Series]] = {}
    for (study_uid, series_uid), instances in by_series.items():
        instances.sort(key=lambda i: (i.number, str(i.path)))
        studies.setdefault(study_uid, []).append(Series(series_uid, instances))
    ordered = []
    for uid, series in studies.items():
        series.sort(key=lambda s: (s.number, s.uid))
        ordered.append(Study(uid, series))
    ordered.sort(key=lambda s: (str(s.header.get("StudyDate", "")), s.uid))
    return DicomIndex(root=root, studies=ordered, skipped=skipped)


def normal(orientation: tuple[float, ...]) -> np.ndarray:
    """Unit slice normal (row x column direction) of an ImageOrientationPatient."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    n = np.cross(row, col)
    return n / (np.linalg.norm(n) or 1.0)
