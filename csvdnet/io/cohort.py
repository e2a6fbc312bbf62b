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
from csvdnet.io.nifti import Image, PathLike, _nifti_suffix, load_nifti
from csvdnet.io.ratings import Ratings, read_ratings

logger = logging.getLogger(__name__)

SEQUENCE_ALIASES: dict[str, tuple[str, ...]] = {
    "flair": ("flair", "t2_flair", "t2-flair", "t2flair", "flair_t2"),
    "t1": ("t1", "t1w", "t1_w", "t1-w", "mprage", "t1_mprage"),
    "t2": ("t2", "t2w", "t2_w", "t2-w", "t2_tse"),
    "swi": ("swi", "t2star", "t2_star", "t2-star", "t2s", "gre", "t2star_gre"),
    "dwi": ("dwi", "b1000", "dwi_b1000", "trace"),
}
"""File names (without ``.nii[.gz]``, compared case-insensitively) taken as each default
sequence in a subject folder. A sequence outside this table matches its own name only."""


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


def read_cohort(path: PathLike, sequences: Sequence[str] = DEFAULT_SEQUENCES,
                reference: str = "flair", *, strict_ratings: bool = True) -> Cohort:
    """Locate the files of a cohort given as a folder or a manifest CSV (see docs/contracts.md).

    Folder form: each non-hidden sub-folder is a subject or a problem (never skipped without a
    word); its sequences are ``<sequence>.nii[.gz]``, the name or one of its
    :data:`SEQUENCE_ALIASES` in any case (``FLAIR.nii.gz``, ``T1w.nii``); its labels are
    ``labels/<label>[@<sequence>].nii[.gz]`` (and ``.csv`` for point labels).
    Manifest form: a ``subject`` column plus one column per sequence (name or alias, any case) /
    label (``<label>@<sequence>`` for a label drawn on another sequence), paths relative to the
    CSV, empty cell = absent;
    columns of default sequences not in ``sequences`` are ignored. Either way an optional
    ``ratings.csv`` at the cohort root / beside the manifest is attached to the subjects.

    Args:
        path: Cohort folder or manifest CSV.
        sequences: Sequence names to look for, in channel order.
        reference: The sequence every subject must have; labels are drawn on it by default.
        strict_ratings: Refuse a ``ratings.csv`` rating subjects that are not in the cohort
            (training, evaluation); False only warns (prediction of a subset, which does not
            read the ratings).

    Returns:
        The cohort; nothing is loaded.

    A problem of one subject (no reference image, a folder holding no NIfTI named after a
    sequence, two files taken as one sequence, an unknown or duplicate label file, a
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
    elif path.is_file() and _nifti_suffix(path):
        raise CsvdnetInputError(path, "is one image, not a cohort: give the subject's folder "
                                      f"(holding {reference} and the other sequences), a cohort "
                                      "folder, a manifest CSV or a BIDS dataset")
    elif path.is_file():
        root, manifest = path.parent, path
        subjects = _subjects_from_manifest(path, sequences, reference, problems)
    else:
        raise CsvdnetInputError(path, "cohort folder or manifest not found")
    if problems and not subjects and all(f"no {reference} image" in m for m in problems.values()):
        raise CsvdnetInputError(path, f"no subject has a {reference} image (the reference "
                                      f"sequence): is the sequence name right?")
    subjects = _attach_ratings(subjects, root / "ratings.csv", problems, strict_ratings)
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
    """Every non-hidden sub-folder of ``root`` becomes a subject or an entry of ``problems``."""
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found = find_sequences(folder, sequences)
            if reference not in found:  # before the labels: the worse problem is named
                raise CsvdnetInputError(folder, _no_reference_message(folder, reference, found))
            _warn_unknown_files(folder, sequences)
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


def sequence_of_file(name: str, sequences: Sequence[str]) -> str | None:
    """The sequence a file named ``name`` holds, by the names in :data:`SEQUENCE_ALIASES`.

    Args:
        name: A file name such as ``T2_FLAIR.nii.gz``; case does not matter.
        sequences: The sequences asked for.

    Returns:
        The sequence name, or None for a file that is not a NIfTI named after one of them.
    """
    suffix = _nifti_suffix(Path(name))
    if suffix is None:
        return None
    stem = name[:-len(suffix)].lower()
    return next((seq for seq in sequences
                 if stem in SEQUENCE_ALIASES.get(seq, ()) or stem == seq.lower()), None)


def find_sequences(folder: Path, sequences: Sequence[str]) -> dict[str, Path]:
    """The sequence files of one subject folder, named after a sequence or one of its aliases.

    Args:
        folder: The subject folder.
        sequences: The sequences asked for, in channel order.

    Returns:
        Sequence name -> file, in ``sequences`` order, for the sequences present.

    Raises:
        CsvdnetInputError: Two files for one sequence (e.g. ``flair.nii`` and ``T2_FLAIR.nii.gz``),
            or a sequence file that is a broken or self-looping symbolic link.
    """
    by_sequence: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        sequence = sequence_of_file(path.name, sequences)
        if sequence is None:
            continue
        if path.is_symlink() and not path.exists():
            raise CsvdnetInputError(path, "a broken or self-looping symbolic link (its target "
                                          "cannot be reached)")
        if path.is_file():
            by_sequence.setdefault(sequence, []).append(path)
    for sequence, paths in by_sequence.items():
        if len(paths) > 1:
            raise CsvdnetInputError(
                folder, f"both {paths[0].name} and {paths[1].name} are taken as {sequence}: "
                        "keep one")
    return {name: by_sequence[name][0] for name in sequences if name in by_sequence}


def _no_reference_message(folder: Path, reference: str, found: dict[str, Path]) -> str:
    """Why ``folder`` is no subject: what it holds instead of the reference sequence."""
    message = f"no {reference} image (the reference sequence)"
    if found:
        return message
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    images = [name for name in names if _nifti_suffix(Path(name))]
    aliases = ", ".join(SEQUENCE_ALIASES.get(reference, (reference,)))
    if images:
        return (f"{message}: no NIfTI file is named after a sequence ({reference} may be named "
                f"{aliases}, any case); found {', '.join(images[:5])}"
                + (f" and {len(images) - 5} more" if len(images) > 5 else ""))
    if names:
        return (f"{message}: the folder holds no NIfTI image (found {', '.join(names[:5])}"
                + (f" and {len(names) - 5} more" if len(names) > 5 else "") + ")")
    return f"{message}: the folder is empty"


def _warn_unknown_files(folder: Path, sequences: tuple[str, ...]) -> None:
    """Name, in one warning, the files of a subject folder that csvdnet does not read."""
    known_sequences = (*sequences, *DEFAULT_SEQUENCES)
    unknown = sorted(
        p.name for p in folder.iterdir()
        if not p.name.startswith(".") and p.name not in _SUBJECT_FILES
        and sequence_of_file(p.name, known_sequences) is None
        and not (p.name.lower().endswith(".bval")
                 and sequence_of_file(p.name[:-5] + ".nii", known_sequences))
        and not (p.is_dir() and p.name == "labels"))
    if unknown:
        logger.warning("%s: ignoring file(s) that are neither sequences (%s) nor labels/: %s",
                       folder, ", ".join(sequences), ", ".join(unknown))


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
            found = {name: _manifest_file(manifest, row[c], f"{where}column {c}: ")
                     for name, c in sequence_columns.items() if row[c]}
            labels = {label: (_manifest_file(manifest, row[c], f"{where}column {c}: ", label),
                              drawn_on)
                      for c, (label, drawn_on) in label_columns.items() if row[c]}
            subjects[subject_id] = _make_subject(subject_id, found, labels, reference, manifest,
                                                 where)
        except CsvdnetInputError as exc:
            problems[subject_id] = str(exc)
    return list(subjects.values())


def _manifest_columns(manifest: Path, header: list[str], sequences: tuple[str, ...],
                      reference: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Sort the manifest's columns into sequences (named as in :data:`SEQUENCE_ALIASES`, any
    case) and labels.

    Returns:
        Sequence -> column in cohort order, and column -> (label, sequence drawn on).

    Raises:
        CsvdnetInputError: An unknown column, or two columns for one sequence.
    """
    label_columns: dict[str, tuple[str, str]] = {}
    sequence_columns: dict[str, str] = {}
    for column in header:
        if column == "subject":
            continue
        sequence = sequence_of_file(f"{column}.nii", (*sequences, *DEFAULT_SEQUENCES))
        if sequence is not None:
            if sequence in sequence_columns:
                raise CsvdnetInputError(
                    manifest, f"columns {sequence_columns[sequence]!r} and {column!r} are both "
                              f"taken as {sequence}: keep one")
            # columns of default sequences not asked for: a full manifest, fewer channels
            sequence_columns[sequence] = column
        elif column.partition("@")[0] in KNOWN_LABELS:
            label_columns[column] = _parse_label_name(column, sequences, reference, manifest,
                                                      f"column {column!r}: ")
        else:
            raise CsvdnetInputError(
                manifest, f"unknown column {column!r} (known: subject, {', '.join(sequences)} "
                          f"or an alias of theirs, {', '.join(KNOWN_LABELS)}, or "
                          f"<label>@<sequence>)")
    return ({name: sequence_columns[name] for name in sequences if name in sequence_columns},
            label_columns)


def _manifest_file(manifest: Path, text: str, where: str, label: str | None = None) -> Path:
    """The existing file a manifest cell names (relative to the manifest), fit for its column."""
    # abspath, not resolve(): keep the user's (possibly symlinked) paths recognisable in messages.
    path = Path(os.path.abspath(manifest.parent / Path(text).expanduser()))
    if not path.is_file():
        state = ("is a broken or self-looping symbolic link" if path.is_symlink()
                 and not path.exists() else "is not a file" if path.exists() else
                 "does not exist")
        raise CsvdnetInputError(manifest, f"{where}{path} {state}")
    problem = _format_problem(path, label)
    if problem:
        raise CsvdnetInputError(manifest, f"{where}{problem}")
    return path


def _attach_ratings(subjects: list[Subject], ratings_path: Path, problems: dict[str, str],
                    strict: bool = True) -> list[Subject]:
    """Attach ``ratings.csv`` rows; a subject whose row is bad moves to ``problems``; rows of
    subjects not in the cohort are refused (``strict``) or named in a warning."""
    if not ratings_path.is_file():
        return subjects
    bad_rows: dict[str, str] = {}
    ratings = read_ratings(ratings_path, problems=bad_rows)
    by_id = {subject.id: subject for subject in subjects}
    strangers = [subject_id for subject_id in (*ratings, *bad_rows)
                 if subject_id not in by_id and subject_id not in problems]
    if strangers and strict:
        raise CsvdnetInputError(
            ratings_path, f"subject {strangers[0]} is rated but not in the cohort")
    if strangers:
        logger.warning("%s: ignoring the ratings of %d subject(s) not in this cohort: %s%s",
                       ratings_path, len(strangers), ", ".join(strangers[:5]),
                       " ..." if len(strangers) > 5 else "")
    for subject_id, rating in ratings.items():
        if subject_id in by_id:
            by_id[subject_id].ratings = rating
    for subject_id, message in bad_rows.items():
        problems.setdefault(subject_id, message)
    return [subject for subject in subjects if subject.id not in bad_rows]
