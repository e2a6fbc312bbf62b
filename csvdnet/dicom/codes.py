"""Coded concepts of csvdnet's DICOM output: segment types, SR concept names, private scheme.

Standard codes are used where DICOM / SNOMED CT has one (checked against pydicom's code tables,
``pydicom.sr.codedict``, except SCT 230698000 "Lacunar infarction", named by issue 19). Concepts
without a standard code are coded under csvdnet's private coding scheme ``99CSVDNET`` (a "99"
designator is private by PS3.16 8.2), declared in every SR's Coding Scheme Identification
Sequence and listed in ``docs/contracts.md`` ("DICOM output").
"""

from __future__ import annotations

import dataclasses

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from csvdnet.slices import MARKER_COLOURS

__all__ = ["CATEGORY", "COUNT_UNIT", "MARKERS", "PRIVATE_SCHEME", "SCORE_UNIT", "VOLUME_UNIT",
           "MarkerCoding", "private", "private_scheme_item"]

PRIVATE_SCHEME = "99CSVDNET"
"""Coding scheme designator of csvdnet's private concepts."""
PRIVATE_SCHEME_NAME = "csvdnet private concepts"


def private(value: str, meaning: str) -> CodedConcept:
    """A concept of csvdnet's private coding scheme."""
    return CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


def private_scheme_item() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification Sequence item that declares ``99CSVDNET``."""
    return CodingSchemeIdentificationItem(designator=PRIVATE_SCHEME, name=PRIVATE_SCHEME_NAME,
                                          responsible_organization="csvdnet")


CATEGORY = CodedConcept.from_code(codes.SCT.MorphologicallyAbnormalStructure)  # SCT 49755003
VOLUME_UNIT = CodedConcept.from_code(codes.UCUM.CubicMillimeter)
COUNT_UNIT = CodedConcept.from_code(codes.UCUM.Counts)  # "{counts}"
SCORE_UNIT = CodedConcept.from_code(codes.UCUM.NoUnits)  # "1": grades and scores


@dataclasses.dataclass(frozen=True)
class MarkerCoding:
    """How one marker is written: its segment, the series it is drawn on, its SR names.

    Attributes:
        task: csvdnet's task name (``wmh``, ``lacune``, ``rssi``, ``cmb``, ``epvs``).
        label: Segment label shown by viewers.
        type: Segmented property type.
        targets: Channels whose series the segment goes on, first present wins (the FLAIR, the
            reference, always last).
        colour: Display colour (sRGB hex), the report pictures' (``slices.MARKER_COLOURS``).
        radius_mm: Sphere radius for a detection marker (points), ``None`` for a mask.
    """

    task: str
    label: str
    type: CodedConcept
    targets: tuple[str, ...]
    colour: str
    radius_mm: float | None = None


MARKERS: tuple[MarkerCoding, ...] = (
    MarkerCoding("wmh", "WMH", CodedConcept.from_code(codes.DCM.WhiteMatterT2Hyperintensity),
                 ("flair",), MARKER_COLOURS["wmh"]),
    MarkerCoding("lacune", "lacune",
                 CodedConcept(value="230698000", scheme_designator="SCT",
                              meaning="Lacunar infarction"), ("flair",), MARKER_COLOURS["lacune"]),
    MarkerCoding("rssi", "RSSI", private("RSSI", "Recent small subcortical infarct"),
                 ("dwi", "flair"), MARKER_COLOURS["rssi"]),
    # A microbleed is a small haemorrhage: SCT 50960005 "Hemorrhage", labelled "microbleed".
    # 2.5 mm: a sphere of 5 mm, the middle of the 2-10 mm range of STRIVE.
    MarkerCoding("cmb", "microbleed", CodedConcept.from_code(codes.SCT.Hemorrhage),
                 ("swi", "t2", "flair"), MARKER_COLOURS["cmb"], radius_mm=2.5),
    # 1.5 mm: EPVS are < 3 mm across.
    MarkerCoding("epvs", "EPVS", private("EPVS", "Enlarged perivascular space"),
                 ("t2", "t1", "flair"), MARKER_COLOURS["epvs"], radius_mm=1.5),
)
"""Every marker in segment order; a SEG holds the markers whose first present target agrees."""

MARKER_BY_TASK = {m.task: m for m in MARKERS}
