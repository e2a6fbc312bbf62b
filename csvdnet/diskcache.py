"""Derived data kept between runs: arrays computed once, then read back (no pickle).

Best effort by design: an unreadable or unwritable cache only means computing again.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from csvdnet.fsutil import atomic_path

__all__ = ["cache_dir", "cached_arrays"]


def cache_dir() -> Path:
    """Where derived data is kept: ``$CSVDNET_CACHE``, else ``$XDG_CACHE_HOME/csvdnet``, else
    ``~/.cache/csvdnet``."""
    if os.environ.get("CSVDNET_CACHE"):
        return Path(os.environ["CSVDNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "csvdnet"


def cached_arrays(name: str, names: tuple[str, ...],
                  compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of ``cache_dir() / name`` (an ``.npz``), computed and stored first
    when the file is missing, unreadable or lacks one of them."""
    path = cache_dir() / name
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in names}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        arrays = compute()
        try:
            with atomic_path(path) as tmp:
                np.savez_compressed(tmp, **arrays)
        except OSError:
            pass  # a read-only home: compute again next time
        return arrays
