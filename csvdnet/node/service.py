"""``csvdnet node``: the running service (storage SCP, rating loop, sender, health endpoint).

Start-up order: the state folder's lock (one node per ``state_dir``), recovery of the queue
(:meth:`csvdnet.node.queue.StudyQueue.recover`), the model loaded once, then the SCP, the
sender thread and the HTTP endpoint; "ready" is logged when associations are accepted. SIGTERM
or SIGINT stops after the rating in progress; a ``kill -9`` loses nothing acknowledged (see
:mod:`csvdnet.node.queue`). The log goes to stderr and ``state_dir/node.log``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from csvdnet.node.config import NodeConfig
from csvdnet.node.queue import StudyQueue
from csvdnet.node.scp import StorageServer
from csvdnet.node.worker import Rater, Sender

__all__ = ["resident_bytes", "run_node"]

log = logging.getLogger("csvdnet.node")

_PURGE_EVERY = 60.0


def resident_bytes() -> int:
    """This process's resident memory (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_memory() -> None:
    """Give freed heap back to the system after a rating (``gc`` + glibc ``malloc_trim``):
    a rating allocates and frees hundreds of MB of arrays, and glibc otherwise keeps the freed
    pages in its arenas, so the node's resident memory would creep up study after study."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is not None:
        trim(0)


def _logging(config: NodeConfig, redactor: logging.Filter) -> None:
    form = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(), logging.FileHandler(config.state_dir / "node.log",
                                                                 encoding="utf-8")):
        handler.setFormatter(form)
        handler.addFilter(redactor)
        root.addHandler(handler)
    # pynetdicom's and highdicom's INFO lines describe datasets (highdicom's name the source
    # instances it copies patient attributes from): keep them out of the node's log
    for name in ("pynetdicom", "highdicom"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_node(config: NodeConfig, predictor: Any = None) -> None:
    """Run the node until SIGTERM / SIGINT.

    Args:
        config: The node's settings.
        predictor: An already loaded predictor (else loaded from ``config.model``).

    Raises:
        FolderLocked: another node runs on the same ``state_dir``.
        CsvdnetInputError: the model cannot be loaded.
        OSError: the port or the HTTP port cannot be bound.
    """
    from csvdnet.fsutil import folder_lock

    config.state_dir.mkdir(parents=True, exist_ok=True)
    queue = StudyQueue(config.state_dir, config.spool_quota_mb * 1e6)
    _logging(config, queue.redactor)
    with folder_lock(config.state_dir / "node.lock", "csvdnet node"):
        for line in queue.recover():
            log.info("recovered: %s", line)
        if predictor is None:
            from csvdnet.inference.predictor import Predictor

            started = time.perf_counter()
            predictor = Predictor.from_dir(config.model)
            log.info("model %s loaded in %.1f s", predictor.info.id, time.perf_counter() - started)
        _serve(config, queue, predictor)


def _serve(config: NodeConfig, queue: StudyQueue, predictor: Any) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rater, sender = Rater(config, queue, predictor), Sender(config, queue)
    server = StorageServer(config, queue)
    http = None
    if config.http_port is not None:
        from csvdnet.node.status import HealthServer

        def live() -> dict[str, float]:
            return {**queue.counters, "spool_bytes": queue.spool_bytes(),
                    "resident_bytes": resident_bytes()}

        http = HealthServer(config.http_bind, config.http_port, config.state_dir, live,
                            healthy=lambda: server._server is not None and not stop.is_set())
        http.start()
    queue.restart_stable_clocks()  # the model took a while to load: senders get their time
    server.start()
    sending = threading.Thread(target=sender.run, args=(stop,), daemon=True, name="node-sender")
    sending.start()
    log.info("ready: AE %s on %s:%d, %d destination(s), stable after %.0f s%s",
             config.ae_title, config.bind, config.port, len(config.destinations),
             config.stable_seconds, f", http {config.http_bind}:{http.port}" if http else "")
    purged_at = time.monotonic()
    try:
        while not stop.is_set():
            for key in rater.due():
                record = rater.rate(key)
                release_memory()
                log.info("study %s: %s (rss %.0f MB)", record["study_uid"], record["state"],
                         resident_bytes() / 1e6)
                if stop.is_set():
                    break
            if time.monotonic() - purged_at > _PURGE_EVERY:
                purged_at = time.monotonic()
                for uid in queue.purge(config.keep_hours * 3600):
                    log.info("study %s: instances and results removed (kept %.0f h)", uid,
                             config.keep_hours)
            stop.wait(0.5)
    finally:
        server.stop()
        stop.set()
        sending.join(timeout=60)
        if http is not None:
            http.stop()
        log.info("stopped")
