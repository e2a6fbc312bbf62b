"""Tiny NIfTI files for the io tests: a ramp volume, an LPS affine, exact header writing."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csvdnet.errors import CsvdnetInputError

SHAPE = (8, 9, 10)
RAMP = np.arange(720, dtype=np.float32).reshape(SHAPE)  # RAMP[i, j, k] = 90 i + 10 j + k
# Left-posterior-superior voxel axes: i runs to the left, j to the back, in RAS world mm.
LPS = np.array([[-1.5, 0, 0, 90], [0, -2, 0, 120], [0, 0, 2.5, -60], [0, 0, 0, 1]])


def write_nifti(path: Path, data: np.ndarray, sform: np.ndarray | None = np.eye(4), *,
                qform: np.ndarray | None = None, cls: type = nib.Nifti1Image) -> Path:
    """Write ``data`` with exactly these header transforms (code 1 each, code 0 when None)."""
    data = np.asarray(data)
    header = cls.header_class()
    header.set_data_dtype(data.dtype)
    header.set_sform(sform, code=0 if sform is None else 1)  # written as is, even if invalid
    header.set_qform(qform, code=0 if qform is None else 1)
    nib.save(cls(data, None, header=header), path)
    return path


def raises_input_error(path: Path, reason: str):
    """pytest.raises for a CsvdnetInputError whose message is ``<path>: <reason regex>``."""
    return pytest.raises(CsvdnetInputError, match=re.escape(str(path)) + ": " + reason)
