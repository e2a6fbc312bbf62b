"""Patient names and IDs kept out of the node's log and records.

The node logs study UIDs, never who the patient is; but the libraries it reuses word their
messages for a user at a desk (predict's "study ... (patient X, date Y): no flair series").
:class:`Redactor` learns each received study's PatientID and PatientName (their ``^``
components too) from the instances themselves, and replaces them with ``[patient]`` in every
log record that reaches the node's handlers and in every error stored in a study's record.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["PLACEHOLDER", "Redactor"]

PLACEHOLDER = "[patient]"
_SHORTEST = 3  # a 1-2 character name component would blank out unrelated text


class Redactor(logging.Filter):
    """A logging filter (and text scrubber) that removes known patient names and IDs."""

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def learn(self, patient_id: object, patient_name: object) -> None:
        """Remember one patient's ID and name (a DICOM PN: ``Family^Given^...``)."""
        name = str(patient_name or "")
        values = {str(patient_id or "").strip(), name.strip(),
                  *(part.strip() for part in name.split("^"))}
        with self._lock:
            self._values |= {v for v in values if len(v) >= _SHORTEST}

    def scrub(self, text: str) -> str:
        """``text`` with every known name / ID replaced (longest first)."""
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, PLACEHOLDER)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
