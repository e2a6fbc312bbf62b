"""The --jobs stage pipeline: one network at a time, bounded subjects in flight, failures
recorded while the others finish, the same results whatever the number of workers."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from csvdnet.inference import cohort
from csvdnet.inference.cohort_pipeline import run_pipeline


class Tracker:
    """Fake stages on tiny arrays that count what runs at once."""

    def __init__(self, fail: str | None = None, fail_stage: str = "prepare",
                 pause: float = 0.01) -> None:
        self.lock = threading.Lock()
        self.networks = 0
        self.max_networks = 0
        self.open: set[str] = set()
        self.max_open = 0
        self.fail, self.fail_stage, self.pause = fail, fail_stage, pause

    def _maybe_fail(self, stage: str, subject: str) -> None:
        if subject == self.fail and stage == self.fail_stage:
            with self.lock:
                self.open.discard(subject)  # out of the pipeline with its error
            raise ValueError(f"{subject} broken in {stage}")

    def prepare(self, subject: str) -> SimpleNamespace:
        with self.lock:
            self.open.add(subject)
            self.max_open = max(self.max_open, len(self.open))
        time.sleep(self.pause)
        self._maybe_fail("prepare", subject)
        seed = sum(map(ord, subject))
        return SimpleNamespace(id=subject, array=np.arange(8, dtype=np.float32) * seed)

    def network(self, prepared: SimpleNamespace) -> np.ndarray:
        with self.lock:
            self.networks += 1
            self.max_networks = max(self.max_networks, self.networks)
        try:
            time.sleep(self.pause * 2)
            self._maybe_fail("network", prepared.id)
            return np.sqrt(prepared.array)
        finally:
            with self.lock:
                self.networks -= 1

    def finish(self, prepared: SimpleNamespace, outputs: np.ndarray, seconds: float) -> float:
        try:
            time.sleep(self.pause)
            self._maybe_fail("finish", prepared.id)
            return float(outputs.sum())
        finally:
            with self.lock:
                self.open.discard(prepared.id)


SUBJECTS = [f"s{i}" for i in range(7)]


def _run(tracker: Tracker, workers: int, in_flight: int | None = None) -> dict:
    return {o.subject: (o.value, type(o.error).__name__ if o.error else None)
            for o in run_pipeline(SUBJECTS, tracker.prepare, tracker.network, tracker.finish,
                                  workers=workers, in_flight=in_flight)}


def test_one_and_two_workers_give_the_same_results():
    one, two = _run(Tracker(), 1), _run(Tracker(), 2)
    assert one == two and sorted(one) == SUBJECTS and all(e is None for _, e in one.values())


@pytest.mark.parametrize("stage", ["prepare", "network", "finish"])
def test_a_failing_subject_comes_back_with_its_error_and_the_others_finish(stage):
    results = _run(Tracker(fail="s2", fail_stage=stage), 2)
    assert results["s2"] == (None, "ValueError")
    assert sorted(s for s, (_, e) in results.items() if e is None) == \
        [s for s in SUBJECTS if s != "s2"]


@pytest.mark.parametrize("workers, in_flight", [(1, None), (2, None), (2, 3), (3, 2)])
def test_at_most_in_flight_subjects_are_started_and_not_finished(workers, in_flight):
    tracker = Tracker()
    _run(tracker, workers, in_flight)
    bound = in_flight if in_flight is not None else workers
    assert 1 <= tracker.max_open <= bound
    if workers > 1:
        assert tracker.max_open == bound  # the bound is used, not just respected


@pytest.mark.parametrize("workers", [2, 3])
def test_the_network_never_runs_two_subjects_at_once(workers):
    tracker = Tracker()
    _run(tracker, workers, in_flight=workers + 1)
    assert tracker.max_networks == 1


def test_a_keyboard_interrupt_in_a_worker_stops_the_pipeline_and_is_raised():
    tracker = Tracker()
    network = tracker.network

    def interrupted(prepared):
        if prepared.id == "s1":
            raise KeyboardInterrupt
        return network(prepared)

    with pytest.raises(KeyboardInterrupt):
        list(run_pipeline(SUBJECTS, tracker.prepare, interrupted, tracker.finish, workers=2))
    assert not [t for t in threading.enumerate() if t.name.startswith("csvdnet-cohort-")]


def _predict(out, monkeypatch, jobs, fail=None):
    """``_run_plan`` over fake subjects, its table and state code real, the stages fake."""
    tracker = Tracker(fail=fail, fail_stage="network")
    names = {float(sum(map(ord, s))): s for s in SUBJECTS}  # prepared.array[1] -> subject
    predictor = SimpleNamespace(
        run_network=lambda array: tracker.network(SimpleNamespace(id=names[float(array[1])],
                                                                  array=array)),
        finish=lambda prepared, result, seconds: SimpleNamespace(
            subject=prepared.id, value=tracker.finish(prepared, result, seconds),
            timings={"network": seconds}))
    monkeypatch.setattr(cohort, "prepare_checked",
                        lambda p, subject, strict=False: tracker.prepare(subject.id))

    def write_subject(result, folder, bids=False):
        (folder / result.subject).mkdir()
        (folder / result.subject / "report.json").write_text("{}")

    monkeypatch.setattr(cohort.outputs, "write_subject", write_subject)
    monkeypatch.setattr(cohort, "score_row",
                        lambda result: {"subject": result.subject, "total": repr(result.value)})
    plan = cohort.CohortPlan(out=out, columns=["subject", "total"], rows={},
                             todo=[SimpleNamespace(id=s) for s in SUBJECTS], skipped=[],
                             order=list(SUBJECTS), errors=[])
    seen = []
    summary = cohort._run_plan(predictor, plan, jobs, lambda s, status, sec: seen.append(
        (s, status.split(":")[0])), strict=False)
    return summary, sorted(seen), tracker


def test_cohort_runs_with_one_and_two_jobs_write_the_same_tables(tmp_path, monkeypatch):
    tables = {}
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}"
        out.mkdir()
        summary, seen, tracker = _predict(out, monkeypatch, jobs, fail="s3")
        assert sorted(summary.done) == [s for s in SUBJECTS if s != "s3"]
        assert list(summary.failed) == ["s3"] and "s3 broken" in summary.failed["s3"]
        assert seen == sorted([(s, "done") for s in SUBJECTS if s != "s3"] + [("s3", "failed")])
        assert tracker.max_networks == 1 and tracker.max_open <= jobs
        tables[jobs] = [(out / name).read_text() for name in ("scores.tsv", "errors.tsv")]
    assert tables[1] == tables[2]
    assert tables[1][0].count("\n") == len(SUBJECTS)  # header and six rows
    assert tables[1][1].splitlines()[1].startswith("s3\t")
