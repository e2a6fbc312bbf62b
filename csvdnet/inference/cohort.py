"""Predicting a whole cohort: skip what is done, record what fails, keep going.

:func:`predict_cohort` runs a :class:`~csvdnet.inference.predictor.Predictor` over subjects
and writes, beside the per-subject outputs (:mod:`csvdnet.inference.outputs`):

- ``scores.tsv``: one row per finished subject (every rating, each rule set's total,
  ``ordinal_total`` with its class probabilities, the agreement flag, seconds), rewritten
  atomically after every subject so a killed run loses at most the subject in flight;
- ``errors.tsv``: one row per subject that failed in this run (subject, error type, message).

A subject counts as done when its report and its ``scores.tsv`` row both exist; a rerun skips
it. A subject that fails is recorded and the others go on; only a problem with the whole run
(the model, the output folder) stops it.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_path
from csvdnet.inference import outputs

__all__ = ["CohortPlan", "CohortSummary", "cap_jobs", "describe_error", "plan_cohort",
           "predict_cohort", "score_row", "usable_cpus", "write_tables", "SCORE_COLUMNS"]

log = logging.getLogger(__name__)

MEASUREMENT_COLUMNS = ("fazekas_pv", "fazekas_deep", "epvs_bg_count", "epvs_bg_grade",
                       "epvs_cso_count", "epvs_cso_grade", "cmb_count", "cmb_lobar", "cmb_deep",
                       "cmb_infratentorial", "lacune_count", "rssi_count")
QUANTITY_COLUMNS = ("wmh_volume_ml", "wmh_periventricular_ml", "wmh_deep_ml",
                    "lacune_volume_ml", "rssi_volume_ml")


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity where the system tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cap_jobs(jobs: int) -> tuple[int, str | None]:
    """``--jobs`` capped at the usable CPU cores, and the sentence saying so (None if not capped).

    More subjects in flight than cores compete for the same cores (each one's preprocessing and
    network step keep a core busy) and hold every one's volumes in memory at once.
    """
    cpus = usable_cpus()
    if jobs <= cpus:
        return jobs, None
    return cpus, (f"--jobs {jobs} capped at {cpus} (the CPU cores this process may use): more "
                  "subjects in flight would only hold more volumes in memory")


def _rule_column(rule_set: str) -> str:
    """``staals-2014`` -> ``staals_total``; ``caa-svd-2016`` -> ``caa_svd_total``."""
    stem = rule_set.rsplit("-", 1)[0] if rule_set[-4:].isdigit() else rule_set
    return stem.replace("-", "_") + "_total"


def score_columns(rule_sets: Sequence[str], classes: int) -> list[str]:
    """The columns of ``scores.tsv`` for these rule sets and ordinal classes."""
    return (["subject", *MEASUREMENT_COLUMNS, *QUANTITY_COLUMNS]
            + [_rule_column(r) for r in rule_sets]
            + ["ordinal_total"] + [f"ordinal_p{k}" for k in range(classes)]
            + ["agreement", "seconds"])


SCORE_COLUMNS = score_columns(("staals-2014", "caa-svd-2016"), 5)
"""The columns with the default rule sets and a five-class ordinal head."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def score_row(result: Any) -> dict[str, str]:
    """One subject's ``scores.tsv`` row from its :class:`SubjectResult`."""
    m = result.measurements
    row = {"subject": result.subject}
    row.update({name: _cell(getattr(m, name, None)) for name in MEASUREMENT_COLUMNS})
    row.update({name: _cell(result.quantities.get(name)) for name in QUANTITY_COLUMNS})
    row.update({_rule_column(name): _cell(s.total) for name, s in result.scores.items()})
    row["ordinal_total"] = _cell(result.ordinal.total)
    row.update({f"ordinal_p{k}": _cell(p)
                for k, p in enumerate(result.ordinal.class_probabilities)})
    row["agreement"] = _cell(result.agreement)
    row["seconds"] = _cell(sum(result.timings.values()))
    return row


@dataclasses.dataclass
class CohortSummary:
    """What a cohort run did.

    Attributes:
        done: Subjects predicted in this run.
        skipped: Subjects already done before it.
        failed: Subject -> error message.
        seconds: Subject -> seconds (this run's subjects).
    """

    done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def _read_rows(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["subject"]: row for row in csv.DictReader(handle, delimiter="\t")
                if row.get("subject")}


def _write_rows(path: Path, columns: list[str], rows: Iterable[dict[str, str]]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns, delimiter="\t", extrasaction="ignore",
                                    lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(error, message)`` of a subject's failure as ``errors.tsv`` records it: ``input`` for a
    :class:`~csvdnet.errors.CsvdnetInputError`, else the exception type with its last frame."""
    if isinstance(exc, CsvdnetInputError):
        return "input", str(exc)
    # Not the user's input: keep the last frame so a bug report can point at it.
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    return type(exc).__name__, f"{exc}{where}"


@dataclasses.dataclass
class CohortPlan:
    """What a cohort run has to do, decided before any subject is predicted (:func:`plan_cohort`).

    Attributes:
        out: The output folder.
        columns: The columns of ``scores.tsv``.
        rows: ``scores.tsv`` rows kept from earlier runs (subjects done, and rows of subjects
            that are not in this input), by subject.
        todo: Subjects to predict.
        skipped: Subjects already done.
        order: Subject ids in input order, then the ids of ``problems``.
        errors: ``errors.tsv`` rows of the subjects found unusable before prediction.
    """

    out: Path
    columns: list[str]
    rows: dict[str, dict[str, str]]
    todo: list[Any]
    skipped: list[str]
    order: list[str]
    errors: list[dict[str, str]]


def plan_cohort(subjects: Sequence[Any], out: str | Path, columns: list[str], *,
                bids: bool = False, source: Path | None = None, overwrite: bool = False,
                problems: dict[str, str] | None = None,
                done_rows: dict[str, dict[str, str]] | None = None) -> CohortPlan:
    """Prepare ``out`` for a cohort run and decide what it has to do.

    Creates ``out``, removes what a killed run was writing (``.*.part*``), writes the BIDS
    ``dataset_description.json``, reads ``scores.tsv`` and sorts the subjects into done (report
    and row both there) and to do.

    Args:
        subjects: :class:`csvdnet.io.Subject` records.
        out: Output folder.
        columns: ``scores.tsv`` columns (:func:`score_columns`).
        bids: BIDS derivatives layout.
        source: The input dataset (for ``dataset_description.json``).
        overwrite: Redo subjects that are already done.
        problems: Subjects found unusable before prediction (id -> reason).
        done_rows: Further rows of finished subjects (an engine's record of subjects a failed
            job finished before it could write ``scores.tsv``); they count as ``scores.tsv``'s.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.rglob(".*.part*"):  # a killed run's half-written folders / files
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    if bids:
        outputs.write_dataset_description(out, source or out)
    rows = _read_rows(out / "scores.tsv")
    rows.update(done_rows or {})
    skipped, todo = [], []
    for subject in subjects:
        if (not overwrite and subject.id in rows
                and outputs.is_done(out, subject.id, bids)):
            skipped.append(subject.id)
        else:
            rows.pop(subject.id, None)
            todo.append(subject)
    order = [s.id for s in subjects]
    errors = [{"subject": i, "error": "input", "message": m} for i, m in (problems or {}).items()]
    order += [i for i in (problems or {}) if i not in order]
    return CohortPlan(out=out, columns=list(columns), rows=rows, todo=todo, skipped=skipped,
                      order=order, errors=errors)


def _ordered_rows(plan: CohortPlan) -> list[dict[str, str]]:
    """``scores.tsv`` rows: this input's subjects in input order, then earlier runs' others."""
    return ([plan.rows[i] for i in plan.order if i in plan.rows]
            + [r for i, r in plan.rows.items() if i not in plan.order])


def write_tables(plan: CohortPlan, new_rows: dict[str, dict[str, str]],
                 failures: Iterable[dict[str, str]]) -> None:
    """Write ``scores.tsv`` and ``errors.tsv`` at the end of a run whose subjects finished
    elsewhere (an engine's workers): the same files :func:`predict_cohort` leaves.

    Args:
        plan: The run's plan (its ``rows`` are updated with ``new_rows``).
        new_rows: Subject -> :func:`score_row` of the subjects predicted in this run.
        failures: ``errors.tsv`` rows (subject, error, message) of the subjects that failed.
    """
    scores_path = plan.out / "scores.tsv"
    plan.rows.update(new_rows)
    if new_rows or not scores_path.exists():
        _write_rows(scores_path, plan.columns, _ordered_rows(plan))
    errors = plan.errors + [e for e in failures
                            if e["subject"] not in {p["subject"] for p in plan.errors}]
    errors.sort(key=lambda e: plan.order.index(e["subject"]))
    _write_rows(plan.out / "errors.tsv", ["subject", "error", "message"], errors)


def predict_cohort(predictor: Any, subjects: Sequence[Any], out: str | Path, *,
                   bids: bool = False, source: Path | None = None, jobs: int = 1,
                   overwrite: bool = False, problems: dict[str, str] | None = None,
                   on_subject: Callable[[str, str, float], None] | None = None
                   ) -> CohortSummary:
    """Predict every subject not yet done into ``out``.

    Args:
        predictor: A loaded predictor.
        subjects: :class:`csvdnet.io.Subject` records.
        out: Output folder (created).
        bids: Write a BIDS derivatives dataset (subject ids ``sub-X[_ses-Y]``).
        source: The input dataset (for ``dataset_description.json``'s SourceDatasets).
        jobs: Subjects in flight at once (threads: preprocessing and the network overlap).
        overwrite: Redo subjects that are already done.
        problems: Subjects found unusable before prediction (id -> reason): recorded in
            ``errors.tsv`` with the subjects that fail here.
        on_subject: Called as ``(subject, status, seconds)`` after each subject, status
            ``"done"``, ``"skipped"`` or ``"failed: <message>"`` (progress display).

    Returns:
        What was done, skipped and failed.
    """
    plan = plan_cohort(subjects, out, score_columns(predictor.rule_sets, predictor.score_classes),
                       bids=bids, source=source, overwrite=overwrite, problems=problems)
    out, rows, errors = plan.out, plan.rows, plan.errors
    scores_path, errors_path = out / "scores.tsv", out / "errors.tsv"
    summary = CohortSummary(skipped=list(plan.skipped))
    if on_subject:
        for subject_id in plan.skipped:
            on_subject(subject_id, "skipped", 0.0)

    def run(subject: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        result = predictor.predict(subject)
        outputs.write_subject(result, out, bids=bids)
        return result, time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run, subject): subject for subject in plan.todo}
        for future in concurrent.futures.as_completed(futures):
            subject = futures[future]
            try:
                result, seconds = future.result()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # a bad subject never stops the cohort
                kind, message = describe_error(exc)
                summary.failed[subject.id] = message
                errors.append({"subject": subject.id, "error": kind, "message": message})
                log.debug("subject %s failed", subject.id, exc_info=True)
                if on_subject:
                    on_subject(subject.id, f"failed: {message}", 0.0)
                continue
            rows[subject.id] = score_row(result)
            summary.done.append(subject.id)
            summary.seconds[subject.id] = seconds
            _write_rows(scores_path, plan.columns, _ordered_rows(plan))
            if on_subject:
                on_subject(subject.id, "done", seconds)
    if not rows and not scores_path.exists():
        _write_rows(scores_path, plan.columns, [])
    errors.sort(key=lambda e: plan.order.index(e["subject"]))
    _write_rows(errors_path, ["subject", "error", "message"], errors)
    return summary


def progress_printer(total: int, stream: Any = None) -> Callable[[str, str, float], None]:
    """An ``on_subject`` callback: one line per subject with the count, its time and an ETA.

    The ETA is the remaining subjects times the mean wall time between finished subjects (so
    it already accounts for subjects predicted in parallel).
    """
    stream = stream or sys.stderr
    seen = [0]
    started = time.perf_counter()
    finished: list[float] = []

    def show(subject: str, status: str, seconds: float) -> None:
        seen[0] += 1
        line = f"[{seen[0]}/{total}] {subject}: {status}"
        if status == "done":
            finished.append(time.perf_counter())
            per_subject = (finished[-1] - started) / len(finished)
            remaining = per_subject * (total - seen[0])
            line += f" in {seconds:.1f} s"
            if seen[0] < total:
                line += f", about {remaining / 60:.0f} min left" if remaining >= 90 else \
                    f", about {remaining:.0f} s left"
        print(line, file=stream, flush=True)

    return show


def open_input(path: str | Path, sequences: Sequence[str], reference: str
               ) -> tuple[list[Any], dict[str, str], bool]:
    """The subjects of what ``csvdnet predict`` was pointed at.

    ``path`` may be a BIDS dataset (``dataset_description.json``), one subject's folder (holding
    its reference sequence itself, named as :func:`csvdnet.io.find_sequences` reads names), a
    cohort folder of subject folders, or a manifest CSV.

    Returns:
        ``(subjects, problems, bids)``: the subjects, subject id -> reason for subjects that
        cannot be predicted, and whether the input is BIDS.

    Raises:
        CsvdnetInputError: The path is none of these, or a problem with the whole cohort.
    """
    from csvdnet.io import Subject, find_sequences, read_cohort
    from csvdnet.io.bids import is_bids, read_bids

    path = Path(path)
    if is_bids(path):
        cohort, problems = read_bids(path, sequences, reference)
        return list(cohort.subjects), problems, True
    found = find_sequences(path, sequences) if path.is_dir() else {}
    if reference in found:
        return [Subject(id=path.resolve().name, sequences=found)], {}, False
    # Prediction reads no ratings: a ratings.csv of the whole cohort beside a subset manifest
    # is only warned about.
    cohort = read_cohort(path, sequences=sequences, reference=reference, strict_ratings=False)
    return list(cohort.subjects), dict(cohort.problems), False
