"""Manifest CSVs: a cohort given as one row per subject, columns naming sequence and label files.

A ``subject`` column plus one column per sequence (name or alias, any case) or label
(``<label>@<sequence>`` for a label drawn on another sequence), paths relative to the CSV.
"""

from __future__ import annotations

import os
from pathlib import Path

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.errors import CsvdnetInputError
from csvdnet.io.csvtable import _read_csv, _require_columns, _unique_subject_rows
from csvdnet.io.labels import KNOWN_LABELS
from csvdnet.io.sequences import sequence_of_file
from csvdnet.io.subject import Subject, _format_problem, _make_subject, _parse_label_name


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
