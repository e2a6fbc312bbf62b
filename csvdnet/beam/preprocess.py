"""``csvdnet preprocess --engine beam``: the preprocessing cache written by an Apache Beam pipeline.

The same cache as :func:`csvdnet.cache.preprocess_cohort` (the same functions write it)::

    subjects to do (listed here: csvdnet.cache.plan_cache; complete subjects kept)
      -> ReadFromText + Reshuffle the subjects (records of file paths, CACHE/.beam/
                                  subjects.jsonl) spread over the workers
      -> Preprocess  (DoFn)       one subject's folder, written atomically by the worker
                                  (csvdnet.cache.process_subject); emits (id, error or None)
      -> Gather      (one step)   index.json (csvdnet.cache.finish_cache)

Only subject records and ``(id, message)`` pairs cross the steps; the arrays go straight from
the worker to the cache folder, which must be a path every worker sees. As locally, a subject
whose input cannot be used is recorded in ``index.json`` ``"failed"`` and the others go on; any
other exception is a bug and fails the job (its finished subjects are kept: a rerun skips them).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import apache_beam as beam

from csvdnet.beam import WORK_DIR, read_subject, remove_work_dir, write_subject_list
from csvdnet.cache import (CachePlan, CacheSummary, finish_cache, plan_cache, process_subject,
                           subject_dir)

__all__ = ["preprocess_cohort_beam"]


class _Preprocess(beam.DoFn):
    def __init__(self, cache_dir: str, cfg: Any, channels: tuple[str, ...]) -> None:
        self._cache_dir, self._cfg, self._channels = cache_dir, cfg, channels

    def process(self, line: str) -> Iterable[tuple[str, str | None]]:
        subject = read_subject(line)
        folder = subject_dir(Path(self._cache_dir), subject.id)
        yield subject.id, process_subject(subject, folder, self._cfg, self._channels)


class _Gather(beam.DoFn):
    def __init__(self, plan: CachePlan) -> None:
        self._plan = plan

    def process(self, results: list[tuple[str, str | None]]) -> Iterable[None]:
        _finish(self._plan, results)
        return []


def _finish(plan: CachePlan, results: Iterable[tuple[str, str | None]]) -> CacheSummary:
    results = dict(results)
    return finish_cache(plan, [sid for sid, error in results.items() if error is None],
                        {sid: error for sid, error in results.items() if error is not None})


def preprocess_cohort_beam(cohort: Any, out_dir: str | os.PathLike, cfg: Any, *,
                           channels: Sequence[str] | None = None, overwrite: bool = False,
                           runner: str = "DirectRunner", beam_args: Sequence[str] = ()
                           ) -> CacheSummary:
    """Preprocess every subject of ``cohort`` into ``out_dir`` on a Beam runner.

    Arguments as :func:`csvdnet.cache.preprocess_cohort` (``jobs`` and ``progress`` are the
    runner's business), plus ``runner`` and ``beam_args`` (Beam pipeline options).

    Returns:
        What was written, kept and failed (read back from ``index.json``).

    Raises:
        CsvdnetInputError: As :func:`csvdnet.cache.preprocess_cohort`, or a bad runner or Beam
            option.
    """
    from csvdnet.beam import pipeline_options
    from csvdnet.cache import load_cache

    options = pipeline_options(runner, beam_args)
    plan = plan_cache(cohort, Path(out_dir).resolve(), cfg, channels=channels,
                      overwrite=overwrite)
    if not plan.todo:
        return _finish(plan, [])
    listing = write_subject_list(plan.cache_dir / WORK_DIR, [s for s, _ in plan.todo])
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline
             | "Subjects" >> beam.io.ReadFromText(str(listing))
             | "Spread" >> beam.Reshuffle()
             | "Preprocess" >> beam.ParDo(_Preprocess(str(plan.cache_dir), plan.cfg,
                                                      plan.channels))
             | "Collect" >> beam.combiners.ToList()
             | "Gather" >> beam.ParDo(_Gather(dataclasses.replace(plan, todo=[]))))
    remove_work_dir(plan.cache_dir)
    index, done = load_cache(plan.cache_dir)
    failed = dict(index.get("failed", {}))
    todo = {s.id for s, _ in plan.todo}
    return CacheSummary(cache_dir=plan.cache_dir, done=tuple(done),
                        written=tuple(s for s in done if s in todo),
                        skipped=tuple(plan.skipped), failed=failed)
