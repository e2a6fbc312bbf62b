"""What ``csvdnet predict`` / ``preprocess`` do with a DICOM folder, around the NIfTI pipeline.

Before: :func:`open_dicom_cohort` converts the studies into ``OUT/.csvdnet/dicom/`` (holding
the output folder's lock, so two runs never convert into one folder) and hands back ordinary
subjects. After predict: :func:`write_dicom_outputs` writes each finished subject's DICOM SEG,
SR and report objects (:func:`csvdnet.dicom.results.write_results`) into ``OUT/<subject>/dicom/``,
for the subjects predicted now and for earlier ones whose DICOM outputs are missing.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from csvdnet.dicom.source import DEFAULT_ID, WORK_DIR, dicom_sources, open_dicom
from csvdnet.errors import CsvdnetInputError

__all__ = ["DICOM_OUT", "check_out_outside", "open_dicom_cohort", "write_dicom_outputs"]

log = logging.getLogger(__name__)

DICOM_OUT = "dicom"
"""Sub-folder of a subject's output folder holding its DICOM objects."""


def check_out_outside(path: str | Path, out: str | Path) -> None:
    """Refuse an output folder inside the DICOM input folder, before anything is created.

    Raises:
        CsvdnetInputError: ``out`` is ``path`` or inside it.
    """
    if Path(path).resolve() in (Path(out).resolve(), *Path(out).resolve().parents):
        raise CsvdnetInputError(out, "the output folder is inside the DICOM input folder: "
                                     "choose an --out outside it (nothing is written into "
                                     "the input)")


def open_dicom_cohort(path: str | Path, out: str | Path, sequences: Sequence[str],
                      reference: str, *, rules: str | Path | None = None,
                      id_template: str = DEFAULT_ID, progress: bool = False
                      ) -> tuple[list[Any], dict[str, str]]:
    """The studies of a DICOM folder converted into ``out``'s work folder, under its lock;
    ``progress`` prints one line per study on stderr.

    Raises:
        CsvdnetOutputError: ``out`` is in use by another run.
        CsvdnetInputError: No DICOM image in ``path``, or a bad rules file / id template.
    """
    from csvdnet.inference.cohort import check_output_folder, output_lock

    check_out_outside(path, out)
    out = check_output_folder(out)
    with output_lock(out):
        return open_dicom(path, out / WORK_DIR, sequences, reference, rules=rules,
                          id_template=id_template, on_study=_show if progress else None)


def _show(subject: str, status: str, seconds: float) -> None:
    print(f"DICOM {subject}: {status} ({seconds:.1f} s)", file=sys.stderr, flush=True)


def write_dicom_outputs(out: str | Path, subjects: Iterable[Any], ids: Iterable[str], *,
                        model_id: str, model_sha256: str, revision: int = 0) -> dict[str, str]:
    """Write the DICOM objects of the finished subjects among ``subjects``.

    Args:
        out: predict's output folder (plain layout).
        subjects: The DICOM subjects (``source`` records from :func:`open_dicom_cohort`).
        ids: Subjects whose NIfTI outputs are finished (done now, or done before).
        model_id: The model's id.
        model_sha256: The model's sha256.
        revision: The rating number after the first (the DICOM node's re-ratings; see
            :func:`csvdnet.dicom.results.write_results`).

    Returns:
        Subject -> one line, for each subject whose DICOM objects could not be written
        (its NIfTI outputs stay; a rerun tries again).
    """
    from csvdnet.dicom.results import write_results
    from csvdnet.inference import outputs

    out = Path(out)
    wanted = set(ids)
    failures = {}
    for subject in subjects:
        if subject.id not in wanted or getattr(subject, "source", None) is None:
            continue
        subject_out = outputs.subject_dir(out, subject.id, False)
        dest = subject_out / DICOM_OUT
        if dest.is_dir() and any(dest.iterdir()):
            continue  # written by an earlier run of the same model (run.json guards that)
        try:
            written = write_results(subject_out, dicom_sources(subject.source), dest,
                                    model_id=model_id, model_sha256=model_sha256,
                                    revision=revision)
        except (CsvdnetInputError, OSError) as exc:
            failures[subject.id] = f"DICOM outputs not written: {exc}"
            log.debug("DICOM outputs of %s failed", subject.id, exc_info=True)
            continue
        log.info("%s: %d DICOM object(s) in %s", subject.id, len(written), dest)
    return failures
