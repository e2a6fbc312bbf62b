"""The node's two loops: rating stable studies with the warm model, sending rated ones.

Rating reuses ``csvdnet predict``'s DICOM path as it is: the study's spool folder is converted
(:func:`csvdnet.dicom.run.open_dicom_cohort`), predicted (:func:`csvdnet.inference.cohort.predict_cohort`)
and its SEG / SR / report objects written (:func:`csvdnet.dicom.run.write_dicom_outputs`) into
``work/<key>/r<revision>/``. Subject ids are ``{uid_hash}`` (no patient data in names or logs).
A rating restarted after a crash starts again in an emptied folder: it gives the same result
UIDs (same study, model, revision and findings), and nothing of the interrupted one was sent.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from csvdnet.node.config import NodeConfig
from csvdnet.node.queue import StudyQueue
from csvdnet.node.sender import backoff, send_files

__all__ = ["Rater", "Sender", "SUBJECT_ID"]

log = logging.getLogger(__name__)

SUBJECT_ID = "{uid_hash}"


class RatingFailed(Exception):
    """A study that cannot be rated; the message is its one line."""


class Rater:
    """Rates one stable study at a time with a predictor loaded once."""

    def __init__(self, config: NodeConfig, queue: StudyQueue, predictor: Any) -> None:
        self.config = config
        self.queue = queue
        self.predictor = predictor

    def due(self) -> list[str]:
        """Keys of studies whose last instance is ``stable_seconds`` old, oldest study first."""
        now = self.queue.clock()
        return [r["key"] for r in self.queue.studies() if r["state"] == "received"
                and now - self.queue.last_instance(r["key"]) >= self.config.stable_seconds]

    def rate(self, key: str) -> dict[str, Any]:
        """Rate one study; returns its record after (``rated``, ``failed``, or ``received``
        again when instances arrived during the rating)."""
        queue = self.queue
        count = queue.instance_count(key)
        record = queue.set_state(key, "stable")
        record = queue.set_state(key, "rating", rated_instances=count)
        out = queue.work / key / f"r{record['revision']}"
        # from scratch: a rating of this revision cut short by a crash may have seen fewer
        # instances (nothing of it was sent: only rated studies are)
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        log.info("study %s: rating revision %d (%d instances)", record["study_uid"],
                 record["revision"], count)
        try:
            files, predict_seconds = self._rate(key, out, record["revision"])
            error = None
        except RatingFailed as failure:
            files, predict_seconds, error = [], None, str(failure)
        except Exception as failure:  # a study never stops the node; its record says why
            log.debug("study %s: rating crashed", record["study_uid"], exc_info=True)
            files, predict_seconds = [], None
            error = f"{type(failure).__name__}: {failure}"
        seconds = time.perf_counter() - started
        with queue._lock:
            now = queue.get(key)
            if now["state"] != "rating" or queue.instance_count(key) > count:
                if now["state"] == "rating":
                    queue.next_revision(now, "instances arrived during its rating")
                return queue.get(key)
            if error is not None:
                log.error("study %s could not be rated: %s", record["study_uid"], error)
                error = queue.redactor.scrub(error)
                results = self._failure_report(key, out, record["revision"], error)
                return queue.set_state(key, "failed", error=error, rating_seconds=seconds,
                                       results=results, sends={})
            results = [str(p.relative_to(queue.root)) for p in files]
            return queue.set_state(key, "rated", results=results, error=None, sends={},
                                   rating_seconds=seconds, predict_seconds=predict_seconds)

    def _failure_report(self, key: str, out: Path, revision: int, error: str) -> list[str]:
        """The "not rated" SR to send (:mod:`csvdnet.node.failure`), if configured."""
        from csvdnet.node.failure import write_failure_report

        sources = sorted((self.queue.spool / key).glob("*.dcm"))
        if not self.config.failure_report or not sources:
            return []
        try:
            path = write_failure_report(sources[0], error, revision, out / "not-rated.dcm")
        except Exception as failure:  # the study stays failed, with its reason, unsent
            log.error("study %s: the not-rated SR could not be written: %s",
                      self.queue.get(key)["study_uid"], failure)
            return []
        return [str(path.relative_to(self.queue.root))]

    def _rate(self, key: str, out: Path, revision: int) -> tuple[list[Path], float | None]:
        from csvdnet.dicom.run import DICOM_OUT, open_dicom_cohort, write_dicom_outputs
        from csvdnet.inference import outputs
        from csvdnet.inference.cohort import predict_cohort

        predictor = self.predictor
        subjects, problems = open_dicom_cohort(
            self.queue.spool / key, out, predictor.info.channels,
            predictor.preprocess_cfg.reference, rules=self.config.series_rules,
            id_template=SUBJECT_ID)
        if problems or len(subjects) != 1:
            raise RatingFailed("; ".join(problems.values()) or
                               f"{len(subjects)} studies in one study's spool folder")
        summary = predict_cohort(predictor, subjects, out, problems={})
        if summary.failed:
            raise RatingFailed("; ".join(summary.failed.values()))
        failures = write_dicom_outputs(out, subjects, [*summary.done, *summary.skipped],
                                       model_id=predictor.info.id,
                                       model_sha256=predictor.info.sha256, revision=revision)
        if failures:
            raise RatingFailed("; ".join(failures.values()))
        folder = outputs.subject_dir(out, subjects[0].id, False) / DICOM_OUT
        files = sorted(folder.glob("*.dcm"))
        if not files:
            raise RatingFailed(f"{folder}: no DICOM result written")
        return files, summary.seconds.get(subjects[0].id)


class Sender:
    """Sends rated studies to every destination, retrying with backoff until acknowledged."""

    def __init__(self, config: NodeConfig, queue: StudyQueue) -> None:
        self.config = config
        self.queue = queue
        self.last_error: str | None = None

    def send_due(self) -> None:
        """One pass: every rated study, every destination not yet done whose wait is over."""
        for record in self.queue.studies():
            if record["state"] not in ("rated", "failed") or not record.get("results"):
                continue
            for destination in self.config.destinations:
                entry = dict(record.get("sends", {}).get(destination.name) or {})
                if entry.get("done") or entry.get("next", 0.0) > self.queue.clock():
                    continue
                files = [self.queue.root / rel for rel in record["results"]]
                error = send_files(files, destination, self.config.ae_title,
                                   tls=self.config.tls)
                entry["attempts"] = entry.get("attempts", 0) + 1
                if error is None:
                    entry.update(done=True, error=None, at=self.queue.clock())
                else:
                    wait = backoff(entry["attempts"], self.config.retry_initial_seconds,
                                   self.config.retry_max_seconds)
                    entry.update(error=error, next=self.queue.clock() + wait)
                    self.last_error = error
                    log.warning("study %s: results not stored (try %d): %s; next try in "
                                "%.0f s", record["study_uid"], entry["attempts"], error, wait)
                updated = self.queue.record_send(record["key"], record["revision"],
                                                 destination.name, entry)
                if updated is None:
                    break  # the study moved on (late instance): its next rating is sent
                record = updated
            else:
                if all(record.get("sends", {}).get(d.name, {}).get("done")
                       for d in self.config.destinations):
                    with self.queue._lock:
                        if self.queue.get(record["key"])["revision"] == record["revision"] \
                                and self.queue.get(record["key"])["state"] == "rated":
                            self.queue.set_state(record["key"], "sent")
                            log.info("study %s: results stored to every destination",
                                     record["study_uid"])
                        elif self.queue.get(record["key"])["state"] == "failed" and \
                                not record.get("reported"):
                            self.queue.update(record["key"], reported=True)
                            log.info("study %s: not-rated SR stored to every destination",
                                     record["study_uid"])

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Send until ``stop`` is set; an unexpected error is logged and the loop goes on."""
        while not stop.is_set():
            try:
                self.send_due()
            except Exception:  # the loop must outlive one bad pass
                log.exception("sending pass failed")
            stop.wait(interval)
