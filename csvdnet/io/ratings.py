"""Subject ratings: :class:`Ratings` and the ``ratings.csv`` reader / writer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np

from csvdnet.errors import CsvdnetInputError
from csvdnet.io.csvtable import (_format_cell, _read_csv, _require_columns, _unique_subject_rows,
                                 _write_csv)
from csvdnet.io.nifti import PathLike


@dataclasses.dataclass(frozen=True)
class Ratings:
    """A neuroradiologist's ratings of one subject; ``None`` = not rated.

    Attributes:
        fazekas_pv: Periventricular Fazekas grade, 0-3.
        fazekas_deep: Deep white matter Fazekas grade, 0-3.
        epvs_bg_grade: Basal ganglia EPVS grade, 0-4.
        cmb_count: Number of cerebral microbleeds, >= 0.
        lacune_count: Number of lacunes, >= 0.
        rssi_count: Number of recent small subcortical infarcts, >= 0.
        total_score: Total SVD score, 0-4.
    """

    fazekas_pv: int | None = None
    fazekas_deep: int | None = None
    epvs_bg_grade: int | None = None
    cmb_count: int | None = None
    lacune_count: int | None = None
    rssi_count: int | None = None
    total_score: int | None = None

    def __post_init__(self) -> None:
        for name in RATING_FIELDS:
            problem = _rating_problem(name, getattr(self, name))
            if problem:
                raise ValueError(f"Ratings.{name}: {problem}")


RATING_FIELDS = tuple(f.name for f in dataclasses.fields(Ratings))
# Inclusive (low, high); None = unbounded.
_RATING_RANGES = {"fazekas_pv": (0, 3), "fazekas_deep": (0, 3), "epvs_bg_grade": (0, 4),
                  "cmb_count": (0, None), "lacune_count": (0, None), "rssi_count": (0, None),
                  "total_score": (0, 4)}


def _rating_problem(name: str, value: int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return f"{value!r} is not an integer"
    lo, hi = _RATING_RANGES[name]
    if value < lo or (hi is not None and value > hi):
        return f"{value} is out of range ({f'{lo}..{hi}' if hi is not None else f'>= {lo}'})"
    return None


def read_ratings(path: PathLike, problems: dict[str, str] | None = None) -> dict[str, Ratings]:
    """Read ``ratings.csv``: a ``subject`` column and any of the :class:`Ratings` fields.

    Integral decimals such as ``2.0`` (as spreadsheets and pandas write them) are accepted; a
    missing column or an empty cell means not rated.

    Args:
        path: The ratings CSV.
        problems: If given, a row with a bad value is recorded here (subject id -> message)
            and left out instead of refusing the whole file: one bad row fails one subject.

    Returns:
        Ratings by subject id, in file order.

    Raises:
        CsvdnetInputError: Missing file or ``subject`` column, unknown column, duplicate or
            invalid subject, a non-integer or out-of-range value (naming the row and column;
            only when ``problems`` is None).
    """
    path = Path(path)
    header, rows = _read_csv(path)
    _require_columns(path, header, ("subject",), known=("subject",) + RATING_FIELDS)
    ratings: dict[str, Ratings] = {}
    for row_no, subject, row in _unique_subject_rows(path, rows, "rated"):
        try:
            values = {name: _parse_rating(path, row_no, name, row[name])
                      for name in RATING_FIELDS if name in row}
        except CsvdnetInputError as exc:
            if problems is None:
                raise
            problems[subject] = str(exc)
            continue
        ratings[subject] = Ratings(**values)
    return ratings


def _parse_rating(path: Path, row_no: int, name: str, text: str) -> int | None:
    if not text:
        return None
    try:
        number = float(text)
        value = int(number) if number.is_integer() else None
    except (ValueError, OverflowError):
        value = None
    problem = f"{text!r} is not an integer" if value is None else _rating_problem(name, value)
    if problem:
        raise CsvdnetInputError(path, f"row {row_no}, column {name}: {problem}")
    return value


def write_ratings(path: PathLike, ratings: Mapping[str, Ratings]) -> Path:
    """Write ratings to a CSV atomically, in the ``ratings.csv`` layout (empty cell = not rated).

    Args:
        path: Destination CSV.
        ratings: Ratings by subject id; written in this order.

    Returns:
        ``path`` as a Path.
    """
    rows = [[subject] + [_format_cell(getattr(r, name)) for name in RATING_FIELDS]
            for subject, r in ratings.items()]
    return _write_csv(path, ["subject", *RATING_FIELDS], rows)
