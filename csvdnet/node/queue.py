"""The node's durable spool and its queue of studies, both on disk.

Layout under the node's ``state_dir``::

    spool/<key>/<SOPInstanceUID>.dcm   every instance received, written durably before the
                                       C-STORE is answered (temporary name, fsync, rename)
    queue/<key>.json                   one record per study: state, revision, times, errors
    work/<key>/r<revision>/            csvdnet predict's output folder for one rating

``key`` is 16 hex of the sha1 of the StudyInstanceUID. A study moves ``received`` -> ``stable``
(no new instance for ``stable_seconds``) -> ``rating`` -> ``rated`` (its SEG / SR / report
objects written) -> ``sent`` (every destination acknowledged them), or -> ``failed`` (it could
not be rated; the reason is in the record). An instance arriving for a study already rating,
rated, sent or failed starts the next revision (``received`` again): the next rating gets its
own series UIDs (:class:`csvdnet.dicom.provenance.Provenance`), and the stale one is never sent.

Every record change is written atomically and durably before it counts. After a ``kill -9``,
:meth:`StudyQueue.recover` puts the files and the records back in agreement: a study caught in
``stable`` or ``rating`` is rated again (same revision, from scratch: the result UIDs are the
same), one caught sending sends its same objects again (a PACS keeps one copy of
a SOP instance it already has), an instance whose record never got written is found by its file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from csvdnet.fsutil import atomic_path, remove_stale_parts, write_text_atomic
from csvdnet.node.redact import Redactor

__all__ = ["STATES", "SpoolFull", "StudyQueue", "study_key"]

log = logging.getLogger(__name__)

STATES = ("received", "stable", "rating", "rated", "sent", "failed")
_LATE = ("rating", "rated", "sent", "failed")  # a new instance here starts the next revision


def study_key(study_uid: str) -> str:
    """Folder / record name of a study (16 hex of its UID's sha1: no patient data in paths)."""
    return hashlib.sha1(study_uid.encode()).hexdigest()[:16]


class SpoolFull(Exception):
    """Writing an instance would take the spool past its quota."""


class StudyQueue:
    """The spool and the study records of one node (one process per ``state_dir``).

    Thread-safe: the storage SCP's threads call :meth:`store`, the rating and sending loops
    the rest; one lock guards the records, instance files are written outside it.
    """

    def __init__(self, state_dir: Path, quota_bytes: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(state_dir)
        self.spool = self.root / "spool"
        self.records = self.root / "queue"
        self.work = self.root / "work"
        for folder in (self.spool, self.records, self.work):
            folder.mkdir(parents=True, exist_ok=True)
        self.quota = quota_bytes
        self.clock = clock
        self._lock = threading.RLock()
        self._studies: dict[str, dict[str, Any]] = {}
        self._last_instance: dict[str, float] = {}
        self._spool_bytes = 0
        self.counters = {"instances": 0, "refused": 0, "rejected": 0}
        self.redactor = Redactor()

    # ---------------------------------------------------------------- records

    def _save(self, record: dict[str, Any]) -> None:
        record["updated"] = self.clock()
        if record.get("error"):
            record["error"] = self.redactor.scrub(record["error"])
        for entry in record.get("sends", {}).values():
            if entry.get("error"):
                entry["error"] = self.redactor.scrub(entry["error"])
        write_text_atomic(self.records / f"{record['key']}.json",
                          json.dumps(record, indent=1, sort_keys=True) + "\n")
        self._studies[record["key"]] = record

    def set_state(self, key: str, state: str, **fields: Any) -> dict[str, Any]:
        """Move a study to ``state`` (durably), stamping ``times[state]``; returns a copy."""
        assert state in STATES, state
        with self._lock:
            record = self._studies[key]
            record.update(fields, state=state)
            record.setdefault("times", {})[state] = self.clock()
            self._save(record)
            return json.loads(json.dumps(record))

    def update(self, key: str, **fields: Any) -> None:
        """Change fields of a study's record without a change of state (durably)."""
        with self._lock:
            self._studies[key].update(fields)
            self._save(self._studies[key])

    def get(self, key: str) -> dict[str, Any]:
        """A copy of a study's record."""
        with self._lock:
            return json.loads(json.dumps(self._studies[key]))

    def studies(self) -> list[dict[str, Any]]:
        """Copies of every record, oldest first receipt first."""
        with self._lock:
            return sorted((json.loads(json.dumps(r)) for r in self._studies.values()),
                          key=lambda r: (r.get("times", {}).get("received", 0), r["key"]))

    def spool_bytes(self) -> int:
        with self._lock:
            return self._spool_bytes

    # ---------------------------------------------------------------- receiving

    def store(self, study_uid: str, sop_uid: str, data: bytes) -> str:
        """Write one received instance durably and record its study; returns the study key.

        Raises:
            SpoolFull: the quota would be exceeded (nothing written).
            OSError: the write failed (nothing left behind under the final name).
        """
        key = study_key(study_uid)
        with self._lock:
            if self._spool_bytes + len(data) > self.quota:
                raise SpoolFull(f"spool quota {self.quota / 1e6:.0f} MB reached "
                                f"({self._spool_bytes / 1e6:.0f} MB held)")
            self._spool_bytes += len(data)  # reserved before the write, outside the lock
        path = self.spool / key / f"{sop_uid}.dcm"
        try:
            path.parent.mkdir(exist_ok=True)
            old = path.stat().st_size if path.exists() else 0
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as handle:
                    handle.write(data)
        except BaseException:
            with self._lock:
                self._spool_bytes -= len(data)
            raise
        with self._lock:
            self._spool_bytes -= old  # a resent instance replaces its earlier copy
            self.counters["instances"] += 1
            self._last_instance[key] = self.clock()
            record = self._studies.get(key)
            if record is None:
                self._studies[key] = {"key": key, "study_uid": study_uid, "revision": 0}
                self.set_state(key, "received")
                log.info("study %s: first instance received", study_uid)
            elif record["state"] in _LATE and record["state"] != "rating" and not old:
                self.next_revision(record, "an instance arrived after its rating")
        return key

    def next_revision(self, record: dict[str, Any], why: str) -> None:
        """Start a study's next revision (``received`` again): its instances changed."""
        revision = record["revision"] + 1
        log.info("study %s: %s: rated again as revision %d", record["study_uid"], why, revision)
        self.set_state(record["key"], "received", revision=revision, error=None, sends={},
                       results=[], reported=False)

    def record_send(self, key: str, revision: int, destination: str,
                    entry: dict[str, Any]) -> dict[str, Any] | None:
        """Record one destination's send result for a ``rated`` (or ``failed``, its not-rated SR)
        study of this ``revision``; None (nothing recorded) when the study moved on meanwhile
        (a late instance)."""
        with self._lock:
            record = self._studies[key]
            if record["state"] not in ("rated", "failed") or record["revision"] != revision:
                return None
            record.setdefault("sends", {})[destination] = entry
            self._save(record)
            return json.loads(json.dumps(record))

    def restart_stable_clocks(self) -> None:
        """Every study waits ``stable_seconds`` again from now (at start: its sender may be
        about to send the rest)."""
        with self._lock:
            now = self.clock()
            for key in self._studies:
                self._last_instance[key] = now

    def instance_count(self, key: str) -> int:
        folder = self.spool / key
        return sum(1 for p in folder.glob("*.dcm")) if folder.is_dir() else 0

    def last_instance(self, key: str) -> float:
        with self._lock:
            return self._last_instance.get(key, 0.0)

    # ---------------------------------------------------------------- recovery

    def recover(self) -> list[str]:
        """Load the records and make them agree with the spool after a stop or a crash.

        Returns:
            One line per study whose state was changed.
        """
        changed = []
        with self._lock:
            remove_stale_parts(self.spool, recursive=True)
            remove_stale_parts(self.records)
            now = self.clock()
            for path in sorted(self.records.glob("*.json")):
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                    self._studies[record["key"]] = record
                except (OSError, ValueError, KeyError) as error:
                    log.error("%s: unreadable study record, left aside (%s)", path, error)
            for folder in sorted(p for p in self.spool.iterdir() if p.is_dir()):
                self._spool_bytes += sum(f.stat().st_size for f in folder.glob("*.dcm"))
                header = _header_of(folder)
                if header is None:
                    continue
                self.redactor.learn(header.get("PatientID"), header.get("PatientName"))
                uid = str(header.StudyInstanceUID)
                if folder.name not in self._studies:
                    self._studies[folder.name] = {"key": folder.name, "study_uid": uid,
                                                  "revision": 0}
                    self.set_state(folder.name, "received")
                    changed.append(f"study {uid}: instances found without a record: received")
            for key, record in self._studies.items():
                self._last_instance[key] = now  # the stable wait starts again
                state = record["state"]
                count = self.instance_count(key)
                if state in ("rated", "sent", "failed") and count > record.get("rated_instances",
                                                                                count):
                    self.next_revision(record, "instances arrived while the node was down")
                    changed.append(f"study {record['study_uid']}: late instances: revision "
                                   f"{record['revision']}")
                elif state in ("stable", "rating"):
                    self.set_state(key, "received")
                    changed.append(f"study {record['study_uid']}: was {state} when the node "
                                   f"stopped: rated again")
        return changed

    # ---------------------------------------------------------------- housekeeping

    def purge(self, keep_seconds: float) -> list[str]:
        """Remove the instances and work folders of studies sent (or failed) more than
        ``keep_seconds`` ago (their records stay, marked ``purged``)."""
        purged = []
        now = self.clock()
        for record in self.studies():
            done = record.get("times", {}).get(record["state"])
            if record["state"] not in ("sent", "failed") or record.get("purged") \
                    or done is None or now - done < keep_seconds:
                continue
            with self._lock:
                folder = self.spool / record["key"]
                freed = sum(f.stat().st_size for f in folder.glob("*.dcm")) \
                    if folder.is_dir() else 0
                shutil.rmtree(folder, ignore_errors=True)
                shutil.rmtree(self.work / record["key"], ignore_errors=True)
                self._spool_bytes -= freed
                self.update(record["key"], purged=True)
            purged.append(record["study_uid"])
        return purged


def _header_of(folder: Path) -> Any:
    """Study UID and patient attributes of a spool folder's first readable instance."""
    import pydicom

    for path in sorted(folder.glob("*.dcm")):
        try:
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
                "StudyInstanceUID", "PatientID", "PatientName"])
        except Exception:  # pydicom raises several types for a bad file
            continue
    return None


def read_records(state_dir: Path) -> Iterator[dict[str, Any]]:
    """The study records of a node's ``state_dir`` as they are on disk (for ``status``)."""
    for path in sorted((Path(state_dir) / "queue").glob("*.json")):
        try:
            yield json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue

