"""A folder of DICOM studies as csvdnet subjects: index, select, convert, record.

:func:`open_dicom` turns every study of a DICOM folder into a :class:`csvdnet.io.Subject` whose
sequences are the NIfTI files converted from the chosen series, in a work folder the caller
owns (``OUT/.csvdnet/dicom/<subject>/``; never the input folder). Each subject carries
``source``, the record of what was chosen and why (study, rules, per channel the series number,
description, UID, files and reason, the series set aside); it is written to the work folder as
``selection.json`` and goes into ``report.json`` (``dicom_source``). A study that cannot be
used is one line in ``problems`` and the others go on. A rerun reuses a work folder whose
``selection.json`` has the same fingerprint (rules, series, instances).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import string
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from csvdnet.dicom.convert import convert_selection
from csvdnet.dicom.index import DicomIndex, Study, index_folder, looks_like_dicom_folder
from csvdnet.dicom.rules import SeriesRules, load_rules
from csvdnet.dicom.select import Selection, select_study
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_path, write_text_atomic

__all__ = ["DEFAULT_ID", "WORK_DIR", "dicom_sources", "is_dicom_input", "open_dicom",
           "subject_id"]

log = logging.getLogger(__name__)

DEFAULT_ID = "{patient_id}_{study_date}_{uid_hash}"
"""Subject id of a study; fields: patient_id, study_date, uid_hash (6 hex of the
StudyInstanceUID's sha1), accession, study_id, study_uid."""
WORK_DIR = Path(".csvdnet") / "dicom"
"""Where, inside an output folder, the studies are converted (one folder per subject)."""
_ID_FIELDS = {"patient_id", "study_date", "uid_hash", "accession", "study_id", "study_uid"}


def is_dicom_input(path: str | Path) -> bool:
    """Whether ``path`` is a folder of DICOM files (not subject folders of NIfTI)."""
    return looks_like_dicom_folder(Path(path))


def check_id_template(template: str) -> str:
    """``template`` if it only uses known fields; else CsvdnetInputError naming it."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise CsvdnetInputError("--dicom-id", f"bad template {template!r}: {exc}") from None
    unknown = fields - _ID_FIELDS
    if unknown or not fields:
        raise CsvdnetInputError("--dicom-id", f"template {template!r} uses unknown field(s) "
                                              f"{', '.join(sorted(unknown)) or '(none)'}; "
                                              f"known: {', '.join(sorted(_ID_FIELDS))}")
    return template


def subject_id(study: Study, template: str = DEFAULT_ID) -> str:
    """The subject id of ``study``: ``template`` filled from its header, then made safe for a
    folder name (characters other than letters, digits, ``.``, ``_``, ``-`` become ``-``)."""
    h = study.header
    values = {"patient_id": str(h.get("PatientID", "") or "unknown"),
              "study_date": str(h.get("StudyDate", "") or "nodate"),
              "uid_hash": hashlib.sha1(study.uid.encode()).hexdigest()[:6],
              "accession": str(h.get("AccessionNumber", "") or "noaccession"),
              "study_id": str(h.get("StudyID", "") or "nostudyid"),
              "study_uid": study.uid}
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", template.format(**values)).strip("-.")
    return text or values["uid_hash"]


def _fingerprint(selection: Selection, rules: SeriesRules) -> str:
    digest = hashlib.sha256(rules.sha256.encode())
    for name, chosen in sorted(selection.chosen.items()):
        digest.update(f"{name}:{chosen.series.uid}".encode())
        for instance in chosen.instances:
            stat = instance.path.stat()
            digest.update(f"{instance.header.get('SOPInstanceUID')}:{stat.st_size}:"
                          f"{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _record(selection: Selection, rules: SeriesRules, subject: str,
            fingerprint: str) -> dict[str, Any]:
    h = selection.study.header
    return {"kind": "dicom", "subject": subject, "study_uid": selection.study.uid,
            "patient_id": str(h.get("PatientID", "") or ""),
            "study_date": str(h.get("StudyDate", "") or ""),
            "accession": str(h.get("AccessionNumber", "") or ""),
            "study_description": str(h.get("StudyDescription", "") or ""),
            "rules": {"path": str(rules.path), "sha256": rules.sha256},
            "series": {name: chosen.record() for name, chosen in selection.chosen.items()},
            "excluded": dict(selection.excluded), "fingerprint": fingerprint}


def dicom_sources(record: dict[str, Any]) -> dict[str, list[Path]]:
    """``sources`` for :func:`csvdnet.dicom.results.write_results` from a subject's record:
    network channel -> its DICOM files (``dwi``: the b1000 images)."""
    return {name: [Path(p) for p in series["files"]]
            for name, series in record["series"].items() if not name.startswith("dwi_b")}


def _reusable(work: Path, fingerprint: str, channels: Sequence[str]) -> dict[str, Path] | None:
    try:
        old = json.loads((work / "selection.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if old.get("fingerprint") != fingerprint:
        return None
    paths = {name: work / f"{name}.nii" for name in old.get("series", {})}
    return paths if all(p.is_file() for p in paths.values()) else None


def _write_skipped(index: DicomIndex, work_root: Path) -> None:
    if not index.skipped:
        return
    with atomic_path(work_root / "skipped_files.tsv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["file", "reason"])
            writer.writerows([str(p), r] for p, r in sorted(index.skipped.items()))
    names = ", ".join(f"{p.relative_to(index.root)} ({r})"
                      for p, r in list(sorted(index.skipped.items()))[:3])
    log.warning("%s: %d file(s) are not usable DICOM images and were skipped: %s%s (all in %s)",
                index.root, len(index.skipped), names, " ..." if len(index.skipped) > 3 else "",
                work_root / "skipped_files.tsv")


def _unique_ids(studies: list[Study], template: str) -> list[str]:
    """Each study's subject id; studies that share one get ``_<uid hash>`` appended (warned)."""
    ids = [subject_id(study, template) for study in studies]
    shared = {i for i in ids if ids.count(i) > 1}
    for sid in sorted(shared):
        log.warning("%d studies have the subject id %s (--dicom-id %s): each gets _<6 hex of "
                    "its StudyInstanceUID> appended", ids.count(sid), sid, template)
    return [f"{sid}_{subject_id(study, '{uid_hash}')}" if sid in shared else sid
            for study, sid in zip(studies, ids)]


def open_dicom(path: str | Path, work_root: str | Path, sequences: Sequence[str],
               reference: str, *, rules: SeriesRules | str | Path | None = None,
               id_template: str = DEFAULT_ID,
               on_study: Callable[[str, str, float], None] | None = None
               ) -> tuple[list[Any], dict[str, str]]:
    """Every study of a DICOM folder as a subject with converted NIfTI sequences.

    Args:
        path: Folder holding DICOM files in any layout (studies of several patients welcome).
        work_root: Folder the studies are converted into (``<work_root>/<subject>/``).
        sequences: The channels wanted, in order (the model's).
        reference: The channel every study must have.
        rules: Selection rules (a loaded set, a YAML file, or None for the shipped one).
        id_template: Subject id template (:data:`DEFAULT_ID`).
        on_study: Called as ``(subject, status, seconds)`` per study (progress).

    Returns:
        ``(subjects, problems)``: :class:`csvdnet.io.Subject` records (``source`` set), and
        subject id -> one line for each study that cannot be predicted.

    Raises:
        CsvdnetInputError: The folder holds no DICOM image, or the rules file is bad.
    """
    from csvdnet.io import Subject

    path, work_root = Path(path), Path(work_root)
    rules = rules if isinstance(rules, SeriesRules) else load_rules(rules)
    check_id_template(id_template)
    index = index_folder(path)
    work_root.mkdir(parents=True, exist_ok=True)
    _write_skipped(index, work_root)
    if not index.studies:
        raise CsvdnetInputError(path, f"no DICOM image in the folder ({len(index.skipped)} "
                                      "file(s) skipped, see the warning)")
    subjects, problems = [], {}
    for study, sid in zip(index.studies, _unique_ids(index.studies, id_template)):
        started = time.perf_counter()
        try:
            selection = select_study(study, rules, tuple(sequences), reference)
            work = work_root / sid
            fingerprint = _fingerprint(selection, rules)
            paths = _reusable(work, fingerprint, sequences)
            if paths is None:
                paths = convert_selection(selection, work, path)
            record = _record(selection, rules, sid, fingerprint)
            write_text_atomic(work / "selection.json", json.dumps(record, indent=1) + "\n")
        except CsvdnetInputError as exc:
            problems[sid] = str(exc)
            if on_study:  # said once: by the progress line, else by the log
                on_study(sid, f"failed: {exc}", time.perf_counter() - started)
            else:
                log.warning("%s", exc)
            continue
        subject = Subject(id=sid, sequences={name: paths[name] for name in sequences
                                             if name in paths})
        subject.source = record
        subjects.append(subject)
        if on_study:
            on_study(sid, "converted", time.perf_counter() - started)
    return subjects, problems
