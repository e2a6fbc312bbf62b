"""BIDS input: a raw BIDS dataset's anatomical and diffusion images as a cohort.

A folder is a BIDS dataset when it holds ``dataset_description.json``. Its subjects are the
``sub-<label>`` folders, each with optional ``ses-<label>`` sessions; every subject / session
becomes one csvdnet subject with id ``sub-<label>`` or ``sub-<label>_ses-<label>``. Images are
matched by BIDS suffix:

==========  =========================================================
sequence    files (``.nii`` or ``.nii.gz``)
==========  =========================================================
flair       ``anat/*_FLAIR``
t1          ``anat/*_T1w``
t2          ``anat/*_T2w``
swi         ``anat/*_swi`` or, failing that, ``anat/*_T2starw`` / ``*_T2star``
dwi         ``dwi/*_dwi`` (4-D series averaged over b = 800..1200 using the ``.bval``)
==========  =========================================================

When several files match one suffix (runs, acquisitions), the first in name order is used and
a warning names the others. A subject without the reference sequence is reported as a problem
of that subject alone. BIDS has no place for CSVD labels, so a BIDS cohort carries none, except
a **parcellation** for ``csvdnet predict --regions labels``: a derivatives segmentation of the
subject's T1w, ``derivatives/<pipeline>/sub-<label>[/ses-<label>]/anat/*_dseg.nii[.gz]`` with
its ``*_dseg.tsv`` lookup table (e.g. FreeSurfer or SynthSeg exported as BIDS derivatives),
becomes the subject's ``regions`` label, drawn on the T1 (one preferred by ``desc-aseg``, else
the first in name order, a warning naming the others).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Sequence

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.errors import CsvdnetInputError
from csvdnet.io.cohort import Cohort, Subject
from csvdnet.io.nifti import NIFTI_SUFFIXES, PathLike

__all__ = ["BIDS_SUFFIXES", "is_bids", "read_bids"]

log = logging.getLogger(__name__)

BIDS_SUFFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "flair": (("anat", "FLAIR"),),
    "t1": (("anat", "T1w"),),
    "t2": (("anat", "T2w"),),
    "swi": (("anat", "swi"), ("anat", "T2starw"), ("anat", "T2star")),
    "dwi": (("dwi", "dwi"),),
}
"""Sequence -> (datatype folder, BIDS suffix) in order of preference."""

_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def is_bids(path: PathLike) -> bool:
    """Whether ``path`` is a BIDS dataset folder (holds ``dataset_description.json``)."""
    return Path(path).is_dir() and (Path(path) / "dataset_description.json").is_file()


def _images(folder: Path, suffix: str) -> list[Path]:
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        for ext in NIFTI_SUFFIXES:
            if path.name.endswith(f"_{suffix}{ext}") and path.name.startswith("sub-"):
                found.append(path)
    return found


def _sequence_file(folder: Path, sequence: str, subject_id: str) -> Path | None:
    for datatype, suffix in BIDS_SUFFIXES[sequence]:
        candidates = _images(folder / datatype, suffix)
        if candidates:
            if len(candidates) > 1:
                log.warning("%s: %d %s images, using %s (also: %s)", subject_id,
                            len(candidates), suffix, candidates[0].name,
                            ", ".join(p.name for p in candidates[1:]))
            return candidates[0]
    return None


def _made_by_csvdnet(pipeline: Path) -> bool:
    """Whether a derivatives folder is csvdnet's own output (its dataset_description says so)."""
    import json

    try:
        description = json.loads((pipeline / "dataset_description.json").read_text("utf-8"))
        return any(str(g.get("Name", "")).lower() == "csvdnet"
                   for g in description.get("GeneratedBy", []) if isinstance(g, dict))
    except (OSError, ValueError, AttributeError):
        return False


def _parcellation(root: Path, session: Path, subject_id: str) -> Path | None:
    """The session's derivatives ``_dseg`` image that has its lookup table (module docs)."""
    derivatives = root / "derivatives"
    if not derivatives.is_dir():
        return None
    found = []
    for pipeline in sorted(p for p in derivatives.iterdir() if p.is_dir()):
        if _made_by_csvdnet(pipeline):
            continue  # csvdnet's own outputs (lesion and region maps) are no parcellation
        for path in _images(pipeline / session / "anat", "dseg"):
            stem = path.name[: -len(next(e for e in NIFTI_SUFFIXES if path.name.endswith(e)))]
            if (path.parent / f"{stem}.tsv").is_file():
                found.append(path)
    if not found:
        return None
    found.sort(key=lambda p: ("_desc-aseg_" not in p.name, str(p)))
    if len(found) > 1:
        log.warning("%s: %d parcellations (_dseg with a .tsv), using %s (also: %s)", subject_id,
                    len(found), found[0], ", ".join(str(p) for p in found[1:]))
    return found[0]


def _sessions(subject_folder: Path) -> list[tuple[str, Path]]:
    """``(id, folder)`` per session (or the subject folder itself when it has none)."""
    sessions = sorted(p for p in subject_folder.iterdir()
                      if p.is_dir() and p.name.startswith("ses-"))
    if not sessions:
        return [(subject_folder.name, subject_folder)]
    return [(f"{subject_folder.name}_{s.name}", s) for s in sessions]


def read_bids(path: PathLike, sequences: Sequence[str] = DEFAULT_SEQUENCES,
              reference: str = "flair") -> tuple[Cohort, dict[str, str]]:
    """The subjects / sessions of a BIDS dataset, and the ones that cannot be used.

    Args:
        path: The dataset folder (holding ``dataset_description.json``).
        sequences: Sequences to look for, in channel order (see :data:`BIDS_SUFFIXES`).
        reference: The sequence every subject needs.

    Returns:
        ``(cohort, problems)``: subjects with the reference sequence; subject id -> reason for
        the others.

    Raises:
        CsvdnetInputError: Not a BIDS dataset, an unknown sequence name, or no subject folder.
    """
    root = Path(os.path.abspath(path))
    if not is_bids(root):
        raise CsvdnetInputError(root, "not a BIDS dataset (no dataset_description.json)")
    unknown = [s for s in sequences if s not in BIDS_SUFFIXES]
    if unknown:
        raise CsvdnetInputError(root, f"no BIDS suffix known for sequence(s) "
                                      f"{', '.join(unknown)} (known: {', '.join(BIDS_SUFFIXES)})")
    if reference not in sequences:
        raise CsvdnetInputError(root, f"reference sequence {reference!r} is not one of the "
                                      f"sequences ({', '.join(sequences)})")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-"))
    if not folders:
        raise CsvdnetInputError(root, "BIDS dataset without any sub-<label> folder")
    subjects: list[Subject] = []
    problems: dict[str, str] = {}
    for folder in folders:
        if not _LABEL.match(folder.name[4:]):
            problems[folder.name] = f"{folder}: subject label is not alphanumeric"
            continue
        for subject_id, session in _sessions(folder):
            found = {name: _sequence_file(session, name, subject_id) for name in sequences}
            if found[reference] is None:
                wanted = " or ".join(f"{d}/*_{s}.nii[.gz]" for d, s in BIDS_SUFFIXES[reference])
                problems[subject_id] = f"{session}: no {reference} image ({wanted})"
                continue
            subject = Subject(id=subject_id, sequences={
                name: p for name, p in found.items() if p is not None})
            parcellation = _parcellation(root, session.relative_to(root), subject_id)
            if parcellation is not None:
                subject.labels["regions"] = parcellation
                subject.label_sequence["regions"] = "t1" if "t1" in subject.sequences \
                    else reference
            subjects.append(subject)
    if not subjects and not problems:
        raise CsvdnetInputError(root, "no images found in the BIDS dataset")
    return Cohort(root=root, subjects=subjects, sequences=tuple(sequences),
                  reference=reference), problems
