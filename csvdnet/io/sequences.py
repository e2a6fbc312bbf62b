"""Sequence file names: which NIfTI file holds which sequence (the NIfTI suffixes, names, aliases).

The one place both the cohort readers (:mod:`csvdnet.io.cohort`) and the image loader
(:mod:`csvdnet.io.nifti`, which refuses a 4-D file named after a 3-D sequence) read file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

NIFTI_SUFFIXES = (".nii.gz", ".nii")

SEQUENCE_ALIASES: dict[str, tuple[str, ...]] = {
    "flair": ("flair", "t2_flair", "t2-flair", "t2flair", "flair_t2"),
    "t1": ("t1", "t1w", "t1_w", "t1-w", "mprage", "t1_mprage"),
    "t2": ("t2", "t2w", "t2_w", "t2-w", "t2_tse"),
    "swi": ("swi", "t2star", "t2_star", "t2-star", "t2s", "gre", "t2star_gre"),
    "dwi": ("dwi", "b1000", "dwi_b1000", "trace"),
}
"""File names (without ``.nii[.gz]``, compared case-insensitively) taken as each default
sequence in a subject folder. A sequence outside this table matches its own name only."""


def _nifti_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in NIFTI_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def sequence_of_file(name: str, sequences: Sequence[str]) -> str | None:
    """The sequence a file named ``name`` holds, by the names in :data:`SEQUENCE_ALIASES`.

    Args:
        name: A file name such as ``T2_FLAIR.nii.gz``; case does not matter.
        sequences: The sequences asked for.

    Returns:
        The sequence name, or None for a file that is not a NIfTI named after one of them.
    """
    suffix = _nifti_suffix(Path(name))
    if suffix is None:
        return None
    stem = name[:-len(suffix)].lower()
    return next((seq for seq in sequences
                 if stem in SEQUENCE_ALIASES.get(seq, ()) or stem == seq.lower()), None)
