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
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from csvdnet.errors import CsvdnetInputError, CsvdnetOutputError
from csvdnet.fsutil import (FolderLocked, atomic_path, check_writable, final_path, folder_lock,
                            remove_stale_parts, write_text_atomic)
from csvdnet.inference import outputs

__all__ = ["CohortPlan", "CohortSummary", "STATE_DIR", "cap_jobs", "check_output_folder",
           "describe_error", "output_lock", "plan_cohort", "predict_cohort", "predict_subject",
           "prepare_checked", "rows_on_disk", "run_identity", "score_row", "usable_cpus",
           "write_failure", "write_tables", "SCORE_COLUMNS"]

log = logging.getLogger(__name__)

MEASUREMENT_COLUMNS = ("fazekas_pv", "fazekas_deep", "epvs_bg_count", "epvs_bg_grade",
                       "epvs_cso_count", "epvs_cso_grade", "cmb_count", "cmb_lobar", "cmb_deep",
                       "cmb_infratentorial", "lacune_count", "rssi_count")
QUANTITY_COLUMNS = ("wmh_volume_ml", "wmh_periventricular_ml", "wmh_deep_ml",
                    "lacune_volume_ml", "rssi_volume_ml")
STATE_DIR = ".csvdnet"
"""``OUT/.csvdnet/``: the run's record (``run.json``), lock, and each subject's row / failure."""


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
            + ["agreement", "seconds", "flags", "model"])


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
    row["flags"] = " | ".join(str(flag).replace("\t", " ") for flag in _report_flags(result))
    row["model"] = result.model.id
    return row


def _report_flags(result: Any) -> list[str]:
    """The flags ``report.json`` shows for ``result`` (the model's own flag first)."""
    from csvdnet.inference.report import report_flags

    return report_flags(result)


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
    """Write a TSV atomically; a failure is a :class:`CsvdnetOutputError` naming ``path``."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, columns, delimiter="\t", extrasaction="ignore",
                                        lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
    except OSError as exc:
        raise CsvdnetOutputError(path, f"cannot be written: {_os_reason(exc)}") from None


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def write_failure(exc: OSError, fallback: Path) -> str:
    """``"<reason>: <file>"`` for a failed write, the file as the user knows it (not the
    temporary ``.part`` name); ``fallback`` when the error names no file."""
    where = final_path(exc.filename) if exc.filename else fallback
    return f"{_os_reason(exc)}: {where}"


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(error, message)`` of a subject's failure as ``errors.tsv`` records it: ``input`` for a
    :class:`~csvdnet.errors.CsvdnetInputError`, ``write`` for a file that could not be written
    (the reason and the file), else the exception type with its last frame."""
    if isinstance(exc, CsvdnetInputError):
        return "input", str(exc)
    if isinstance(exc, _WriteError):
        return "write", str(exc)
    # Not the user's input: keep the last frame so a bug report can point at it.
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    return type(exc).__name__, f"{exc}{where}"


class _WriteError(RuntimeError):
    """A subject's outputs could not be written; the message is ``"<reason>: <file>"``."""


def check_output_folder(out: str | Path) -> Path:
    """Create ``out`` if needed and check that files can be written in it, before any work.

    Raises:
        CsvdnetOutputError: It cannot be created or written (read-only, immutable, permission,
            full disk), naming the folder and the reason.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CsvdnetOutputError(out, "is a file, not an output folder")
    try:
        return check_writable(out)
    except OSError as exc:
        raise CsvdnetOutputError(out, f"cannot write into the output folder: "
                                      f"{_os_reason(exc)}") from None


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold ``OUT/.csvdnet/lock`` for the run: one run per output folder.

    Raises:
        CsvdnetOutputError: Another live run holds it (its pid, host and start are named).
    """
    try:
        with folder_lock(out / STATE_DIR / "lock", " ".join(sys.argv)) as lock:
            yield lock
    except FolderLocked as exc:
        holder = exc.holder
        raise CsvdnetOutputError(
            out, f"in use by another csvdnet run (pid {holder.get('pid')} on "
                 f"{holder.get('host')}, since {holder.get('since')}): one run per output "
                 f"folder; wait for it or choose another --out (a killed run's lock is taken "
                 f"over by itself)") from None
    except OSError as exc:
        raise CsvdnetOutputError(out / STATE_DIR / "lock",
                                 f"cannot be written: {_os_reason(exc)}") from None


def run_identity(predictor: Any) -> dict[str, Any]:
    """What makes two runs' results comparable: the model (id, sha256), rule sets, options."""
    return {"model": predictor.info.id, "sha256": predictor.info.sha256,
            "rule_sets": list(predictor.rule_sets), "tta": bool(getattr(predictor, "tta", False)),
            "regions": str(getattr(predictor, "regions", "registered"))}


def _state_file(out: Path, kind: str, subject_id: str) -> Path:
    return out / STATE_DIR / kind / f"{subject_id}.json"


def _save_state(out: Path, kind: str, subject_id: str, record: dict[str, str]) -> None:
    path = _state_file(out, kind, subject_id)
    try:
        write_text_atomic(path, json.dumps(record) + "\n")
    except OSError as exc:
        raise CsvdnetOutputError(path, f"cannot be written: {_os_reason(exc)}") from None


def _load_states(out: Path, kind: str) -> dict[str, dict[str, str]]:
    folder = out / STATE_DIR / kind
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: the subject is redone, never trusted
        if isinstance(record, dict) and record.get("subject"):
            records[str(record["subject"])] = record
    return records


def _identity_problem(out: Path, subject_id: str, bids: bool, identity: dict[str, Any],
                      recorded: dict[str, Any] | None) -> str | None:
    """Why a finished subject in ``out`` was not made by a run of ``identity``, or None."""
    try:
        report = json.loads(outputs.report_path(out, subject_id, bids).read_text("utf-8"))
        sha256, rules = report["model"]["sha256"], sorted(report["scores"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its report.json cannot be read"
    if sha256 != identity["sha256"]:
        return (f"it was predicted by model {report['model'].get('id')} (sha256 "
                f"{str(sha256)[:12]}…), this run's is {identity['model']} (sha256 "
                f"{identity['sha256'][:12]}…)")
    if rules != sorted(identity["rule_sets"]):
        return (f"it was scored with rule sets {', '.join(rules)}, this run's are "
                f"{', '.join(identity['rule_sets'])}")
    if recorded is not None and recorded.get("tta") != identity["tta"]:
        return (f"it was predicted with tta={recorded.get('tta')}, this run uses "
                f"tta={identity['tta']}")
    if recorded is not None and recorded.get("regions", "registered") != identity["regions"]:
        return (f"its regions were {recorded.get('regions', 'registered')}, this run's are "
                f"{identity['regions']}")
    return None


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
        jobs: Subjects in flight at once (threads: preprocessing and the network overlap).
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

    def run(subject: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        result = predict_subject(predictor, subject, strict=strict)
        try:
            outputs.write_subject(result, out, bids=bids)
        except OSError as exc:
            raise _WriteError(write_failure(exc, outputs.subject_dir(out, subject.id, bids))) \
                from None
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
                _save_state(out, "errors", subject.id,
                            {"subject": subject.id, "error": kind, "message": message})
                log.debug("subject %s failed", subject.id, exc_info=True)
                if on_subject:
                    on_subject(subject.id, f"failed: {message}", 0.0)
                continue
            _save_state(out, "rows", subject.id, score_row(result))
            _state_file(out, "errors", subject.id).unlink(missing_ok=True)
            summary.done.append(subject.id)
            summary.seconds[subject.id] = seconds
            _merge_tables(plan)
            if on_subject:
                on_subject(subject.id, "done", seconds)
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
