"""What a cohort run has to do, decided from what is on disk before any subject is predicted
(:func:`plan_cohort`: done, to do, refused), and ``scores.tsv`` / ``errors.tsv`` merged from the
subjects' records on disk (:func:`write_tables`), never from one process's memory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from csvdnet.errors import CsvdnetOutputError
from csvdnet.fsutil import remove_stale_parts, write_text_atomic
from csvdnet.inference import outputs
from csvdnet.inference.cohort_errors import _os_reason
from csvdnet.inference.cohort_state import (STATE_DIR, _identity_problem, _load_states,
                                            _save_state, check_output_folder)
from csvdnet.inference.cohort_table import _read_rows, _write_rows

__all__ = ["CohortPlan", "plan_cohort", "rows_on_disk", "write_tables"]


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
        bids: BIDS derivatives layout.
    """

    out: Path
    columns: list[str]
    rows: dict[str, dict[str, str]]
    todo: list[Any]
    skipped: list[str]
    order: list[str]
    errors: list[dict[str, str]]
    bids: bool = False


def plan_cohort(subjects: Sequence[Any], out: str | Path, columns: list[str], *,
                bids: bool = False, source: Path | None = None, overwrite: bool = False,
                problems: dict[str, str] | None = None,
                done_rows: dict[str, dict[str, str]] | None = None,
                identity: dict[str, Any] | None = None) -> CohortPlan:
    """Prepare ``out`` for a cohort run and decide what it has to do.

    Checks that ``out`` is writable, removes what killed runs were writing (``.part`` entries of
    processes that are gone), writes the BIDS ``dataset_description.json``, reads the finished
    subjects' rows (:func:`rows_on_disk`) and sorts the subjects into done (report and row both
    there) and to do.

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
        identity: This run's :func:`run_identity`: a finished subject made by another model,
            rule sets or options is refused (unless ``overwrite``), and it is recorded as
            ``OUT/.csvdnet/run.json``.

    Raises:
        CsvdnetOutputError: ``out`` cannot be written, or it holds subjects of another model,
            rule sets or options (without ``overwrite``).
    """
    out = check_output_folder(out)
    remove_stale_parts(out, recursive=True)  # a killed run's half-written folders / files
    if bids:
        outputs.write_dataset_description(out, source or out)
    rows = rows_on_disk(out, bids)
    rows.update(done_rows or {})
    run_file = out / STATE_DIR / "run.json"
    recorded = None
    if run_file.is_file():
        try:
            recorded = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
    skipped, todo = [], []
    for subject in subjects:
        done = subject.id in rows and outputs.is_done(out, subject.id, bids)
        if done and not overwrite and identity is not None:
            problem = _identity_problem(out, subject.id, bids, identity, recorded)
            if problem:
                raise CsvdnetOutputError(
                    outputs.subject_dir(out, subject.id, bids),
                    f"already done, but {problem}: one output folder holds one model's "
                    f"results; choose another --out, or --overwrite to redo the subjects")
        if done and not overwrite:
            skipped.append(subject.id)
        else:
            rows.pop(subject.id, None)
            todo.append(subject)
    if identity is not None:
        try:
            write_text_atomic(run_file, json.dumps(identity, indent=1) + "\n")
        except OSError as exc:
            raise CsvdnetOutputError(run_file, f"cannot be written: {_os_reason(exc)}") \
                from None
    order = [s.id for s in subjects]
    errors = [{"subject": i, "error": "input", "message": m} for i, m in (problems or {}).items()]
    order += [i for i in (problems or {}) if i not in order]
    return CohortPlan(out=out, columns=list(columns), rows=rows, todo=todo, skipped=skipped,
                      order=order, errors=errors, bids=bids)


def rows_on_disk(out: Path, bids: bool) -> dict[str, dict[str, str]]:
    """The ``scores.tsv`` rows of the subjects finished in ``out``, whoever finished them.

    A subject is finished when its report exists; its row is its record in
    ``OUT/.csvdnet/rows/`` (written by the run that made it), else its row of an existing
    ``scores.tsv`` (a run of an older csvdnet). A finished subject with neither is not counted
    (a rerun redoes it).
    """
    rows = _read_rows(out / "scores.tsv")
    rows.update(_load_states(out, "rows"))
    return {sid: row for sid, row in rows.items() if outputs.is_done(out, sid, bids)}


def _ordered_rows(plan: CohortPlan) -> list[dict[str, str]]:
    """``scores.tsv`` rows: this input's subjects in input order, then earlier runs' others."""
    return ([plan.rows[i] for i in plan.order if i in plan.rows]
            + [r for i, r in sorted(plan.rows.items()) if i not in plan.order])


def _merge_tables(plan: CohortPlan) -> None:
    """Rewrite ``scores.tsv`` and ``errors.tsv`` from what is on disk now."""
    plan.rows = rows_on_disk(plan.out, plan.bids)
    _write_rows(plan.out / "scores.tsv", plan.columns, _ordered_rows(plan))
    failures = {sid: e for sid, e in _load_states(plan.out, "errors").items()
                if sid not in plan.rows}
    rank = {sid: k for k, sid in enumerate(plan.order)}
    errors = sorted(failures.values(), key=lambda e: (rank.get(e["subject"], len(rank)),
                                                      e["subject"]))
    _write_rows(plan.out / "errors.tsv", ["subject", "error", "message"], errors)


def write_tables(plan: CohortPlan, new_rows: dict[str, dict[str, str]],
                 failures: Iterable[dict[str, str]]) -> None:
    """Write ``scores.tsv`` and ``errors.tsv`` at the end of a run whose subjects finished
    elsewhere (an engine's workers): the same files :func:`predict_cohort` leaves.

    Args:
        plan: The run's plan (its ``rows`` are updated with ``new_rows``).
        new_rows: Subject -> :func:`score_row` of the subjects predicted in this run.
        failures: ``errors.tsv`` rows (subject, error, message) of the subjects that failed.
    """
    for subject_id, row in new_rows.items():
        _save_state(plan.out, "rows", subject_id, row)
    for error in plan.errors:
        _save_state(plan.out, "errors", error["subject"], error)
    for error in failures:
        _save_state(plan.out, "errors", error["subject"], error)
    _merge_tables(plan)
