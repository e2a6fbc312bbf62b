"""Results to the destinations by C-STORE, with retries and backoff, kept until acknowledged.

A rated study's objects (the files :func:`csvdnet.dicom.results.write_results` wrote) go to each
destination in one association. A destination counts as done only when every object got a
success or warning status; otherwise the study stays ``rated``, the record keeps the attempt
count, the next try time (``retry.initial_seconds`` doubling up to ``retry.max_seconds``) and the
reason, and the objects stay on disk. Sending the same objects again is harmless: their SOP
instance UIDs are derived from the study, the model and the content, so a PACS keeps one copy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from csvdnet.node.config import Destination, Tls

__all__ = ["backoff", "send_files"]

log = logging.getLogger(__name__)

_OK = {0x0000, 0xB000, 0xB006, 0xB007}  # success and the storage warnings (PS3.4 B.2.3)


def backoff(attempts: int, initial: float, most: float) -> float:
    """Seconds to wait after ``attempts`` failed tries (1, 2, ...)."""
    return min(most, initial * 2 ** max(0, attempts - 1))


def send_files(files: Sequence[Path], destination: Destination, calling_ae: str,
               timeout: float = 30.0, tls: Tls | None = None) -> str | None:
    """C-STORE every file to ``destination`` in one association (over TLS with ``tls``'s
    certificates when the destination says ``tls: true``).

    Returns:
        None when every object was acknowledged, else one line saying why not.
    """
    import pydicom
    from pynetdicom import AE

    datasets = []
    for path in files:
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as error:  # pydicom raises several types for a bad file
            return f"{path}: not a readable DICOM file ({error})"
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                       for ds in datasets})
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    where = f"{destination.name} ({destination.ae_title}@{destination.host}:{destination.port})"
    tls_args = None
    if destination.tls:
        if tls is None:
            return f"{where} wants TLS and the node has no tls section"
        tls_args = (tls.client_context(), destination.host)
    try:
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                             tls_args=tls_args)
    except OSError as error:  # a TLS handshake refused (ssl.SSLError)
        return f"{where}: {error}"
    if not assoc.is_established:
        reason = "rejected the association" if assoc.is_rejected else \
            "did not answer (association not established)"
        return f"{where} {reason}"
    try:
        for path, ds in zip(files, datasets):
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else None
            if code not in _OK:
                return (f"{where} answered {'no status' if code is None else hex(code)} "
                        f"to {path.name} (SOP instance {ds.SOPInstanceUID})")
    finally:
        if assoc.is_established:
            assoc.release()
    log.info("%d object(s) of study %s stored to %s", len(datasets),
             datasets[0].StudyInstanceUID if datasets else "-", where)
    return None
