"""``csvdnet evaluate``: a prediction folder against a labelled cohort, as reviewers expect.

:func:`evaluate` reads the cohort (:func:`csvdnet.io.read_cohort`) and a ``csvdnet predict``
output folder (plain or BIDS derivatives), evaluates every subject
(:func:`~csvdnet.evaluation.subject.evaluate_subject`) and writes to ``out_dir``:

- ``metrics_per_subject.tsv``: one row per cohort subject, a subject without a prediction or a
  label included with its ``problems`` (never dropped);
- ``summary.json``: per marker, per-subject distributions (mean with a 95 % bootstrap interval,
  SD, median, quartiles) and pooled values with bootstrap intervals; FROC; per-region
  sensitivity and precision; count, grade and total-score agreement; the definitions used
  (these figures: :mod:`csvdnet.evaluation.summary`); which subjects were missing what;
- ``evaluation.html``: one offline page with the plots (:mod:`csvdnet.evaluation.html`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from csvdnet import __version__
from csvdnet.evaluation.inputs import (is_bids_derivatives, load_prediction, load_truth,
                                       read_scores)
from csvdnet.evaluation.points import FROC_RATES
from csvdnet.evaluation.subject import OBJECT_TASKS, SubjectEvaluation, evaluate_subject
from csvdnet.evaluation.summary import DEFINITIONS, summarise_cohort
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import write_text_atomic
from csvdnet.io import Cohort, read_cohort

__all__ = ["EVALUATION_FORMAT_VERSION", "Evaluation", "evaluate", "headline", "parse_radius",
           "summarise_cohort"]

EVALUATION_FORMAT_VERSION = 1
"""Version of the ``summary.json`` layout."""


class Evaluation:
    """What :func:`evaluate` wrote: ``rows`` (per subject), ``summary`` and the file paths."""

    def __init__(self, rows: list[dict[str, Any]], summary: dict[str, Any], out_dir: Path):
        self.rows, self.summary, self.out_dir = rows, summary, out_dir
        self.per_subject_tsv = out_dir / "metrics_per_subject.tsv"
        self.summary_json = out_dir / "summary.json"
        self.html = out_dir / "evaluation.html"


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}" if math.isfinite(value) else "n/a"
    return str(value)


def _json_safe(value: Any) -> Any:
    """NaN / inf -> null (JSON has neither), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _write_tsv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = ["subject", "prediction"]
    for row in rows:
        columns += [c for c in row if c not in columns and c != "problems"]
    columns.append("problems")
    lines = ["\t".join(columns)]
    lines += ["\t".join(_cell(row.get(c)).replace("\t", " ") for c in columns) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def evaluate(cohort: str | os.PathLike | Cohort, pred_dir: str | os.PathLike,
             out_dir: str | os.PathLike, *, radius_mm: Mapping[str, float] | None = None,
             on_subject: Callable[[str, str], None] | None = None) -> Evaluation:
    """Evaluate ``pred_dir`` against ``cohort`` and write the outputs to ``out_dir``.

    Args:
        cohort: Labelled cohort folder / manifest CSV, or a read :class:`~csvdnet.io.Cohort`.
        pred_dir: Output folder of ``csvdnet predict`` (plain or BIDS derivatives).
        out_dir: Where the three outputs go (created).
        radius_mm: Task -> matching radius in mm, overriding the defaults
            (:func:`csvdnet.evaluation.points.match_radius`).
        on_subject: Called as ``(subject id, state)`` after each subject (progress display);
            state is ``evaluated`` or why not (``no prediction``, ``NOT EVALUATED: ...``).

    Returns:
        The rows, the summary and the paths written.

    A subject whose prediction is on another grid than its reference image is not evaluated
    (``prediction`` = ``other grid``, listed in ``summary["subjects"]["not_evaluated"]``): it
    is another image's prediction, and its counts would be scored against the wrong patient.

    Raises:
        CsvdnetInputError: The cohort cannot be read, ``pred_dir`` is not a folder, or no
            subject could be evaluated (nothing is written then).
    """
    from csvdnet.evaluation.html import write_html

    cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    if not pred_dir.is_dir():
        raise CsvdnetInputError(pred_dir, "prediction folder not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    bids = is_bids_derivatives(pred_dir)
    scores = read_scores(pred_dir)
    evals: list[SubjectEvaluation] = []
    reports: dict[str, Path | None] = {}
    for subject in cohort:
        prediction = load_prediction(pred_dir, subject.id, bids, scores)
        evals.append(evaluate_subject(subject.id, load_truth(subject, cohort.reference),
                                      prediction, radius_mm))
        reports[subject.id] = prediction.report_html if prediction is not None else None
        if on_subject:
            state = str(evals[-1].row["prediction"])
            if state in ("yes", "missing"):
                state = "evaluated" if state == "yes" else "no prediction"
            else:
                state = evals[-1].problems[-1]
            on_subject(subject.id, state)
    _refuse_if_nothing_evaluated(evals, cohort, pred_dir)
    summary = {"format": "csvdnet-evaluation", "version": EVALUATION_FORMAT_VERSION,
               "csvdnet_version": __version__,
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                   timespec="seconds"),
               "cohort": str(cohort.manifest or cohort.root), "predictions": str(pred_dir),
               "layout": "bids" if bids else "plain",
               "froc_rates": list(FROC_RATES), "definitions": DEFINITIONS,
               **summarise_cohort(evals)}
    extra = sorted(set(scores) - {s.id for s in cohort})
    summary["subjects"]["predicted_not_in_cohort"] = extra
    # Subjects the cohort names but could not locate (no reference image, a missing file):
    # reported, never silently dropped.
    summary["subjects"]["unreadable_in_cohort"] = dict(cohort.problems)
    result = Evaluation([e.row for e in evals], _json_safe(summary), out_dir)
    _write_tsv(result.per_subject_tsv, result.rows)
    write_text_atomic(result.summary_json, json.dumps(result.summary, indent=1) + "\n")
    write_html(result.html, result.rows, result.summary, evals, reports)
    return result


def _refuse_if_nothing_evaluated(evals: list[SubjectEvaluation], cohort: Cohort,
                                 pred_dir: Path) -> None:
    """Raise when not one subject was evaluated: a wrong ``--pred`` must not look like a run."""
    if any(e.row.get("prediction") == "yes" for e in evals):
        return
    states: dict[str, list[str]] = {}
    for e in evals:
        states.setdefault(str(e.row.get("prediction")), []).append(str(e.row["subject"]))
    parts = [f"{len(ids)} {_STATE_WORDS.get(state, state)} ({', '.join(ids[:3])}"
             + (", ..." if len(ids) > 3 else "") + ")" for state, ids in states.items()]
    if cohort.problems:
        parts.append(f"{len(cohort.problems)} unusable in the cohort")
    found = "; ".join(parts) or "the cohort has no subject"
    raise CsvdnetInputError(
        pred_dir, f"no subject of the cohort could be evaluated: {found} (is this the csvdnet "
                  "predict output of this cohort?)")


_STATE_WORDS = {"missing": "without a prediction folder here",
                "other grid": "with a prediction on another grid than the cohort's image",
                "unusable": "with no usable prediction output"}


def parse_radius(items: Sequence[str]) -> dict[str, float]:
    """``["cmb=5", "epvs=2"]`` -> ``{"cmb": 5.0, "epvs": 2.0}`` (the CLI's ``--radius``)."""
    radius = {}
    for item in items:
        task, _, value = item.partition("=")
        try:
            mm = float(value)
        except ValueError:
            mm = math.nan
        if task not in OBJECT_TASKS or not math.isfinite(mm) or mm <= 0:
            raise CsvdnetInputError("--radius", f"{item!r}: expected TASK=MM with TASK one of "
                                                f"{', '.join(OBJECT_TASKS)} and MM > 0")
        radius[task] = mm
    return radius


def headline(summary: Mapping[str, Any]) -> list[str]:
    """A few lines for the terminal: who was evaluated, and the main figure of each marker."""
    subjects = summary["subjects"]
    lines = [f"{subjects['evaluated']} of {subjects['cohort']} subjects evaluated"]
    if subjects["missing_prediction"]:
        lines.append("no prediction: " + ", ".join(subjects["missing_prediction"]))
    for subject, reason in subjects.get("not_evaluated", {}).items():
        lines.append(f"{subject}: {reason}")
    other = [s for s in subjects["problems"] if s not in subjects["missing_prediction"]
             and s not in subjects.get("not_evaluated", {})]
    if other:
        lines.append(f"{len(other)} subject(s) with missing or unusable parts (see summary.json)")
    for subject, reason in subjects.get("unreadable_in_cohort", {}).items():
        lines.append(f"not evaluated, cohort entry unusable: {subject}: {reason}")

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for task, entry in summary["segmentation"].items():
        lines.append(f"{task}: Dice median {fmt(entry['per_subject']['dice']['median'])}, "
                     f"pooled {fmt(entry['pooled_dice']['value'])}; lesion F1 pooled "
                     f"{fmt(entry['pooled_lesions']['f1']['value'])}")
    for task, entry in summary["detection"].items():
        lines.append(f"{task}: detection F1 pooled {fmt(entry['pooled']['f1']['value'])}, "
                     f"sensitivity {fmt(entry['pooled']['sensitivity'])}, FP/subject "
                     f"{fmt(entry['false_positives_per_subject']['mean'])}")
    for key, entry in summary["total_score"].items():
        lines.append(f"total score ({key.replace('_', ' ')}): accuracy {fmt(entry['accuracy'])}"
                     f", quadratic kappa {fmt(entry['kappa_quadratic'])}")
    return lines
