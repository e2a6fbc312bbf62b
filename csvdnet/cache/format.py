"""The preprocessed cache's on-disk format: layout, format names and versions, subject folders.

Layout (docs/contracts.md)::

    <cache>/index.json          format, version, channels, preprocess config, subjects, failed
    <cache>/<subject>/image.npy       float32 (X, Y, Z, C)
    <cache>/<subject>/meta.json       PreprocessMeta.to_dict()
    <cache>/<subject>/<task>.npy      uint8 (X, Y, Z) masks: wmh, rssi, lacune, regions
    <cache>/<subject>/subject.json    id, labels, points (working voxels), ratings, spacing

Written by :mod:`csvdnet.cache.write`, read by :mod:`csvdnet.cache.read`; ``PREPROCESS_FORMAT``
and ``PREPROCESS_VERSION`` name the preprocessing record a trained model keeps
(:func:`csvdnet.cache.read.preprocess_record`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from csvdnet import SEGMENTATION_TASKS
from csvdnet.errors import CsvdnetInputError

__all__ = [
    "INDEX_FORMAT",
    "INDEX_VERSION",
    "MASK_LABELS",
    "PREPROCESS_FORMAT",
    "PREPROCESS_VERSION",
    "subject_dir",
]

INDEX_FORMAT = "csvdnet-cache"
INDEX_VERSION = 1
PREPROCESS_FORMAT = "csvdnet-preprocess"
PREPROCESS_VERSION = 1
MASK_LABELS = SEGMENTATION_TASKS + ("regions",)
"""Labels stored as working-grid ``<name>.npy`` arrays (``regions`` as a uint8 label map)."""

_SUBJECT_FILES = ("image.npy", "meta.json", "subject.json")


def subject_dir(cache_dir: Path, subject_id: str) -> Path:
    if not subject_id or subject_id.startswith(".") or Path(subject_id).name != subject_id:
        raise CsvdnetInputError(cache_dir, f"{subject_id!r} is not a usable subject id (it "
                                           f"names a folder: no separators, no leading dot)")
    return cache_dir / subject_id


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CsvdnetInputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CsvdnetInputError(path, f"not readable JSON ({exc})") from None
