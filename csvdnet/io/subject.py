"""Located subjects and cohorts: :class:`Subject`, :class:`Cohort`, the checks both forms share.

A subject folder (:mod:`csvdnet.io.cohort_folder`) and a manifest row
(:mod:`csvdnet.io.cohort_manifest`) become a :class:`Subject` through the same label-name,
file-format and reference checks (:func:`_make_subject`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

from csvdnet.errors import CsvdnetInputError
from csvdnet.io.csvtable import _is_csv
from csvdnet.io.labels import KNOWN_LABELS, POINT_LABELS
from csvdnet.io.ratings import Ratings
from csvdnet.io.sequences import _nifti_suffix


@dataclasses.dataclass
class Subject:
    """One subject's files (located, not loaded).

    Attributes:
        id: Subject id (folder name or manifest ``subject`` cell).
        sequences: Sequence name -> NIfTI file, for the sequences present, in cohort order.
        labels: Label name (see :data:`KNOWN_LABELS`) -> file, for the labels present only.
        label_sequence: Label name -> the sequence it is drawn on, for every label present
            (the reference sequence unless the file / column was named ``<label>@<sequence>``).
        ratings: The subject's row of ``ratings.csv``, if any.
        source: Where the sequences came from when csvdnet made them (a DICOM study: the
            record of :func:`csvdnet.dicom.open_dicom`, reported in ``report.json``); None
            for NIfTI given by the user.
    """

    id: str
    sequences: dict[str, Path]
    labels: dict[str, Path] = dataclasses.field(default_factory=dict)
    label_sequence: dict[str, str] = dataclasses.field(default_factory=dict)
    ratings: Ratings | None = None
    source: dict | None = None

    def present_labels(self) -> tuple[str, ...]:
        """Names of the labels this subject has, in :data:`KNOWN_LABELS` order."""
        return tuple(name for name in KNOWN_LABELS if name in self.labels)


@dataclasses.dataclass
class Cohort:
    """Subjects of a cohort folder or manifest.

    Attributes:
        root: The cohort folder (for a manifest, the folder holding it).
        subjects: Subjects in folder-name order (folder) or row order (manifest).
        sequences: Sequence names considered, in channel order.
        reference: The reference sequence, present for every subject.
        manifest: The manifest CSV, when the cohort was read from one.
        problems: Subjects that could not be located, id -> message (a missing reference
            image, a manifest cell naming a missing file, a bad ``ratings.csv`` row ...): they
            are not in ``subjects``, and a run reports them as failed without stopping.
    """

    root: Path
    subjects: list[Subject]
    sequences: tuple[str, ...]
    reference: str = "flair"
    manifest: Path | None = None
    problems: dict[str, str] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.subjects)

    def __iter__(self) -> Iterator[Subject]:
        return iter(self.subjects)

    def __getitem__(self, subject_id: str) -> Subject:
        for subject in self.subjects:
            if subject.id == subject_id:
                return subject
        raise KeyError(f"no subject {subject_id!r} in the cohort at {self.root}")


def _parse_label_name(name: str, sequences: tuple[str, ...], reference: str,
                      source: Path, where: str) -> tuple[str, str]:
    """Split ``<label>[@<sequence>]`` into (label, sequence drawn on); raise naming ``source``."""
    label, _, sequence = name.partition("@")
    if label not in KNOWN_LABELS:
        raise CsvdnetInputError(
            source, f"{where}unknown label {label!r} (known: {', '.join(KNOWN_LABELS)}; a label "
                    "drawn on another sequence is named <label>@<sequence>)")
    if sequence and sequence not in sequences:
        raise CsvdnetInputError(
            source, f"{where}label {name!r} is drawn on {sequence!r}, which is not one of the "
                    f"sequences ({', '.join(sequences)})")
    return label, sequence or reference


def _format_problem(path: Path, label: str | None = None) -> str | None:
    """Why ``path`` cannot hold a sequence (``label`` None) or label ``label``; None if it can."""
    if _nifti_suffix(path) or (label in POINT_LABELS and _is_csv(path)):
        return None
    what = f"label {label}" if label else "a sequence"
    allowed = ".nii/.nii.gz or .csv" if label in POINT_LABELS else ".nii/.nii.gz"
    return f"{path.name}: {what} must be a {allowed} file"


def _make_subject(subject_id: str, sequences: dict[str, Path],
                  labels: dict[str, tuple[Path, str]], reference: str,
                  source: Path, where: str) -> Subject:
    """Build a Subject after the checks both cohort forms share."""
    if reference not in sequences:
        raise CsvdnetInputError(source, f"{where}no {reference} image (the reference sequence)")
    for label, (path, sequence) in labels.items():
        if sequence not in sequences:
            raise CsvdnetInputError(
                source, f"{where}label {label} ({path.name}) is drawn on {sequence}, but the "
                        f"subject has no {sequence} image")
    return Subject(id=subject_id, sequences=sequences,
                   labels={label: path for label, (path, _) in labels.items()},
                   label_sequence={label: sequence for label, (_, sequence) in labels.items()})
