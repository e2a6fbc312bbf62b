"""Cohort discovery: subject folders or a manifest CSV, located (not loaded) as :class:`Cohort`.

Modules: :mod:`csvdnet.io.cohort` reads a cohort (:func:`read_cohort`, :func:`load_subject`, the
cohort's ``ratings.csv``); the two forms are :mod:`csvdnet.io.cohort_folder` and
:mod:`csvdnet.io.cohort_manifest`; :class:`Subject` and :class:`Cohort` live in
:mod:`csvdnet.io.subject`, sequence file names in :mod:`csvdnet.io.sequences`. Their public names
are re-exported here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.errors import CsvdnetInputError
from csvdnet.io.cohort_folder import _subjects_from_folder, find_sequences  # noqa: F401
from csvdnet.io.cohort_manifest import _subjects_from_manifest
from csvdnet.io.nifti import Image, PathLike, load_nifti
from csvdnet.io.ratings import read_ratings
from csvdnet.io.sequences import SEQUENCE_ALIASES, _nifti_suffix, sequence_of_file  # noqa: F401
from csvdnet.io.subject import Cohort, Subject

logger = logging.getLogger(__name__)


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
