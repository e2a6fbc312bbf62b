"""Subject folders: a cohort folder's sub-folders located as subjects (sequences, ``labels/``).

Each non-hidden sub-folder is a subject or a problem; its sequence files are found by name
(:func:`find_sequences`), its labels under ``labels/``, and files csvdnet does not read are named
in a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.errors import CsvdnetInputError
from csvdnet.io.csvtable import _is_csv
from csvdnet.io.sequences import SEQUENCE_ALIASES, _nifti_suffix, sequence_of_file
from csvdnet.io.subject import Subject, _format_problem, _make_subject, _parse_label_name

# The cohort reader's logger (its warnings kept their logger name when this module was split off).
logger = logging.getLogger("csvdnet.io.cohort")


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
