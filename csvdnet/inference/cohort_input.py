"""What ``csvdnet predict`` was pointed at, as subjects: a BIDS dataset, one subject's folder, a
cohort folder or a manifest CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

__all__ = ["open_input"]


def open_input(path: str | Path, sequences: Sequence[str], reference: str
               ) -> tuple[list[Any], dict[str, str], bool]:
    """The subjects of what ``csvdnet predict`` was pointed at.

    ``path`` may be a BIDS dataset (``dataset_description.json``), one subject's folder (holding
    its reference sequence itself, named as :func:`csvdnet.io.find_sequences` reads names), a
    cohort folder of subject folders, or a manifest CSV.

    Returns:
        ``(subjects, problems, bids)``: the subjects, subject id -> reason for subjects that
        cannot be predicted, and whether the input is BIDS.

    Raises:
        CsvdnetInputError: The path is none of these, or a problem with the whole cohort.
    """
    from csvdnet.io import Subject, find_sequences, read_cohort
    from csvdnet.io.bids import is_bids, read_bids

    path = Path(path)
    if is_bids(path):
        cohort, problems = read_bids(path, sequences, reference)
        return list(cohort.subjects), problems, True
    found = find_sequences(path, sequences) if path.is_dir() else {}
    if reference in found:
        return [Subject(id=path.resolve().name, sequences=found)], {}, False
    # Prediction reads no ratings: a ratings.csv of the whole cohort beside a subset manifest
    # is only warned about.
    cohort = read_cohort(path, sequences=sequences, reference=reference, strict_ratings=False)
    return list(cohort.subjects), dict(cohort.problems), False
