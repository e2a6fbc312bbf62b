"""CSV plumbing shared by points, ratings and manifests.

Conventions: UTF-8 (a spreadsheet's byte-order mark is accepted), a header row, cells stripped
of surrounding spaces, blank lines skipped, an empty cell = absent. Rows are numbered as a
spreadsheet shows them: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_path
from csvdnet.io.nifti import PathLike, _describe


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(".csv")


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (row number, cells by column) of each non-blank row; header = row 1."""
    if not path.is_file():
        raise CsvdnetInputError(path, "file not found" if not path.exists() else "not a file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            rows = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) > len(header):
                    raise CsvdnetInputError(path, f"row {reader.line_num} has {len(cells)} "
                                                  f"cells, the header {len(header)}")
                cells = [cell.strip() for cell in cells] + [""] * (len(header) - len(cells))
                rows.append((reader.line_num, dict(zip(header, cells))))
    except PermissionError:
        raise CsvdnetInputError(path, "permission denied (the file cannot be read)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CsvdnetInputError(
            path, f"not a readable UTF-8 CSV file ({_describe(exc)})") from None
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise CsvdnetInputError(
            path, f"column {duplicates[0]!r} appears more than once in the header")
    return header, rows


def _require_columns(path: Path, header: list[str], required: Sequence[str],
                     known: Sequence[str] | None = None) -> None:
    missing = [name for name in required if name not in header]
    if missing:
        raise CsvdnetInputError(
            path, f"missing column(s) {', '.join(missing)} (header: {', '.join(header) or 'none'})")
    unknown = [name for name in header if known is not None and name not in known]
    if unknown:
        raise CsvdnetInputError(
            path, f"unknown column {unknown[0]!r} (known: {', '.join(known)})")


def _write_csv(path: PathLike, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return path


def _subject_id(path: Path, row_no: int, text: str) -> str:
    # Ids become output folder names; folder discovery skips hidden folders.
    if not text or text.startswith(".") or any(c in text for c in "/\\"):
        shown = repr(text) if text else "an empty cell"
        raise CsvdnetInputError(
            path, f"row {row_no}, column subject: {shown} is not a usable subject id "
                  "(it names an output folder: no path separators, no leading dot)")
    return text


def _unique_subject_rows(path: Path, rows: Iterable[tuple[int, dict[str, str]]],
                         verb: str) -> Iterator[tuple[int, str, dict[str, str]]]:
    """Yield ``(row_no, subject_id, row)``, refusing a subject that appears on two rows."""
    first_row: dict[str, int] = {}
    for row_no, row in rows:
        subject = _subject_id(path, row_no, row["subject"])
        if subject in first_row:
            raise CsvdnetInputError(
                path, f"row {row_no}: subject {subject} is {verb} twice (also row "
                      f"{first_row[subject]})")
        first_row[subject] = row_no
        yield row_no, subject, row



def _parse_number(path: Path, row_no: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not np.isfinite(value):
        shown = repr(text) if text else "an empty cell"
        raise CsvdnetInputError(
            path, f"row {row_no}, column {column}: {shown} is not a finite number")
    return value



def _format_cell(value: object, decimals: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if decimals is None:
            return f"{float(value):.6g}"
        return repr(round(float(value), decimals) + 0.0)  # + 0.0 turns -0.0 into 0.0
    return str(value)
