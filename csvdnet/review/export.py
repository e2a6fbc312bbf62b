"""``csvdnet review export PRED_DIR --out COHORT``: reviewed subjects as a labelled cohort.

The cohort is the manifest form ``csvdnet train`` / ``csvdnet evaluate`` read (README "Cohorts")::

    COHORT/manifest.csv      subject, one column per sequence (the images predict read, by a
                             path relative to the manifest: nothing is copied) and per label
    COHORT/ratings.csv       reviewed grades, counts and Staals total
    COHORT/review.tsv        per subject: reviewer, when, decisions made, unsure findings
    COHORT/<subject>/labels/<task>.nii.gz   wmh, rssi, lacune: reviewed masks (uint8 0/1)
    COHORT/<subject>/labels/<task>.csv      cmb, epvs: reviewed points (x, y, z world mm, i, j, k,
                                            region, side)

Each exported subject's ``report.html`` (in PRED_DIR) gets the reviewed state beside the model's
(:mod:`csvdnet.review.page`). Only subjects whose review is done (every finding decided) are
written; a marker predict did not measure gets no label (its loss stays masked in training,
never faked). The cohort is built in a temporary folder that replaces ``COHORT`` only when
complete (:func:`csvdnet.fsutil.atomic_dir`); an existing ``COHORT`` is replaced only when it is
an earlier export (it holds ``review.tsv``) and holds none of the images the manifest names.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_dir, write_text_atomic
from csvdnet.io.labels import write_points
from csvdnet.io.nifti import save_nifti
from csvdnet.io.ratings import Ratings, write_ratings
from csvdnet.review.page import write_reviewed_section
from csvdnet.review.rating import RatingCache, reviewed_labels, reviewed_rating
from csvdnet.review.store import read_review, review_path, reviewers_of, status_of
from csvdnet.review.subject import ReviewSubject, list_subjects

__all__ = ["ExportResult", "export_cohort", "pick_reviewer"]

SEQUENCE_ORDER = ("flair", "t1", "t2", "swi", "dwi")


class ExportResult:
    def __init__(self, out: Path, written: list[str], skipped: dict[str, str]):
        self.out, self.written, self.skipped = out, written, skipped


def pick_reviewer(pred_dir: Path, subjects: list[str], reviewer: str | None) -> str:
    """The reviewer to export: the one given, else the only one who reviewed anything."""
    if reviewer is not None:
        return reviewer
    names = sorted({r for s in subjects for r in reviewers_of(pred_dir, s)})
    if not names:
        raise CsvdnetInputError(pred_dir, "no subject has a review (csvdnet review PRED_DIR first)")
    if len(names) > 1:
        raise CsvdnetInputError(pred_dir, f"reviewed by {', '.join(names)}: name one with "
                                          "--reviewer")
    return names[0]


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    except ValueError:  # another drive (Windows): an absolute path is still valid
        return os.path.abspath(path)


def export_cohort(pred_dir: Path, out: Path, reviewer: str | None = None,
                  cohort_sequences: dict[str, dict[str, Path]] | None = None) -> ExportResult:
    """Write the done reviews of ``pred_dir`` as a labelled cohort at ``out``.

    Raises:
        CsvdnetInputError: nothing to export, or a subject's files cannot be read (the cohort is
            then not written at all).
    """
    pred_dir, out = Path(pred_dir), Path(out)
    subjects = list_subjects(pred_dir)
    reviewer = pick_reviewer(pred_dir, subjects, reviewer)
    done: list[tuple[ReviewSubject, dict]] = []
    skipped: dict[str, str] = {}
    for sid in subjects:
        path = review_path(pred_dir, sid, reviewer)
        if not path.is_file():
            skipped[sid] = "not reviewed"
            continue
        review = read_review(path)
        subject = ReviewSubject.load(pred_dir, sid, (cohort_sequences or {}).get(sid))
        state = status_of(review, [f.id for f in subject.findings])
        if state != "done":
            skipped[sid] = state
            continue
        done.append((subject, review))
    if not done:
        raise CsvdnetInputError(pred_dir, f"no review by {reviewer} is done (every finding "
                                          "decided): nothing to export")
    # Replace only an earlier export (its review.tsv), never a cohort of images or anything else.
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / "review.tsv").is_file())):
        raise CsvdnetInputError(out, "exists and is not a cohort written by review export: "
                                     "refusing to replace it")
    for subject, _ in done:
        for path in subject.sequence_paths().values():
            if Path(os.path.abspath(path)).is_relative_to(os.path.abspath(out)):
                raise CsvdnetInputError(out, f"holds {path}, an image the export refers to")
    sequences = [s for s in SEQUENCE_ORDER
                 if any(s in subj.sequence_paths() for subj, _ in done)]
    tasks = [t for t in SEGMENTATION_TASKS + DETECTION_TASKS
             if any(t in subj.measured_tasks() for subj, _ in done)]
    cache = RatingCache()
    with atomic_dir(out) as tmp:
        rows, ratings, notes = [], {}, []
        for subject, review in done:
            rows.append(_write_subject(tmp, out, subject, review, sequences, tasks))
            rated = reviewed_rating(subject, review, cache)
            r = rated["measurements"]
            ratings[subject.id] = Ratings(
                fazekas_pv=r.fazekas_pv, fazekas_deep=r.fazekas_deep,
                epvs_bg_grade=r.epvs_bg_grade, cmb_count=r.cmb_count,
                lacune_count=r.lacune_count, rssi_count=r.rssi_count,
                total_score=rated["totals"]["staals-2014"])
            write_reviewed_section(subject.folder / "report.html", review["reviewer"],
                                   {"ratings": subject.model_ratings(),
                                    "totals": subject.model_totals()}, rated, review, "done")
            decisions = [v["decision"] for v in review["decisions"].values()]
            unsure = [k for k, v in review["decisions"].items() if v["decision"] == "unsure"]
            notes.append([subject.id, review["reviewer"], review["updated"],
                          str(decisions.count("accept")), str(decisions.count("reject")),
                          str(len(review["added"])), " ".join(unsure),
                          " ".join(f"{k}={v}" for k, v in sorted(review["grades"].items()))])
        _write_table(tmp / "manifest.csv", ["subject", *sequences, *tasks], rows, ",")
        write_ratings(tmp / "ratings.csv", ratings)
        _write_table(tmp / "review.tsv", ["subject", "reviewer", "updated", "accepted",
                                          "rejected", "added", "unsure", "grades_set"], notes, "\t")
    return ExportResult(out, [s.id for s, _ in done], skipped)


def _write_subject(tmp: Path, out: Path, subject: ReviewSubject, review: dict,
                   sequences: list[str], tasks: list[str]) -> list[str]:
    labels = reviewed_labels(subject, review)
    folder = tmp / subject.id / "labels"
    folder.mkdir(parents=True)
    row = [subject.id]
    paths = subject.sequence_paths()
    for name in sequences:
        path = paths.get(name)
        if path is not None and not Path(path).is_file():
            raise CsvdnetInputError(path, f"{subject.id}'s {name} image is not there (--cohort)")
        # Relative to the final manifest's folder (not the temporary one being built).
        row.append(_relative(Path(path), out) if path is not None else "")
    for task in tasks:
        if task in labels.masks:
            save_nifti(labels.masks[task].astype(np.uint8), subject.affine,
                       folder / f"{task}.nii.gz", dtype=np.uint8)
            row.append(f"{subject.id}/labels/{task}.nii.gz")
        elif task in labels.points:
            write_points(folder / f"{task}.csv", labels.points[task], affine=subject.affine,
                         columns={"region": labels.regions[task], "side": labels.sides[task]})
            row.append(f"{subject.id}/labels/{task}.csv")
        else:
            row.append("")
    return row


def _write_table(path: Path, header: list[str], rows: list[list[str]], delimiter: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
