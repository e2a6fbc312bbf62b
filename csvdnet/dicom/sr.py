"""The Structured Report of one subject: Comprehensive 3D SR, TID 1500 Measurement Report.

One volumetric measurement group (TID 1411) per written segment, referencing it (SEG instance,
segment number, source series): the marker's volume (SCT 118565006 "Volume", UCUM mm3) and
count (SCT 246206008 "Number of lesions", UCUM {counts}), and what the ratings read from it
(Fazekas grades with WMH; counts by region with microbleeds and EPVS; EPVS grades). One group
(TID 1501) "csvdnet scores" holds each rule set's total and the ordinal head's total. Grades and
scores have UCUM "1". Concepts without a standard code are under ``99CSVDNET``
(:mod:`csvdnet.dicom.codes`, ``docs/contracts.md``). A quantity that report.json has as
``null`` (not measured) is left out of the SR, never written as 0.
"""

from __future__ import annotations

from typing import Any, Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from csvdnet import __version__
from csvdnet.dicom.codes import (CATEGORY, COUNT_UNIT, MARKER_BY_TASK, SCORE_UNIT, VOLUME_UNIT,
                                 private, private_scheme_item)
from csvdnet.dicom.provenance import MANUFACTURER, Provenance

__all__ = ["MARKER_QUANTITIES", "SR_SERIES", "SegmentRef", "build_sr", "score_concept"]

SR_SERIES = (9910, "csvdnet measurements")
VOLUME = hd.sr.CodedConcept.from_code(codes.SCT.Volume)
COUNT = hd.sr.CodedConcept(value="246206008", scheme_designator="SCT", meaning="Number of lesions")

MARKER_QUANTITIES: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "wmh": (("wmh_periventricular_ml", "WMHPV", "Periventricular WMH volume", "mm3"),
            ("wmh_deep_ml", "WMHDEEP", "Deep WMH volume", "mm3"),
            ("fazekas_pv", "FAZEKASPV", "Fazekas periventricular grade", "1"),
            ("fazekas_deep", "FAZEKASDEEP", "Fazekas deep white matter grade", "1")),
    "cmb": (("cmb_lobar", "CMBLOBAR", "Lobar microbleeds", "{counts}"),
            ("cmb_deep", "CMBDEEP", "Deep microbleeds", "{counts}"),
            ("cmb_infratentorial", "CMBINFRA", "Infratentorial microbleeds", "{counts}")),
    "epvs": (("epvs_bg_count", "EPVSBGCOUNT",
              "Basal ganglia EPVS on one side, axial slice with the most", "{counts}"),
             ("epvs_bg_grade", "EPVSBGGRADE", "Basal ganglia EPVS grade", "1"),
             ("epvs_cso_count", "EPVSCSOCOUNT",
              "Centrum semiovale EPVS on one side, slice with the most", "{counts}"),
             ("epvs_cso_grade", "EPVSCSOGRADE", "Centrum semiovale EPVS grade", "1")),
}
"""Marker -> report.json ``measurements`` key, private code, meaning, unit of each quantity its
group carries besides its volume and count."""
ORDINAL = private("ORDINALTOTAL", "Total SVD score, csvdnet ordinal head")
_UNITS = {"mm3": VOLUME_UNIT, "{counts}": COUNT_UNIT, "1": SCORE_UNIT}


def score_concept(rule_set: str, version: str) -> hd.sr.CodedConcept:
    """The private concept of a rule set's total (code value = the rule set's name)."""
    return private(rule_set.upper()[:16], f"Total score, rule set {rule_set} v{version}")


class SegmentRef:
    """Where one marker's segment is: SEG dataset, segment number, source series UID."""

    def __init__(self, task: str, seg: hd.seg.Segmentation, number: int, source_series: str):
        self.task, self.seg, self.number, self.source_series = task, seg, number, source_series


def _measurement(name: hd.sr.CodedConcept, value: Any, unit: str,
                 algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.Measurement | None:
    if value is None:
        return None  # not measured: absent, never 0
    if unit == "mm3":
        value = float(value) * 1000.0  # report.json has ml
    return hd.sr.Measurement(name=name, value=value, unit=_UNITS[unit], algorithm_id=algorithm)


def _marker_group(ref: SegmentRef, report: dict, provenance: Provenance,
                  algorithm: hd.sr.AlgorithmIdentification
                  ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    marker = report["markers"][ref.task]
    coding = MARKER_BY_TASK[ref.task]
    items = []
    if marker.get("kind") == "segmentation":
        items.append(_measurement(VOLUME, marker.get("volume_ml"), "mm3", algorithm))
    items.append(_measurement(COUNT, marker.get("count"), "{counts}", algorithm))
    for key, code, meaning, unit in MARKER_QUANTITIES.get(ref.task, ()):
        items.append(_measurement(private(code, meaning), report["measurements"].get(key), unit,
                                  algorithm))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=provenance.series_uid(f"track-{ref.task}", ref.source_series),
            identifier=f"csvdnet {ref.task}"),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=ref.seg.SOPClassUID, sop_instance_uid=ref.seg.SOPInstanceUID,
            segment_number=ref.number,
            source_series=hd.sr.SourceSeriesForSegmentation(ref.source_series)),
        finding_type=coding.type, finding_category=CATEGORY, algorithm_id=algorithm,
        measurements=[m for m in items if m is not None])


def _scores_group(report: dict, provenance: Provenance,
                  algorithm: hd.sr.AlgorithmIdentification
                  ) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    items = [_measurement(score_concept(name, str(score.get("version", ""))),
                          score.get("total"), "1", algorithm)
             for name, score in sorted(report.get("scores", {}).items())]
    ordinal = report.get("ordinal") or {}
    items.append(_measurement(ORDINAL, ordinal.get("total"), "1", algorithm))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=provenance.series_uid("track-scores"), identifier="csvdnet scores"),
        algorithm_id=algorithm, measurements=[m for m in items if m is not None])


def build_sr(report: dict, segments: Sequence[SegmentRef], provenance: Provenance,
             fallback_evidence: Dataset | None = None) -> hd.sr.Comprehensive3DSR:
    """The measurement report of one subject, referencing its SEG objects.

    Args:
        report: The subject's report.json.
        segments: Every written segment, in SEG order.
        provenance: Model, study, time.
        fallback_evidence: A source image for the patient / study attributes when there is no
            segment at all (a model that measures no marker of this study).
    """
    algorithm = hd.sr.AlgorithmIdentification(
        name="csvdnet", version=__version__, family=codes.cid7162.ArtificialIntelligence,
        parameters=[f"model={provenance.model_id}", f"model_sha256={provenance.model_sha256}"])
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=provenance.series_uid("device"), name="csvdnet", manufacturer_name=MANUFACTURER,
        model_name=provenance.model_id[:64] or "csvdnet", serial_number=provenance.model_sha256)
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    groups = [_marker_group(ref, report, provenance, algorithm) for ref in segments]
    groups.append(_scores_group(report, provenance, algorithm))
    content = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups)
    series_uid = provenance.series_uid("sr")
    evidence = [ref.seg for ref in segments]
    seen, unique = set(), []
    for seg in evidence:
        if seg.SOPInstanceUID not in seen:
            seen.add(seg.SOPInstanceUID)
            unique.append(seg)
    if not unique and fallback_evidence is not None:
        unique = [fallback_evidence]
    digest = (repr(sorted((r.task, r.seg.SOPInstanceUID, r.number) for r in segments))
              + repr({k: report.get(k) for k in ("markers", "measurements", "scores", "ordinal")}))
    sr = hd.sr.Comprehensive3DSR(
        evidence=unique, content=content, series_instance_uid=series_uid,
        series_number=SR_SERIES[0], series_description=SR_SERIES[1],
        sop_instance_uid=provenance.instance_uid(series_uid, digest.encode()),
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        coding_schemes=[private_scheme_item()])
    provenance.stamp(sr)
    return sr
