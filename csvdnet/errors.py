"""The one exception type for problems with what a user gave csvdnet."""

from __future__ import annotations

import os


class CsvdnetInputError(ValueError):
    """Bad input: a file or a config that csvdnet cannot use.

    The message always names the offending file (or config key) and the reason, on one line,
    so the CLI can print it as is and exit with code 2.

    Attributes:
        path: The file (or config location) at fault.
        reason: Why it cannot be used.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep it picklable for multiprocessing workers
        return (type(self), (self.path, self.reason))


class CsvdnetOutputError(CsvdnetInputError):
    """A file csvdnet must write cannot be written (read-only or full disk, permission, an
    output folder in use by another run): reported like bad input, one line naming the file and
    the reason, exit code 2."""
