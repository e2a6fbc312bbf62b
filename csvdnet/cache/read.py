"""Reading the preprocessed cache: its index, one subject, and the preprocessing record.

The layout is in :mod:`csvdnet.cache.format`; training reads a cache through
:func:`load_cache` and :func:`load_cached_subject`, and a run keeps
:func:`preprocess_record` as ``preprocess.json``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from csvdnet.cache.format import (INDEX_FORMAT, INDEX_VERSION, MASK_LABELS, PREPROCESS_FORMAT,
                                  PREPROCESS_VERSION, _read_json, subject_dir)
from csvdnet import SCORE_TASK
from csvdnet.errors import CsvdnetInputError
from csvdnet.preprocessing import PreprocessMeta

__all__ = ["CachedSubject", "labelled_tasks", "load_cache", "load_cached_subject", "open_cache",
           "preprocess_record"]


@dataclasses.dataclass
class CachedSubject:
    """One preprocessed subject, arrays memory-mapped read-only.

    Attributes:
        id: Subject id.
        image: float32 ``(X, Y, Z, C)`` working-grid image.
        meta: Its preprocessing meta.
        masks: Label name -> uint8 ``(X, Y, Z)`` working-grid mask, for those present.
        points: Task -> ``(N, 3)`` float working-voxel coordinates, for those present.
        ratings: The subject's ratings (``None`` values = not rated), or None when unrated.
        labels: Tasks with a label (any of ``wmh, rssi, lacune, cmb, epvs``).
    """

    id: str
    image: np.ndarray
    meta: PreprocessMeta
    masks: dict[str, np.ndarray]
    points: dict[str, np.ndarray]
    ratings: dict[str, int | None] | None
    labels: tuple[str, ...]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Working voxel size in mm."""
        return self.meta.spacing


def load_cache(cache_dir: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """Read a cache's ``index.json``.

    Args:
        cache_dir: The cache folder.

    Returns:
        ``(index, subject ids)``: the index as written, and the subjects available.

    Raises:
        CsvdnetInputError: The folder is missing or not a csvdnet cache, or its index is
            unreadable or of another version.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise CsvdnetInputError(cache_dir, "cache folder not found")
    index_path = cache_dir / "index.json"
    if not index_path.is_file():
        raise CsvdnetInputError(cache_dir, "not a csvdnet cache (no index.json); write one with "
                                           "`csvdnet preprocess`")
    index = _read_json(index_path)
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise CsvdnetInputError(index_path, f"not a csvdnet cache index (format is not "
                                            f"{INDEX_FORMAT!r})")
    if index.get("version") != INDEX_VERSION:
        raise CsvdnetInputError(index_path, f"cache version {index.get('version')!r} is not "
                                            f"supported (expected {INDEX_VERSION}); rewrite it")
    return index, list(index.get("subjects", []))


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CsvdnetInputError(path, f"not a readable .npy array ({exc})") from None


def load_cached_subject(cache_dir: str | os.PathLike, subject_id: str) -> CachedSubject:
    """Read one preprocessed subject (arrays memory-mapped, read-only).

    Args:
        cache_dir: The cache folder.
        subject_id: The subject.

    Returns:
        The subject.

    Raises:
        CsvdnetInputError: The subject is not in the cache or one of its files is unreadable.
    """
    folder = subject_dir(Path(cache_dir), subject_id)
    if not (folder / "subject.json").is_file():
        raise CsvdnetInputError(folder, f"subject {subject_id} is not in the cache "
                                        f"(no subject.json)")
    record = _read_json(folder / "subject.json")
    meta_path = folder / "meta.json"
    try:
        meta = PreprocessMeta.from_dict(_read_json(meta_path))
    except (KeyError, TypeError, ValueError) as exc:
        raise CsvdnetInputError(meta_path, f"not a preprocessing meta ({exc!r})") from None
    return CachedSubject(
        id=record["id"],
        image=_load_array(folder / "image.npy"),
        meta=meta,
        masks={name: _load_array(folder / f"{name}.npy") for name in MASK_LABELS
               if (folder / f"{name}.npy").is_file()},
        points={task: np.asarray(coords, dtype=np.float64).reshape(-1, 3)
                for task, coords in record["points"].items()},
        ratings=record["ratings"],
        labels=tuple(record["labels"]),
    )


def preprocess_record(cache_dir: str | os.PathLike,
                      channels: Sequence[str] | None = None) -> dict[str, Any]:
    """The cache's preprocessing, as a model trained on it must repeat it (``preprocess.json``).

    Args:
        cache_dir: The cache folder.
        channels: The network's input channels, in order (a subset / reordering of the cache's;
            default: all of the cache's).

    Returns:
        ``{"format": "csvdnet-preprocess", "version": 1, "channels": [...], "cache_channels":
        [...], "preprocess": {PreprocessConfig as written in index.json}, "pad_multiple": int}``.

    Raises:
        CsvdnetInputError: Not a cache, or a channel the cache does not hold.
    """
    index, _ = load_cache(cache_dir)
    cache_channels = [str(c) for c in index["channels"]]
    chosen = cache_channels if channels is None else [str(c) for c in channels]
    missing = [c for c in chosen if c not in cache_channels]
    if missing:
        raise CsvdnetInputError(cache_dir, f"no channel {', '.join(missing)} in the cache (it has "
                                           f"{', '.join(cache_channels)})")
    preprocess = dict(index["preprocess"])
    return {"format": PREPROCESS_FORMAT, "version": PREPROCESS_VERSION, "channels": chosen,
            "cache_channels": cache_channels, "preprocess": preprocess,
            "pad_multiple": int(preprocess["pad_multiple"])}


def open_cache(path: str | None, key: str, channels: Sequence[str],
               stride: int) -> tuple[Path, list[str]]:
    """Check that ``path`` is a cache with ``channels`` whose volumes fit the model stride."""
    if not path:
        raise CsvdnetInputError(key, "not set: name the preprocessed cache "
                                     "(written by `csvdnet preprocess`)")
    cache = Path(path)
    index, ids = load_cache(cache)
    missing = [c for c in channels if c not in index["channels"]]
    if missing:
        raise CsvdnetInputError(cache, f"data.channels names {', '.join(missing)}, which the "
                                       f"cache does not hold (it has "
                                       f"{', '.join(index['channels'])})")
    if not ids:
        raise CsvdnetInputError(cache, "the cache holds no subjects")
    multiple = int(index["preprocess"]["pad_multiple"])
    if multiple % stride:
        raise CsvdnetInputError(cache, f"volumes are padded to multiples of {multiple}, not of "
                                       f"2 ** model.depth = {stride}: preprocess again with "
                                       f"preprocess.pad_multiple={stride}")
    return cache, sorted(ids)


def labelled_tasks(cache: Path, ids: Sequence[str]) -> set[str]:
    """Tasks at least one of ``ids`` carries a label for (``score``: a rated total score)."""
    found: set[str] = set()
    for subject_id in ids:
        subject = load_cached_subject(cache, subject_id)
        found.update(subject.labels)
        if (subject.ratings or {}).get("total_score") is not None:
            found.add(SCORE_TASK)
    return found
