"""Who made an output object and when: algorithm identification, stable UIDs, dates.

Every UID csvdnet writes is derived: ``2.25.<name-based UUID (version 5)>`` of the study, the
object's role, its source series and the model (``generate_uid(prefix=None, entropy_srcs=...)``
would ignore its sources and give a random UUID: measured, pydicom 3.0), so
a rerun of the same study by the same model gives the same SeriesInstanceUIDs; an instance UID
adds a digest of the object's content, so a rerun that finds the same gives the same object and
one that finds something else is a new instance of the same series. Dates and times are those
of ``report.json``'s ``created``, never the clock: the same findings give the same bytes.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import uuid

import highdicom as hd
from pydicom.sr.codedict import codes

from csvdnet import __version__

__all__ = ["MANUFACTURER", "Provenance", "derived_uid"]

MANUFACTURER = "csvdnet"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://csvdnet.invalid/dicom-uid")


def derived_uid(*parts: str) -> str:
    """``2.25.`` + the integer of the version-5 UUID of ``parts`` (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, chr(31).join(parts)).int}"


@dataclasses.dataclass(frozen=True)
class Provenance:
    """The model, the study and the time of one subject's result.

    Attributes:
        study_uid: StudyInstanceUID of the input study (kept by every output).
        model_id: The model's id as report.json names it.
        model_sha256: sha256 of the model (hex).
        created: When predict made the result (report.json ``created``).
        revision: 0 for a study's first rating; the DICOM node (:mod:`csvdnet.node`) rates a
            study again when instances arrive after its rating, and each later rating gets its
            own series UIDs (so a PACS never mixes two ratings' objects in one series).
    """

    study_uid: str
    model_id: str
    model_sha256: str
    created: datetime.datetime
    revision: int = 0

    def series_uid(self, role: str, source_series_uid: str = "") -> str:
        """The SeriesInstanceUID of an output series (``role`` e.g. ``seg-flair``, ``sr``)."""
        parts = ("csvdnet-series", self.study_uid, role, source_series_uid, self.model_sha256)
        return derived_uid(*parts, *([f"revision-{self.revision}"] if self.revision else []))

    @staticmethod
    def instance_uid(series_uid: str, content: bytes, number: int = 1) -> str:
        """The SOPInstanceUID of an object of ``series_uid`` with this content digest."""
        return derived_uid("csvdnet-instance", series_uid, str(number),
                           hashlib.sha256(content).hexdigest())

    @property
    def algorithm(self) -> hd.AlgorithmIdentificationSequence:
        """Algorithm Identification: csvdnet, its version, the model id and sha256."""
        return hd.AlgorithmIdentificationSequence(
            name="csvdnet", version=__version__,
            family=codes.cid7162.ArtificialIntelligence,
            source=self.model_id[:64] or "csvdnet",
            parameters={"model": self.model_id, "model_sha256": self.model_sha256})

    @property
    def equipment(self) -> dict:
        """General Equipment attributes highdicom's constructors take."""
        return {"manufacturer": MANUFACTURER,
                "manufacturer_model_name": (self.model_id or "csvdnet")[:64],
                "software_versions": __version__,
                "device_serial_number": self.model_sha256[:64]}

    def stamp(self, dataset) -> None:
        """Set every date / time highdicom took from the clock to ``created`` instead."""
        day = self.created.strftime("%Y%m%d")
        time = self.created.strftime("%H%M%S")
        for prefix in ("InstanceCreation", "Content", "Series"):
            setattr(dataset, f"{prefix}Date", day)
            setattr(dataset, f"{prefix}Time", time)
        if "DateOfSecondaryCapture" in dataset:
            dataset.DateOfSecondaryCapture = day
            dataset.TimeOfSecondaryCapture = time
        for item in dataset.get("ContributingEquipmentSequence", []):
            item.ContributionDateTime = day + time
        # highdicom draws the dimension organisation UID at random: derive it like the others
        dimension = derived_uid("csvdnet-dimension", str(dataset.SOPInstanceUID))
        for name in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
            for item in dataset.get(name, []):
                if "DimensionOrganizationUID" in item:
                    item.DimensionOrganizationUID = dimension

    @property
    def dates(self) -> dict:
        """Content and series date / time, from ``created`` (not the clock)."""
        day, time = self.created.date(), self.created.time().replace(microsecond=0)
        return {"content_date": day, "content_time": time, "series_date": day, "series_time": time}
