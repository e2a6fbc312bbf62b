"""The report pages as Secondary Capture: the summary's text and report.html's montage."""

from __future__ import annotations

import copy
import datetime

import numpy as np
import pytest

import _dicom_results_fixtures as fx
from csvdnet.dicom.capture import build_captures, montage_rows, summary_lines
from csvdnet.dicom.provenance import Provenance
from csvdnet.inference import report_pictures
from csvdnet.inference.report import write_report_html
from csvdnet.synth import generate_cohort
from test_inference_report import build_result

PROVENANCE = Provenance(fx.STUDY, fx.MODEL_ID, fx.SHA,
                        datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc))


@pytest.fixture(scope="module")
def html_result(tmp_path_factory):
    root = tmp_path_factory.mktemp("capture")
    generate_cohort(root / "cohort", 1, 5, profile="tiny", progress=False)
    result = build_result(root / "cohort" / "sub-0000")
    return write_report_html(result, root / "report.html"), result


def test_montage_is_report_html_pictures(html_result):
    path, result = html_result
    rows = montage_rows(path)
    assert len(rows) == len(report_pictures.montage_slices(result))
    for level, cells in rows:
        assert level.startswith("z ") and level.endswith(" mm")
        assert [c for c, _ in cells] == [c for c, _ in rows[0][1]]
        assert set(c for c, _ in cells) == set(result.sequences)
        assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for _, p in cells)
    pictures = np.concatenate([p.reshape(-1, 3) for _, cells in rows for _, p in cells])
    assert (np.ptp(pictures, axis=1) > 60).any()  # coloured outlines drawn, not only grey


def test_captures_carry_the_study_and_the_pages(html_result, tmp_path):
    path, _ = html_result
    header = fx.read_headers(fx.write_series(tmp_path / "flair", "flair")[:1])[0]
    summary_only = build_captures(fx.REPORT, tmp_path / "missing.html", header, PROVENANCE)
    pages = build_captures(fx.REPORT, path, header, PROVENANCE)
    assert len(summary_only) == 1 and len(pages) == 2
    for number, sc in enumerate(pages, start=1):
        assert sc.StudyInstanceUID == fx.STUDY and sc.PatientID == fx.PATIENT["PatientID"]
        assert (sc.SeriesNumber, sc.SeriesDescription, sc.InstanceNumber) == (
            9920, "csvdnet report", number)
        assert sc.PhotometricInterpretation == ("MONOCHROME2", "RGB")[number - 1]
        assert sc.BurnedInAnnotation == "YES"
        assert sc.DateOfSecondaryCapture == "20261207"
    assert pages[0].SOPInstanceUID == summary_only[0].SOPInstanceUID
    assert pages[0].SeriesInstanceUID == pages[1].SeriesInstanceUID
    assert pages[1].Columns > 200 and pages[1].Rows > 200


def test_summary_says_not_measured_never_zero():
    report = copy.deepcopy(fx.REPORT)
    report["markers"]["cmb"].update(predicted=False, count=None,
                                    not_measured="no SWI or T2* series")
    report["measurements"].update(cmb_count=None, cmb_lobar=None, cmb_deep=None)
    text = "\n".join(t for _, t in summary_lines(report, _patient()))
    assert "Microbleeds: not measured" in text and "(no SWI or T2* series)" in text
    assert "Fazekas periventricular 2, deep not measured" in text
    assert "staals-2014: undecided / 4" in text and "undecided: wmh" in text
    assert "caa-svd-2016: 1 / 6" in text
    assert "ordinal head: 3   (no staals-2014 total to compare)" in text
    assert "Lacunes: 1 (0.04 ml)" in text and "WMH: 0.97 ml" in text
    assert f"Patient {fx.PATIENT['PatientID']}" in text


def _patient():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientID, ds.StudyDate = fx.PATIENT["PatientID"], fx.PATIENT["StudyDate"]
    return ds
