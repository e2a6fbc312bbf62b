"""csvdnet's cohort steps on Apache Beam: prediction and the preprocessing cache at scale.

``csvdnet predict ... --engine beam`` (:func:`csvdnet.beam.predict.predict_cohort_beam`) and
``csvdnet preprocess ... --engine beam`` (:func:`csvdnet.beam.preprocess.preprocess_cohort_beam`)
run the same library functions as the local commands, as steps of a Beam pipeline, on any Beam
runner (DirectRunner here; Dataflow, Flink, Spark on a cluster). They write the same files.

Apache Beam is the optional extra ``csvdnet[beam]``; importing this package does not import it
(:func:`require_beam` says how to install it when it is missing).

Both pipelines carry **file paths** between their fusion-breaking steps: the launching process
lists the subjects (small records of paths), a ``Reshuffle`` spreads them over the workers, and
each worker then loads, preprocesses, runs the network on, postprocesses and writes one subject
in a single fused stage, so the working-grid volume and the network's outputs (tens of MB a
subject) pass between those steps as objects in the worker's memory, never encoded or shuffled.
What leaves a worker is a subject's ``scores.tsv`` row or its error (a few hundred bytes),
gathered by one last step that writes ``scores.tsv`` / ``errors.tsv`` (the cache's
``index.json``). Every path must therefore be one that all workers and the launching process
see (a shared filesystem). The subjects to do go to the workers as a JSON-lines file in the
output folder (:data:`WORK_DIR`), read by a Beam text source, not as data embedded in the
pipeline (a biobank's list would outgrow a runner's job-graph limit).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_path

__all__ = ["BEAM_MISSING", "RUNNERS", "WORK_DIR", "pipeline_options", "read_subject",
           "remove_work_dir", "require_beam", "write_subject_list"]

WORK_DIR = ".beam"
"""Folder of the output (cache) folder holding a Beam job's working files: the list of subjects to
do, and (prediction) each finished subject's ``scores.tsv`` row until ``scores.tsv`` holds it.
Removed when the job has finished."""

BEAM_MISSING = ("the beam engine needs Apache Beam, which is not installed: "
                "pip install 'csvdnet[beam]'")
RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
"""The Beam runners ``--runner`` accepts."""


def require_beam() -> None:
    """Import Apache Beam or say how to install it.

    Raises:
        CsvdnetInputError: ``apache_beam`` is not importable.
    """
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        raise CsvdnetInputError("--engine beam", BEAM_MISSING) from None


def pipeline_options(runner: str, beam_args: tuple[str, ...] | list[str] = ()) -> object:
    """Beam ``PipelineOptions`` for ``runner`` and the user's further Beam options.

    Raises:
        CsvdnetInputError: An unknown runner, ``--runner`` also among ``beam_args``, or an
            argument that is not a ``--option[=value]``.
    """
    require_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    if runner not in RUNNERS:
        raise CsvdnetInputError("--runner", f"unknown runner {runner!r}; known: "
                                            f"{', '.join(RUNNERS)}")
    args = list(beam_args)
    for arg in args:
        if arg == "--runner" or arg.startswith("--runner="):
            raise CsvdnetInputError(arg, "give the runner as csvdnet's --runner option, "
                                         "before the --")
    previous = None
    for arg in args:  # --name=value, --name value or --flag
        if not arg.startswith("-") and (previous is None or not previous.startswith("--")
                                        or "=" in previous):
            raise CsvdnetInputError(arg, "not a Beam option: what follows -- must be Beam "
                                         "pipeline options (--name=value)")
        previous = arg
    return PipelineOptions([f"--runner={runner}", *args])


def _subject_dict(subject: Any) -> dict[str, Any]:
    return {"id": subject.id,
            "sequences": {k: str(v) for k, v in subject.sequences.items()},
            "labels": {k: str(v) for k, v in subject.labels.items()},
            "label_sequence": dict(subject.label_sequence),
            "ratings": None if subject.ratings is None else dataclasses.asdict(subject.ratings)}


def write_subject_list(work: Path, subjects: Iterable[Any]) -> Path:
    """Write ``subjects`` (:class:`csvdnet.io.Subject`) as JSON lines to ``work/subjects.jsonl``
    (atomically); return the file."""
    path = Path(work) / "subjects.jsonl"
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(_subject_dict(s)) + "\n" for s in subjects),
                       encoding="utf-8")
    return path


def read_subject(line: str) -> Any:
    """A :class:`csvdnet.io.Subject` from one line of :func:`write_subject_list`'s file."""
    from csvdnet.io import Subject
    from csvdnet.io.ratings import Ratings

    record = json.loads(line)
    return Subject(id=record["id"],
                   sequences={k: Path(v) for k, v in record["sequences"].items()},
                   labels={k: Path(v) for k, v in record["labels"].items()},
                   label_sequence=dict(record["label_sequence"]),
                   ratings=None if record["ratings"] is None else Ratings(**record["ratings"]))


def remove_work_dir(out: Path, keep_rows: bool = False) -> None:
    """Remove a finished job's :data:`WORK_DIR` (with ``keep_rows``: only its subject list)."""
    work = Path(out) / WORK_DIR
    if not keep_rows:
        shutil.rmtree(work, ignore_errors=True)
        return
    (work / "subjects.jsonl").unlink(missing_ok=True)
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()
