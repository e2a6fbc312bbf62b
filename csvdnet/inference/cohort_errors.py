"""How a cohort run puts a failure into words: ``errors.tsv``'s ``(error, message)`` of a subject,
and the reason and file of a write that failed."""

from __future__ import annotations

import traceback
from pathlib import Path

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import final_path

__all__ = ["describe_error", "write_failure"]


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def write_failure(exc: OSError, fallback: Path) -> str:
    """``"<reason>: <file>"`` for a failed write, the file as the user knows it (not the
    temporary ``.part`` name); ``fallback`` when the error names no file."""
    where = final_path(exc.filename) if exc.filename else fallback
    return f"{_os_reason(exc)}: {where}"


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(error, message)`` of a subject's failure as ``errors.tsv`` records it: ``input`` for a
    :class:`~csvdnet.errors.CsvdnetInputError`, ``write`` for a file that could not be written
    (the reason and the file), else the exception type with its last frame."""
    if isinstance(exc, CsvdnetInputError):
        return "input", str(exc)
    if isinstance(exc, _WriteError):
        return "write", str(exc)
    # Not the user's input: keep the last frame so a bug report can point at it.
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    return type(exc).__name__, f"{exc}{where}"


class _WriteError(RuntimeError):
    """A subject's outputs could not be written; the message is ``"<reason>: <file>"``."""
