"""Cohort discovery: subject folders or a manifest CSV, located (not loaded) as :class:`Cohort`."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.errors import CsvdnetInputError
from csvdnet.io.csvtable import _is_csv, _read_csv, _require_columns, _unique_subject_rows
from csvdnet.io.labels import KNOWN_LABELS, POINT_LABELS
from csvdnet.io.nifti import NIFTI_SUFFIXES, Image, PathLike, _nifti_suffix, load_nifti
from csvdnet.io.ratings import Ratings, read_ratings

logger = logging.getLogger(__name__)


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
    """

    id: str
    sequences: dict[str, Path]
    labels: dict[str, Path] = dataclasses.field(default_factory=dict)
    label_sequence: dict[str, str] = dataclasses.field(default_factory=dict)
    ratings: Ratings | None = None

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


def read_cohort(path: PathLike, sequences: Sequence[str] = DEFAULT_SEQUENCES,
                reference: str = "flair") -> Cohort:
    """Locate the files of a cohort given as a folder or a manifest CSV (see docs/contracts.md).

    Folder form: each sub-folder holding at least one ``<sequence>.nii[.gz]`` is a subject;
    its labels are ``labels/<label>[@<sequence>].nii[.gz]`` (and ``.csv`` for point labels).
    Manifest form: a ``subject`` column plus one column per sequence / label (``<label>@<sequence>``
    for a label drawn on another sequence), paths relative to the CSV, empty cell = absent;
    columns of default sequences not in ``sequences`` are ignored. Either way an optional
    ``ratings.csv`` at the cohort root / beside the manifest is attached to the subjects.

    Args:
        path: Cohort folder or manifest CSV.
        sequences: Sequence names to look for, in channel order.
        reference: The sequence every subject must have; labels are drawn on it by default.

    Returns:
        The cohort; nothing is loaded.

    A problem of one subject (no reference image, an unknown or duplicate label file, a
    manifest cell naming a missing file, a label drawn on a sequence the subject lacks, a bad
    ``ratings.csv`` row) leaves that subject out, recorded in :attr:`Cohort.problems`; files
    of a subject folder that are neither sequences nor labels are named in a warning.

    Raises:
        CsvdnetInputError: Problems of the whole cohort: a missing path, no subject folder, an
            unreadable manifest or one without a ``subject`` column, an unknown column, a
            subject listed twice, an unreadable ``ratings.csv`` or one rating a subject that
            is not in the cohort.
    """
    path = Path(os.path.abspath(path))  # subjects' paths are absolute in both forms
    sequences = tuple(sequences)
    if reference not in sequences:
        raise CsvdnetInputError(
            path, f"reference sequence {reference!r} is not one of the sequences "
                  f"({', '.join(sequences)})")
    problems: dict[str, str] = {}
    if path.is_dir():
        root, manifest = path, None
        subjects = _subjects_from_folder(path, sequences, reference, problems)
    elif path.is_file():
        root, manifest = path.parent, path
        subjects = _subjects_from_manifest(path, sequences, reference, problems)
    else:
        raise CsvdnetInputError(path, "cohort folder or manifest not found")
    if problems and not subjects and all(f"no {reference} image" in m for m in problems.values()):
        raise CsvdnetInputError(path, f"no subject has a {reference} image (the reference "
                                      f"sequence): is the sequence name right?")
    subjects = _attach_ratings(subjects, root / "ratings.csv", problems)
    return Cohort(root=root, subjects=subjects, sequences=sequences, reference=reference,
                  manifest=manifest, problems=problems)


def load_subject(subject: Subject) -> dict[str, Image]:
    """Load a subject's sequences as images, keyed and ordered like ``subject.sequences``.

    Raises:
        CsvdnetInputError: Any :func:`load_nifti` problem with one of the files.
    """
    return {name: load_nifti(path) for name, path in subject.sequences.items()}


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


def _subjects_from_folder(root: Path, sequences: tuple[str, ...], reference: str,
                          problems: dict[str, str]) -> list[Subject]:
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found = {name: path for name in sequences
                     if (path := _single_file(folder, [f"{name}{s}" for s in NIFTI_SUFFIXES]))}
        except CsvdnetInputError as exc:
            problems[folder.name] = str(exc)
            continue
        if not found and not _has_any_sequence(folder):
            continue  # not a subject folder (e.g. notes, previews)
        _warn_unknown_files(folder, sequences)
        try:
            if reference not in found:  # before the labels: the worse problem is named
                raise CsvdnetInputError(folder, f"no {reference} image (the reference sequence)")
            labels = _labels_in_folder(folder / "labels", sequences, reference)
            subjects.append(_make_subject(folder.name, found, labels, reference, folder, ""))
        except CsvdnetInputError as exc:
            problems[folder.name] = str(exc)
    if not subjects and not problems:
        raise CsvdnetInputError(
            root, f"no subject folders (sub-folders holding <sequence>.nii[.gz] for a sequence in "
                  f"{', '.join(sequences)})")
    return subjects


# Files a subject folder may hold besides its sequences: the synthetic generator's record and
# the preview `csvdnet synth --preview` draws.
_SUBJECT_FILES = ("synth.json", "preview.png")


def _has_any_sequence(folder: Path) -> bool:
    """Whether ``folder`` holds a NIfTI named after any default sequence (a subject lacking
    the requested ones, rather than some other folder)."""
    return any((folder / f"{name}{s}").is_file() for name in DEFAULT_SEQUENCES
               for s in NIFTI_SUFFIXES)


def _warn_unknown_files(folder: Path, sequences: tuple[str, ...]) -> None:
    """Name, in one warning, the files of a subject folder that csvdnet does not read."""
    known = {f"{name}{s}" for name in (*sequences, *DEFAULT_SEQUENCES) for s in NIFTI_SUFFIXES}
    known |= {f"{name}.bval" for name in (*sequences, *DEFAULT_SEQUENCES)}
    unknown = sorted(p.name for p in folder.iterdir()
                     if not p.name.startswith(".") and p.name not in known
                     and p.name not in _SUBJECT_FILES and not (p.is_dir() and p.name == "labels"))
    if unknown:
        logger.warning("%s: ignoring file(s) that are neither sequences (%s) nor labels/: %s",
                       folder, ", ".join(sequences), ", ".join(unknown))


def _single_file(folder: Path, names: list[str]) -> Path | None:
    present = [folder / name for name in names if (folder / name).is_file()]
    if len(present) > 1:
        raise CsvdnetInputError(folder, f"both {present[0].name} and {present[1].name}: keep one")
    return present[0] if present else None


def _labels_in_folder(folder: Path, sequences: tuple[str, ...],
                      reference: str) -> dict[str, tuple[Path, str]]:
    labels: dict[str, tuple[Path, str]] = {}
    if not folder.is_dir():
        return labels
    for path in sorted(folder.iterdir()):
        suffix = _nifti_suffix(path) or (".csv" if _is_csv(path) else None)
        if path.name.startswith(".") or not path.is_file() or suffix is None:
            continue  # notes, hidden temporary files of interrupted writes
        label, sequence = _parse_label_name(path.name[:-len(suffix)], sequences, reference,
                                            path, "")
        problem = _format_problem(path, label)
        if problem:
            raise CsvdnetInputError(folder, problem)
        if label in labels:
            raise CsvdnetInputError(
                folder, f"two files for label {label}: {labels[label][0].name} and {path.name}")
        labels[label] = (path, sequence)
    return labels


def _subjects_from_manifest(manifest: Path, sequences: tuple[str, ...], reference: str,
                            problems: dict[str, str]) -> list[Subject]:
    header, rows = _read_csv(manifest)
    _require_columns(manifest, header, ("subject",))
    sequence_columns, label_columns = _manifest_columns(manifest, header, sequences, reference)
    if not rows:
        raise CsvdnetInputError(manifest, "no subjects (the manifest has no data rows)")
    subjects: dict[str, Subject] = {}
    for row_no, subject_id, row in _unique_subject_rows(manifest, rows, "listed"):
        where = f"row {row_no} (subject {subject_id}): "
        try:
            found = {c: _manifest_file(manifest, row[c], f"{where}column {c}: ")
                     for c in sequence_columns if row[c]}
            labels = {label: (_manifest_file(manifest, row[c], f"{where}column {c}: ", label),
                              drawn_on)
                      for c, (label, drawn_on) in label_columns.items() if row[c]}
            subjects[subject_id] = _make_subject(subject_id, found, labels, reference, manifest,
                                                 where)
        except CsvdnetInputError as exc:
            problems[subject_id] = str(exc)
    return list(subjects.values())


def _manifest_columns(manifest: Path, header: list[str], sequences: tuple[str, ...],
                      reference: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Sort the manifest's columns into sequences and labels.

    Returns:
        The sequence columns in cohort order, and column -> (label, sequence drawn on).
    """
    label_columns: dict[str, tuple[str, str]] = {}
    for column in header:
        if column in ("subject", *sequences, *DEFAULT_SEQUENCES):
            continue  # columns of default sequences not asked for: a full manifest, fewer channels
        if column.partition("@")[0] in KNOWN_LABELS:
            label_columns[column] = _parse_label_name(column, sequences, reference, manifest,
                                                      f"column {column!r}: ")
        else:
            raise CsvdnetInputError(
                manifest, f"unknown column {column!r} (known: subject, {', '.join(sequences)}, "
                          f"{', '.join(KNOWN_LABELS)}, or <label>@<sequence>)")
    return [name for name in sequences if name in header], label_columns


def _manifest_file(manifest: Path, text: str, where: str, label: str | None = None) -> Path:
    """The existing file a manifest cell names (relative to the manifest), fit for its column."""
    # abspath, not resolve(): keep the user's (possibly symlinked) paths recognisable in messages.
    path = Path(os.path.abspath(manifest.parent / Path(text).expanduser()))
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise CsvdnetInputError(manifest, f"{where}{path} {state}")
    problem = _format_problem(path, label)
    if problem:
        raise CsvdnetInputError(manifest, f"{where}{problem}")
    return path


def _attach_ratings(subjects: list[Subject], ratings_path: Path,
                    problems: dict[str, str]) -> list[Subject]:
    """Attach ``ratings.csv`` rows; a subject whose row is bad moves to ``problems``."""
    if not ratings_path.is_file():
        return subjects
    bad_rows: dict[str, str] = {}
    ratings = read_ratings(ratings_path, problems=bad_rows)
    by_id = {subject.id: subject for subject in subjects}
    strangers = [subject_id for subject_id in (*ratings, *bad_rows)
                 if subject_id not in by_id and subject_id not in problems]
    if strangers:
        raise CsvdnetInputError(
            ratings_path, f"subject {strangers[0]} is rated but not in the cohort")
    for subject_id, rating in ratings.items():
        if subject_id in by_id:
            by_id[subject_id].ratings = rating
    for subject_id, message in bad_rows.items():
        problems.setdefault(subject_id, message)
    return [subject for subject in subjects if subject.id not in bad_rows]
