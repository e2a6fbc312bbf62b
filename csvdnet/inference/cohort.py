"""Predicting a whole cohort: skip what is done, record what fails, keep going.

:func:`predict_cohort` runs a :class:`~csvdnet.inference.predictor.Predictor` over subjects
and writes, beside the per-subject outputs (:mod:`csvdnet.inference.outputs`):

- ``scores.tsv``: one row per finished subject (every rating, each rule set's total,
  ``ordinal_total`` with its class probabilities, the agreement flag, seconds, the report's
  ``flags`` and the ``model`` id), rewritten atomically after every subject;
- ``errors.tsv``: one row per subject of ``OUT`` that has no result and failed when last tried
  (subject, error type, message).

Both tables are merged from what is on disk, never from one process's memory: each finished
subject's row and each failure are kept in ``OUT/.csvdnet/rows/`` and ``OUT/.csvdnet/errors/``
(one small JSON file each), and a subject counts as finished when its report exists. One run at
a time writes into ``OUT``: it holds ``OUT/.csvdnet/lock`` (a second run is refused; the lock of
a killed run, whose process is gone, is taken over). ``OUT`` must be writable before any work
starts, and a write that fails names the file and the reason.

A finished subject is skipped by a rerun only when it was made by the same model (sha256 of
its weights or ``metadata.json``), rule sets and options (``OUT/.csvdnet/run.json``); a rerun
with anything else is refused unless ``--overwrite`` redoes the subjects. A subject that fails is
recorded and the others go on; only a problem with the whole run (the model, the output folder)
stops it.

Where each part lives: the tables' columns and rows in :mod:`~csvdnet.inference.cohort_table`,
the output folder's lock and records in :mod:`~csvdnet.inference.cohort_state`, the plan and the
merged tables in :mod:`~csvdnet.inference.cohort_plan`, failures put into words in
:mod:`~csvdnet.inference.cohort_errors`, the input's subjects in
:mod:`~csvdnet.inference.cohort_input`, the stage pipeline of ``--jobs`` in
:mod:`~csvdnet.inference.cohort_pipeline`. This module runs the subjects (jobs, progress) and
re-exports those modules' names, so ``from csvdnet.inference.cohort import X`` keeps working.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from csvdnet.errors import CsvdnetInputError
from csvdnet.inference import outputs
from csvdnet.inference.cohort_errors import _WriteError, describe_error, write_failure
from csvdnet.inference.cohort_input import open_input  # noqa: F401  (re-exported)
from csvdnet.inference.cohort_pipeline import run_pipeline
from csvdnet.inference.cohort_plan import (CohortPlan, _merge_tables, plan_cohort, rows_on_disk,
                                           write_tables)
from csvdnet.inference.cohort_state import (STATE_DIR, _save_state, _state_file,
                                            check_output_folder, output_lock, run_identity)
from csvdnet.inference.cohort_table import SCORE_COLUMNS, score_columns, score_row

__all__ = ["CohortPlan", "CohortSummary", "STATE_DIR", "cap_jobs", "check_output_folder",
           "describe_error", "output_lock", "plan_cohort", "predict_cohort", "predict_subject",
           "prepare_checked", "rows_on_disk", "run_identity", "score_row", "usable_cpus",
           "write_failure", "write_tables", "SCORE_COLUMNS"]

log = logging.getLogger(__name__)


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


def predict_cohort(predictor: Any, subjects: Sequence[Any], out: str | Path, *,
                   bids: bool = False, source: Path | None = None, jobs: int = 1,
                   overwrite: bool = False, problems: dict[str, str] | None = None,
                   on_subject: Callable[[str, str, float], None] | None = None,
                   strict: bool = False) -> CohortSummary:
    """Predict every subject not yet done into ``out``; record failures and go on.

    Args:
        predictor: A :class:`~csvdnet.inference.predictor.Predictor`.
        subjects: :class:`csvdnet.io.Subject` records.
        out: Output folder (created).
        bids: Write a BIDS derivatives dataset (subject ids ``sub-X[_ses-Y]``).
        source: The input dataset (for ``dataset_description.json``'s SourceDatasets).
        jobs: Worker threads (:mod:`~csvdnet.inference.cohort_pipeline`): one subject in the
            network at a time while the others prepare the next subjects and finish the
            previous ones; at most ``jobs`` subjects in flight.
        overwrite: Redo subjects that are already done (also those of another model).
        problems: Subjects found unusable before prediction (id -> reason): recorded in
            ``errors.tsv`` with the subjects that fail here.
        on_subject: Called as ``(subject, status, seconds)`` after each subject, status
            ``"done"``, ``"skipped"`` or ``"failed: <message>"`` (progress display).
        strict: Refuse (fail) a subject whose sequences do not look like their names
            (:mod:`csvdnet.preprocessing.sequence_check`) instead of predicting it with a flag.

    Returns:
        What was done, skipped and failed.

    Raises:
        CsvdnetOutputError: ``out`` cannot be written, is in use by another run, holds another
            model's results (without ``overwrite``), or ``scores.tsv`` / ``errors.tsv`` cannot
            be written.
    """
    out = check_output_folder(out)
    with output_lock(out):
        plan = plan_cohort(subjects, out,
                           score_columns(predictor.rule_sets, predictor.score_classes),
                           bids=bids, source=source, overwrite=overwrite, problems=problems,
                           identity=run_identity(predictor))
        return _run_plan(predictor, plan, jobs, on_subject, strict)


def _run_plan(predictor: Any, plan: CohortPlan, jobs: int,
              on_subject: Callable[[str, str, float], None] | None,
              strict: bool) -> CohortSummary:
    out, bids = plan.out, plan.bids
    summary = CohortSummary(skipped=list(plan.skipped))
    for error in plan.errors:
        _save_state(out, "errors", error["subject"], error)
    if on_subject:
        for subject_id in plan.skipped:
            on_subject(subject_id, "skipped", 0.0)

    def prepare(subject: Any) -> Any:
        return prepare_checked(predictor, subject, strict=strict)

    def network(prepared: Any) -> Any:
        return predictor.run_network(prepared.array)

    def finish(prepared: Any, network_outputs: Any, network_seconds: float) -> Any:
        result = predictor.finish(prepared, network_outputs, network_seconds)
        try:
            outputs.write_subject(result, out, bids=bids)
        except OSError as exc:
            raise _WriteError(write_failure(exc, outputs.subject_dir(out, result.subject,
                                                                     bids))) from None
        return result

    for outcome in run_pipeline(plan.todo, prepare, network, finish, workers=jobs):
        subject = outcome.subject
        if outcome.error is not None:  # a bad subject never stops the cohort
            kind, message = describe_error(outcome.error)
            summary.failed[subject.id] = message
            _save_state(out, "errors", subject.id,
                        {"subject": subject.id, "error": kind, "message": message})
            log.debug("subject %s failed", subject.id, exc_info=outcome.error)
            if on_subject:
                on_subject(subject.id, f"failed: {message}", 0.0)
            continue
        _save_state(out, "rows", subject.id, score_row(outcome.value))
        _state_file(out, "errors", subject.id).unlink(missing_ok=True)
        summary.done.append(subject.id)
        summary.seconds[subject.id] = outcome.seconds
        _merge_tables(plan)
        if on_subject:
            on_subject(subject.id, "done", outcome.seconds)
    _merge_tables(plan)
    return summary


def predict_subject(predictor: Any, subject: Any, *, strict: bool = False) -> Any:
    """One subject through the predictor's stages, its sequences checked before the network
    (:func:`prepare_checked`).

    Raises:
        CsvdnetInputError: The predictor's, or (``strict``) sequences that look swapped.
    """
    prepared = prepare_checked(predictor, subject, strict=strict)
    started = time.perf_counter()
    network = predictor.run_network(prepared.array)
    return predictor.finish(prepared, network, time.perf_counter() - started)


def prepare_checked(predictor: Any, subject: Any, *, strict: bool = False) -> Any:
    """``predictor.prepare(subject)``, then the sequence check on the preprocessed channels
    (:func:`csvdnet.preprocessing.sequence_check.check_sequences`): a subject whose sequences
    look swapped gets a flag in its report and ``scores.tsv`` row, or is refused with
    ``strict``. The local runner and the Beam pipeline both prepare subjects through it.

    Raises:
        CsvdnetInputError: The predictor's, or (``strict``) sequences that look swapped.
    """
    from csvdnet.preprocessing.sequence_check import check_sequences

    prepared = predictor.prepare(subject)
    started = time.perf_counter()
    check = check_sequences(prepared.array, prepared.brain_working,
                            tuple(predictor.info.channels))
    prepared.timings["sequence_check"] = time.perf_counter() - started
    message = check.message()
    if message and strict:
        names = ", ".join(str(subject.sequences[c]) for c in check.looks_like
                          if c in subject.sequences)
        raise CsvdnetInputError(names or subject.id, f"{message} (refused: --strict)")
    if message:
        prepared.flags.append(message)
    return prepared


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
