"""A cohort's subjects as a stage pipeline: one subject in the network at a time, the other
workers preparing the next subjects and finishing the previous ones.

Each subject goes through three stages: **prepare** (load, preprocess, sequence check),
**network**, and **finish** (invert, postprocess, regions, scoring, then writing its outputs).
``workers`` threads each take the most urgent stage that is ready, in this order:

1. the network of a prepared subject, when no subject is in the network (TensorFlow keeps its
   own intra-op pool for the one network step: two concurrent network calls would only fight
   over the same cores);
2. finishing a subject whose network is done (it frees that subject's volumes);
3. preparing the next subject, while fewer than ``in_flight`` subjects are started and not yet
   finished (memory stays bounded: with ``in_flight`` = ``workers`` = 2, one subject in the
   network and one prepared waiting or being finished).

So a worker that would wait for the network prepares or finishes another subject instead, and
both cores stay busy. With one worker the stages run strictly one subject after another.

Results come back to the calling thread in the order subjects finish (:func:`run_pipeline`
yields them); a subject whose stage raises comes back with its exception and the others go on.
``KeyboardInterrupt`` / ``SystemExit`` in a worker stops the pipeline (no new stage starts) and
is raised in the calling thread.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Callable, Iterator, Sequence

__all__ = ["Outcome", "run_pipeline"]


@dataclasses.dataclass
class Outcome:
    """One subject out of the pipeline.

    Attributes:
        subject: The subject as given.
        value: What ``finish`` returned (None when it failed).
        error: The exception of the stage that failed (None when it finished).
        seconds: Wall seconds its stages took (waits between stages not counted).
    """

    subject: Any
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0


class _State:
    """What the workers share, guarded by one condition variable."""

    def __init__(self, subjects: Sequence[Any], in_flight: int) -> None:
        self.cond = threading.Condition()
        self.todo = collections.deque(subjects)
        self.prepared: collections.deque = collections.deque()  # (subject, prepared, seconds)
        self.networked: collections.deque = collections.deque()  # (subject, prep, out, s)
        self.started = 0  # subjects taken from todo and not yet out
        self.in_flight = max(1, in_flight)
        self.network_busy = False
        self.stop = False
        self.results: collections.deque = collections.deque()
        self.fatal: BaseException | None = None
        self.remaining = len(subjects)

    def next_task(self) -> tuple[str, tuple] | None:
        """The most urgent ready stage (removed from its queue), or None."""
        if self.prepared and not self.network_busy:
            self.network_busy = True
            return "network", self.prepared.popleft()
        if self.networked:
            return "finish", self.networked.popleft()
        if self.todo and self.started < self.in_flight:
            self.started += 1
            return "prepare", (self.todo.popleft(),)
        return None

    def idle_forever(self) -> bool:
        """No stage is left for any worker to take now or later."""
        return self.stop or (not self.todo and not self.prepared and not self.networked
                             and not self.network_busy and self.started == 0)


def run_pipeline(subjects: Sequence[Any], prepare: Callable[[Any], Any],
                 network: Callable[[Any], Any], finish: Callable[[Any, Any, float], Any], *,
                 workers: int = 1, in_flight: int | None = None) -> Iterator[Outcome]:
    """Run every subject through ``prepare`` -> ``network`` -> ``finish``; yield each outcome.

    Args:
        subjects: The subjects, started in this order.
        prepare: ``subject -> prepared``.
        network: ``prepared -> network outputs``; never runs for two subjects at once.
        finish: ``(prepared, network outputs, network seconds) -> value`` (writes included).
        workers: Threads (1: one stage at a time, subjects one after another).
        in_flight: Subjects started and not finished at most (default ``workers``).

    Yields:
        One :class:`Outcome` per subject, in the order they finish.

    Raises:
        KeyboardInterrupt, SystemExit: From a worker (the others start no new stage).
    """
    workers = max(1, int(workers))
    state = _State(subjects, in_flight if in_flight is not None else workers)

    def out(subject: Any, seconds: float, value: Any = None,
            error: BaseException | None = None) -> None:
        with state.cond:
            state.started -= 1
            state.remaining -= 1
            state.results.append(Outcome(subject, value, error, seconds))
            state.cond.notify_all()

    def work() -> None:
        while True:
            with state.cond:
                task = state.next_task()
                while task is None:
                    if state.idle_forever():
                        return
                    state.cond.wait()
                    task = state.next_task()
                if state.stop:
                    return
            kind, item = task
            try:
                _run_stage(state, kind, item, prepare, network, finish, out)
            except BaseException as exc:  # KeyboardInterrupt / SystemExit: stop everything
                with state.cond:
                    state.fatal = state.fatal or exc
                    state.stop = True
                    state.cond.notify_all()
                return

    threads = [threading.Thread(target=work, name=f"csvdnet-cohort-{k}")
               for k in range(workers)]
    for thread in threads:
        thread.start()
    try:
        while True:
            with state.cond:
                while not state.results and state.fatal is None and state.remaining > 0:
                    state.cond.wait()
                if state.fatal is not None:
                    raise state.fatal
                if not state.results:
                    return
                outcome = state.results.popleft()
            yield outcome
    finally:
        with state.cond:
            state.stop = True
            state.cond.notify_all()
        for thread in threads:
            thread.join()


def _run_stage(state: _State, kind: str, item: tuple, prepare: Callable, network: Callable,
               finish: Callable, out: Callable) -> None:
    """One stage of one subject; its next stage queued, or the subject out (value or error).
    ``KeyboardInterrupt`` / ``SystemExit`` propagate."""
    subject = item[0]
    started = time.perf_counter()
    try:
        if kind == "prepare":
            prepared = prepare(subject)
            seconds = time.perf_counter() - started
            with state.cond:
                state.prepared.append((subject, prepared, seconds))
                state.cond.notify_all()
        elif kind == "network":
            _, prepared, seconds = item
            try:
                outputs = network(prepared)
            finally:
                with state.cond:
                    state.network_busy = False
                    state.cond.notify_all()
            taken = time.perf_counter() - started
            with state.cond:
                state.networked.append((subject, prepared, outputs, seconds + taken, taken))
                state.cond.notify_all()
        else:
            _, prepared, outputs, seconds, network_seconds = item
            value = finish(prepared, outputs, network_seconds)
            out(subject, seconds + time.perf_counter() - started, value)
    except Exception as exc:  # a bad subject never stops the cohort
        spent = item[2] if kind == "network" else item[3] if kind == "finish" else 0.0
        out(subject, spent + time.perf_counter() - started, error=exc)
