"""The node's DICOM Storage SCP (pynetdicom): who may associate, what it accepts, and the
durable write before each C-STORE is answered.

- Associations: the calling AE title (and address, where the allow-list names one) must be on
  ``allow``, the called AE title must be the node's; others get A-ASSOCIATE-RJ (permanent,
  "calling AE title not recognised") and one log line naming the title and the address.
- Presentation contexts: MR Image Storage, Enhanced MR Image Storage (what a study to rate holds)
  in any transfer syntax pynetdicom knows, and Verification (C-ECHO); nothing else.
- C-STORE: an instance is refused (0xC000 "cannot understand", one log line naming the peer,
  the SOP instance and the reason) when it cannot be decoded, lacks a study, series or instance
  UID, has no pixel data, or its header disagrees with the request; it is written to the spool
  (:meth:`csvdnet.node.queue.StudyQueue.store`: temporary name, fsync, rename) before success
  is answered; a full spool answers 0xA700 (out of resources) and writes nothing.

Log lines carry study / SOP instance UIDs, AE titles and addresses, never patient names or IDs.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from csvdnet.node.config import NodeConfig
from csvdnet.node.queue import SpoolFull, StudyQueue

__all__ = ["STORAGE_CLASSES", "StorageServer"]

log = logging.getLogger(__name__)

STORAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
                   "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage"}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


def _problem(ds: Any, request: Any) -> str | None:
    """Why a received dataset cannot be spooled, or None."""
    for name in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = str(ds.get(name, "") or "")
        if not value:
            return f"no {name}"
        if len(value) > 64 or not _UID.match(value):
            return f"{name} {value[:70]!r} is not a UID"
    if ds.SOPInstanceUID != request.AffectedSOPInstanceUID:
        return (f"SOPInstanceUID {ds.SOPInstanceUID} differs from the request's "
                f"{request.AffectedSOPInstanceUID}")
    if ds.SOPClassUID != request.AffectedSOPClassUID:
        return f"SOPClassUID {ds.SOPClassUID} differs from the request's"
    if "PixelData" not in ds:
        return "no pixel data"
    for name in ("Rows", "Columns"):
        if not ds.get(name):
            return f"no {name}"
    return None


class StorageServer:
    """The listening Storage SCP; :meth:`start` returns once it accepts associations."""

    def __init__(self, config: NodeConfig, queue: StudyQueue) -> None:
        self.config = config
        self.queue = queue
        self._server = None

    def _requested(self, event: Any) -> None:
        title = str(event.assoc.requestor.primitive.calling_ae_title).strip()
        address = event.assoc.requestor.address
        if not self.config.allows(title, address):
            with self.queue._lock:
                self.queue.counters["rejected"] += 1
            log.warning("association refused: calling AE title %r from %s is not on the "
                        "allow-list", title, address)
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)

    def _store(self, event: Any) -> int:
        peer = f"{event.assoc.requestor.ae_title.strip()}@{event.assoc.requestor.address}"
        request = event.request
        sop = request.AffectedSOPInstanceUID
        try:
            ds = event.dataset
            problem = _problem(ds, request)
        except Exception as error:  # a dataset pydicom cannot decode, whatever the reason
            problem = f"cannot be decoded ({type(error).__name__}: {error})"
        if problem:
            with self.queue._lock:
                self.queue.counters["refused"] += 1
            log.warning("instance %s from %s refused: %s", sop, peer, problem)
            return CANNOT_UNDERSTAND
        self.queue.redactor.learn(ds.get("PatientID"), ds.get("PatientName"))
        try:
            self.queue.store(str(ds.StudyInstanceUID), str(sop), event.encoded_dataset())
        except SpoolFull as error:
            log.error("instance %s of study %s from %s refused: %s", sop, ds.StudyInstanceUID,
                      peer, error)
            return OUT_OF_RESOURCES
        except OSError as error:
            log.error("instance %s of study %s from %s not written to the spool: %s", sop,
                      ds.StudyInstanceUID, peer, error.strerror or error)
            return OUT_OF_RESOURCES
        return SUCCESS

    def start(self) -> None:
        """Listen on the configured address and port (threads; returns at once)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.config.ae_title)
        ae.require_called_aet = True
        ae.maximum_associations = 16
        for uid in STORAGE_CLASSES:
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_REQUESTED, self._requested), (evt.EVT_C_STORE, self._store)]
        tls = self.config.tls.server_context() if self.config.tls else None
        self._server = ae.start_server((self.config.bind, self.config.port), block=False,
                                       evt_handlers=handlers, ssl_context=tls)
        log.info("storage SCP %s listening on %s:%d%s", self.config.ae_title, self.config.bind,
                 self.config.port, " (DICOM TLS)" if tls else "")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
