"""The SR's concepts and units, and markers that were not measured."""

from __future__ import annotations

import copy
import datetime

import highdicom as hd
import pytest

import _dicom_results_fixtures as fx
from csvdnet.dicom.provenance import Provenance
from csvdnet.dicom.results import write_results
from csvdnet.dicom.sr import build_sr


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_sr")
    return {c: fx.write_series(root / c, c) for c in ("flair", "dwi")}


def _items(sr):
    """(tracking id, concept, value, unit) of every measurement."""
    out = []
    for group in (sr.content.get_volumetric_roi_measurement_groups()
                  + sr.content.get_image_measurement_groups()):
        for m in group.get_measurements():
            out.append((group.tracking_identifier, (m.name.scheme_designator, m.name.value),
                        m.value, (m.unit.scheme_designator, m.unit.value)))
    return out


def test_not_measured_markers_are_absent(sources, tmp_path):
    report = copy.deepcopy(fx.REPORT)
    for task in ("cmb", "epvs"):  # no SWI: microbleeds not measured
        report["markers"][task].update(predicted=False, count=None,
                                       not_measured="no SWI in this study")
    for key in ("cmb_lobar", "cmb_deep", "cmb_count", "epvs_bg_count", "epvs_bg_grade"):
        report["measurements"][key] = None
    report["ordinal"]["total"] = 0  # a real 0 is written
    subject = fx.write_subject(tmp_path / "pred", report)
    files = write_results(subject, sources, tmp_path / "out", model_id=fx.MODEL_ID,
                          model_sha256=fx.SHA)
    assert [f.name for f in files][:2] == ["seg-flair.dcm", "seg-dwi.dcm"]
    assert not any("swi" in f.name for f in files)
    sr = hd.sr.srread(tmp_path / "out" / "sr.dcm")
    items = _items(sr)
    groups = {t for t, *_ in items}
    assert groups == {"csvdnet wmh", "csvdnet lacune", "csvdnet rssi", "csvdnet scores"}
    ordinal = [v for t, c, v, u in items if c == ("99CSVDNET", "ORDINALTOTAL")]
    assert ordinal == [0]
    volume = [(v, u) for t, c, v, u in items if t == "csvdnet wmh" and c == ("SCT", "118565006")]
    assert volume == [(pytest.approx(972.0), ("UCUM", "mm3"))]
    count = [(v, u) for t, c, v, u in items if t == "csvdnet lacune" and c == ("SCT", "246206008")]
    assert count == [(1, ("UCUM", "{counts}"))]
    fazekas = [u for t, c, v, u in items if c == ("99CSVDNET", "FAZEKASPV")]
    assert fazekas == [("UCUM", "1")]


def test_sr_without_any_segment_takes_the_study_from_a_source(sources):
    provenance = Provenance(fx.STUDY, fx.MODEL_ID, fx.SHA,
                            datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc))
    header = fx.read_headers(sources["flair"][:1])[0]
    sr = build_sr(fx.REPORT, [], provenance, fallback_evidence=header)
    assert sr.StudyInstanceUID == fx.STUDY and sr.PatientID == fx.PATIENT["PatientID"]
    assert sr.ContentDate == "20261207" and sr.ContentTime == "120000"
    assert {t for t, *_ in _items(hd.sr.Comprehensive3DSR.from_dataset(sr))} == {"csvdnet scores"}
