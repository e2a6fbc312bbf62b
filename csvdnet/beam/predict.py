"""``csvdnet predict --engine beam``: cohort prediction as an Apache Beam pipeline.

The pipeline (``csvdnet.beam`` says what crosses each step)::

    subjects (listed here, skip-if-done decided here: csvdnet.inference.cohort.plan_cohort)
      -> ReadFromText + Reshuffle       the subjects (records of file paths, OUT/.beam/
                                        subjects.jsonl) spread over the workers
      -> LoadPreprocess  (DoFn)         Predictor.prepare: load + preprocess, as local predict
      -> Network         (RunInference with PredictorModelHandler, batch size 1)
      -> FinishWrite     (DoFn)         Predictor.finish (invert, postprocess, regions, scoring)
                                        + outputs.write_subject (atomic subject folder)
                                        + the subject's scores.tsv row
      -> Gather          (one step)     scores.tsv and errors.tsv (cohort.write_tables)

A subject that fails in any step becomes an ``errors.tsv`` row (the same ``describe_error`` as
local predict) and the pipeline goes on. Each finished subject's row is also kept in
``OUT/.beam/rows/`` until the gather step has written ``scores.tsv``: a rerun after a failed
job counts those subjects as done, so it only predicts what is missing.

The model: :class:`PredictorModelHandler` loads it with ``Predictor.from_dir`` (an exported
model: checksums verified, then ``tf.saved_model.load``; a training run: the Keras network
rebuilt), once per worker process (:func:`_predictor`), shared by the handler and both DoFns.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from csvdnet.beam import WORK_DIR, read_subject, remove_work_dir, write_subject_list
from csvdnet.fsutil import write_text_atomic
from csvdnet.inference import outputs
from csvdnet.inference.cohort import (CohortPlan, CohortSummary, describe_error, plan_cohort,
                                      prepare_checked, run_identity, score_columns, score_row,
                                      write_tables)

__all__ = ["PredictorModelHandler", "ROWS_DIR", "predict_cohort_beam"]

log = logging.getLogger(__name__)

ROWS_DIR = f"{WORK_DIR}/rows"
"""Folder of ``OUT`` holding each finished subject's ``scores.tsv`` row until the gather step."""

_LOADED: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _key(spec: dict[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items()))


def _predictor(spec: dict[str, Any]) -> Any:
    """The process's predictor for ``spec`` (``Predictor.from_dir`` keyword arguments), loaded
    on first use; the launching process registers the one it loaded (in-memory runners)."""
    key = _key(spec)
    with _LOCK:
        if key not in _LOADED:
            from csvdnet.inference.predictor import Predictor

            spec = dict(spec)
            _LOADED[key] = Predictor.from_dir(spec.pop("model_dir"), **spec)
        return _LOADED[key]


class PredictorModelHandler(ModelHandler):
    """RunInference's model: the network step of a csvdnet model, one subject per batch.

    An example is a :class:`~csvdnet.inference.predictor.Prepared` subject; its prediction is
    ``(outputs, seconds)`` (``Predictor.run_network`` on its working-grid volume), or the exception
    that step raised, which the next step records in ``errors.tsv`` (a bad subject never fails
    the pipeline). Volumes differ in shape, so batches hold one subject.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(min_batch_size=1, max_batch_size=1)
        self._spec = dict(spec)

    def load_model(self) -> Any:
        return _predictor(self._spec)

    def run_inference(self, batch: Sequence[Any], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        results = []
        for prepared in batch:
            started = time.perf_counter()
            try:
                inference: Any = (model.run_network(prepared.array), time.perf_counter() - started)
            except Exception as exc:  # recorded downstream; the pipeline goes on
                inference = exc
            results.append(PredictionResult(prepared, inference, model.info.id))
        return results

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return int(sum(prepared.array.nbytes for prepared in batch))

    def get_metrics_namespace(self) -> str:
        return "csvdnet"


class _Prepare(beam.DoFn):
    """Load and preprocess a subject (``Predictor.prepare``); a failure goes to ``failed``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = dict(spec)

    def setup(self) -> None:
        self._predictor = _predictor(self._spec)

    def process(self, subject: Any) -> Iterable[Any]:
        try:
            yield prepare_checked(self._predictor, subject)
        except Exception as exc:  # a bad subject never stops the cohort
            log.debug("subject %s failed", subject.id, exc_info=True)
            yield beam.pvalue.TaggedOutput("failed", _failure(subject.id, exc))


class _FinishWrite(beam.DoFn):
    """Invert, postprocess, score and write a subject; emit ``("row", id, row)`` or
    ``("error", id, errors.tsv row)``."""

    def __init__(self, spec: dict[str, Any], out: str, bids: bool) -> None:
        self._spec, self._out, self._bids = dict(spec), out, bids

    def setup(self) -> None:
        self._predictor = _predictor(self._spec)

    def process(self, element: PredictionResult) -> Iterable[Any]:
        prepared, inference = element.example, element.inference
        subject_id = prepared.subject.id
        try:
            if isinstance(inference, BaseException):
                raise inference
            network_outputs, seconds = inference
            result = self._predictor.finish(prepared, network_outputs, seconds)
            outputs.write_subject(result, Path(self._out), bids=self._bids)
            row = score_row(result)
            write_text_atomic(Path(self._out) / ROWS_DIR / f"{subject_id}.json",
                              json.dumps(row))
        except Exception as exc:  # a bad subject never stops the cohort
            log.debug("subject %s failed", subject_id, exc_info=True)
            yield _failure(subject_id, exc)
            return
        yield ("row", subject_id, row)


def _failure(subject_id: str, exc: BaseException) -> tuple[str, str, dict[str, str]]:
    kind, message = describe_error(exc)
    return ("error", subject_id, {"subject": subject_id, "error": kind, "message": message})


class _Gather(beam.DoFn):
    """Write ``scores.tsv`` and ``errors.tsv`` from every subject's row or error."""

    def __init__(self, plan: CohortPlan) -> None:
        self._plan = plan

    def process(self, results: list[tuple[str, str, dict[str, str]]]) -> Iterable[None]:
        _write_tables(self._plan, results)
        return []


def _write_tables(plan: CohortPlan, results: Iterable[tuple[str, str, dict[str, str]]]) -> None:
    rows = {sid: row for kind, sid, row in results if kind == "row"}
    failures = [row for kind, sid, row in results if kind == "error" and sid not in rows]
    write_tables(plan, rows, failures)
    rows_dir = plan.out / ROWS_DIR
    for subject_id in list(rows) + list(plan.rows):  # now in scores.tsv
        (rows_dir / f"{subject_id}.json").unlink(missing_ok=True)
    if rows_dir.is_dir() and not any(rows_dir.iterdir()):
        rows_dir.rmdir()


def _finished_rows(out: Path) -> dict[str, dict[str, str]]:
    """Rows of subjects a failed job finished before its gather step (``ROWS_DIR``)."""
    rows = {}
    folder = out / ROWS_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: the subject is simply redone
        if isinstance(row, dict) and row.get("subject") == path.stem:
            rows[path.stem] = {str(k): str(v) for k, v in row.items()}
    return rows


def predict_cohort_beam(model_dir: str | Path, input_path: str | Path, out: str | Path, *,
                        runner: str = "DirectRunner", beam_args: Sequence[str] = (),
                        weights: str = "best", rule_sets: Sequence[str] | None = None,
                        tta: bool = False, serving_url: str | None = None,
                        serving_form: str = "bytes", overwrite: bool = False
                        ) -> tuple[CohortSummary, int]:
    """Predict every subject of ``input_path`` not yet done into ``out`` on a Beam runner.

    The same outputs as :func:`csvdnet.inference.cohort.predict_cohort` (timings aside). The
    model is loaded here first (a bad model directory fails before any job starts) and again in
    each worker process.

    Args:
        model_dir: A training run or an exported model (``Predictor.from_dir``).
        input_path: A subject folder, cohort folder, manifest CSV or BIDS dataset.
        out: Output folder: a path every worker can write.
        runner: A Beam runner (:data:`csvdnet.beam.RUNNERS`).
        beam_args: Further Beam pipeline options (``--name=value``).
        weights, rule_sets, tta, serving_url, serving_form: As ``Predictor.from_dir``.
        overwrite: Redo subjects that are already done.

    Returns:
        ``(summary, total)``: what was done, skipped and failed (``failed`` includes the
        subjects found unusable before prediction), and the number of subjects of the input.

    Raises:
        CsvdnetInputError: A bad model directory, input, runner or Beam option.
    """
    from csvdnet.beam import pipeline_options
    from csvdnet.inference.cohort import open_input

    options = pipeline_options(runner, beam_args)
    spec = {"model_dir": str(Path(model_dir).resolve()), "weights": weights,
            "rule_sets": list(rule_sets) if rule_sets else None, "tta": tta,
            "serving_url": serving_url, "serving_form": serving_form}
    predictor = _predictor(spec)
    subjects, problems, bids = open_input(input_path, predictor.info.channels,
                                          predictor.preprocess_cfg.reference)
    out = Path(out).resolve()
    plan = plan_cohort(subjects, out,
                       score_columns(predictor.rule_sets, predictor.score_classes), bids=bids,
                       source=Path(input_path), overwrite=overwrite, problems=problems,
                       done_rows={} if overwrite else _finished_rows(out),
                       identity=run_identity(predictor))
    summary = CohortSummary(skipped=list(plan.skipped))
    if plan.todo:
        started = time.perf_counter()
        listing = write_subject_list(out / WORK_DIR, plan.todo)
        gather_plan = dataclasses.replace(plan, todo=[])  # the gather step needs no subjects
        with beam.Pipeline(options=options) as pipeline:
            prepared = (pipeline
                        | "Subjects" >> beam.io.ReadFromText(str(listing))
                        | "Spread" >> beam.Reshuffle()
                        | "Parse" >> beam.Map(read_subject)
                        | "LoadPreprocess" >> beam.ParDo(_Prepare(spec)).with_outputs(
                            "failed", main="prepared"))
            finished = (prepared.prepared
                        | "Network" >> RunInference(PredictorModelHandler(spec))
                        | "FinishWrite" >> beam.ParDo(_FinishWrite(spec, str(out), bids)))
            _ = ((finished, prepared.failed)
                 | "Results" >> beam.Flatten()
                 | "Collect" >> beam.combiners.ToList()
                 | "Gather" >> beam.ParDo(_Gather(gather_plan)))
        remove_work_dir(out, keep_rows=True)
        seconds = time.perf_counter() - started
    else:
        _write_tables(plan, [])
        remove_work_dir(out, keep_rows=True)
        seconds = 0.0
    failed = _read_failed(out / "errors.tsv")
    summary.failed.update({sid: failed[sid] for sid in plan.order if sid in failed})
    summary.done = [s.id for s in plan.todo if s.id not in failed]
    per_subject = seconds / len(summary.done) if summary.done else 0.0
    summary.seconds = {sid: per_subject for sid in summary.done}
    return summary, len(subjects) + len(problems)


def _read_failed(path: Path) -> dict[str, str]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return {row["subject"]: row["message"] for row in csv.DictReader(handle, delimiter="\t")}
