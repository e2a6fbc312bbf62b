"""csvdnet node end to end with a real Orthanc and the shipped model, through its faults.

One study (a ``tiny`` synthetic subject written as vendor-like DICOM) goes Orthanc -> node
-> Orthanc while the node is killed (``kill -9``) in the middle of receiving it and in the
middle of rating it, and Orthanc is down when the results are ready. At the end Orthanc holds
exactly one set of result series, equal to what ``csvdnet predict`` makes of the same files.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest

from _dicom_study import tiny_study, tiny_subject
from _orthanc import MODEL, ORTHANC, ORTHANC_MISSING, NodeProcess, Orthanc, free_port, node_config

pytestmark = [pytest.mark.skipif(ORTHANC is None, reason=ORTHANC_MISSING), pytest.mark.slow]

CSVDNET = str(Path(sys.executable).parent / "csvdnet")


def _wait(what, predicate, timeout, node=None, poll=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if node is not None and node.process.poll() is not None:
            raise RuntimeError(f"node exited while waiting for {what}:\n{node.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s" +
                               (f":\n{node.log()[-3000:]}" if node else ""))
        time.sleep(poll)


def _spooled(node):
    return sorted((Path(node.state) / "spool").glob("*/*.dcm"))


def _state(node):
    records = node.records()
    return records[0] if records else {}


def _numbers(item, found=None):
    """(concept meaning, value) of every NUM item of an SR content tree, in order."""
    found = [] if found is None else found
    for child in item.get("ContentSequence", []):
        if child.ValueType == "NUM":
            name = child.ConceptNameCodeSequence[0].CodeMeaning
            value = child.MeasuredValueSequence[0].NumericValue \
                if child.get("MeasuredValueSequence") else None
            found.append((name, None if value is None else float(value)))
        _numbers(child, found)
    return found


def _result_objects(orthanc, study_uid):
    """Orthanc's result series of the study: SeriesInstanceUID -> datasets read back."""
    out = {}
    for series in orthanc.series_of(study_uid):
        if series["MainDicomTags"].get("Modality") not in ("SEG", "SR", "OT"):
            continue
        out[series["MainDicomTags"]["SeriesInstanceUID"]] = [
            pydicom.dcmread(__import__("io").BytesIO(orthanc.get(f"/instances/{i}/file")))
            for i in series["Instances"]]
    return out


def test_round_trip_through_kills_and_a_pacs_outage(tmp_path):
    subject = tiny_subject(tmp_path / "synth")
    study = tiny_study(subject, tmp_path / "dicom", extras=False)
    files = sorted(p for p in (tmp_path / "dicom").rglob("*") if p.is_file())
    # csvdnet predict on the same files, meanwhile (what the node's results must equal)
    predict = subprocess.Popen([CSVDNET, "predict", str(tmp_path / "dicom"), "--model",
                                str(MODEL), "--out", str(tmp_path / "predict"), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", "CSVDNET", port)
    orthanc.start()
    http_port = free_port()
    node = NodeProcess(node_config(tmp_path, port, [
        {"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port}],
        http_port=http_port, stable=3))
    try:
        study_id = orthanc.upload(files)[0]
        node.start()

        # 1. killed while receiving: what was acknowledged is whole, the rest comes again
        orthanc.forward(study_id, asynchronous=True)
        # polled often: each durable write takes milliseconds, the study must not be all in
        _wait("a quarter of the study spooled", lambda: len(_spooled(node)) >= len(files) // 4,
              60, node, poll=0.01)
        node.kill9()
        held = _spooled(node)
        assert 0 < len(held) < len(files)
        for path in held:  # every spooled instance is complete (written, synced, renamed)
            pydicom.dcmread(path).PixelData
        node.start()
        answer = orthanc.forward(study_id)  # the PACS sends again (its job had failed)
        assert answer["FailedInstancesCount"] == 0
        assert len(_spooled(node)) == len(files)

        # 2. killed while rating; Orthanc down when the results are ready
        _wait("rating", lambda: _state(node).get("state") == "rating", 60, node)
        time.sleep(6)  # inside conversion / preprocessing / the network
        node.kill9()
        assert _state(node)["state"] == "rating"
        orthanc.stop()
        node.start()
        record = _wait("results waiting for Orthanc", lambda: (
            _state(node).get("state") == "rated"
            and _state(node).get("sends", {}).get("pacs", {}).get("attempts", 0) >= 2)
            and _state(node), 180, node)
        assert "did not answer" in record["sends"]["pacs"]["error"]
        status = subprocess.run([CSVDNET, "node", "status", "--config", str(node.config)],
                                capture_output=True, text=True, check=True).stdout
        assert "rated 1" in status and "did not answer" in status and study.study_uid in status
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics",
                                         timeout=10).read().decode()
        assert 'csvdnet_node_studies{state="rated"} 1.0' in metrics
        orthanc.start()
        _wait("sent", lambda: _state(node).get("state") == "sent", 60, node)
        time.sleep(2)  # nothing more may arrive
        record = _state(node)
        assert record["revision"] == 0 and record["rated_instances"] == len(files)
    finally:
        node.stop()
        stop_log = node.log()

    # 3. exactly one set of results in Orthanc, equal to csvdnet predict's on the same files
    assert predict.wait(timeout=600) == 0, predict.stdout.read().decode()[-3000:]
    pred_dir = next(p for p in (tmp_path / "predict").iterdir()
                    if not p.name.startswith(".") and (p / "dicom").is_dir())
    expected = {}
    for path in sorted((pred_dir / "dicom").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        expected.setdefault(ds.SeriesInstanceUID, []).append(ds)
    got = _result_objects(orthanc, study.study_uid)
    orthanc.stop()
    assert sorted(got) == sorted(expected)  # same derived series UIDs, no extra series
    assert len(record["results"]) == sum(len(v) for v in got.values())  # no duplicate
    for uid, datasets in got.items():
        want = expected[uid]
        assert len(datasets) == len(want)
        for ds, ref in zip(sorted(datasets, key=lambda d: d.InstanceNumber),
                           sorted(want, key=lambda d: d.InstanceNumber)):
            assert ds.StudyInstanceUID == study.study_uid
            if ds.Modality == "SEG":
                assert [s.SegmentLabel for s in ds.SegmentSequence] == \
                    [s.SegmentLabel for s in ref.SegmentSequence]
                assert np.array_equal(ds.pixel_array, ref.pixel_array), ds.SeriesDescription
            elif ds.Modality == "SR":
                assert _numbers(ds) and _numbers(ds) == _numbers(ref)
    # the log names studies, never the patient
    assert study.study_uid in stop_log
    for secret in ("SYNTH0001", "SYNTH^"):
        assert secret not in stop_log
        assert secret not in (tmp_path / "node.stderr").read_text(errors="replace")


def test_unratable_study_gets_a_not_rated_sr_and_a_late_instance_a_second_one(tmp_path):
    """A study without a usable FLAIR fails with its reason in the status and a small SR in
    the PACS; a late instance makes it revision 1, whose SR is a series of its own."""
    from pydicom.uid import generate_uid

    from _orthanc import tiny_mr

    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", "CSVDNET", port)
    orthanc.start()
    node = NodeProcess(node_config(tmp_path, port, [
        {"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port}],
        stable=2))
    study = generate_uid()
    try:
        node.start()
        for n in (1, 2, 3, 4):
            ds = tiny_mr(study, n)
            ds.save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
        study_id = orthanc.upload([tmp_path / f"{n}.dcm" for n in (1, 2, 3)])[0]
        orthanc.forward(study_id)
        _wait("failed and reported", lambda: _state(node).get("reported"), 120, node)
        orthanc.upload([tmp_path / "4.dcm"])
        orthanc.forward(study_id, mr_only=True)  # the node takes no SR: only the MR series
        _wait("revision 1 reported", lambda: _state(node).get("revision") == 1
              and _state(node).get("reported"), 120, node)
        status = subprocess.run([CSVDNET, "node", "status", "--config", str(node.config)],
                                capture_output=True, text=True, check=True).stdout
    finally:
        node.stop()
    try:
        reports = [s for s in orthanc.series_of(study)
                   if s["MainDicomTags"].get("Modality") == "SR"]
        texts = {}
        for series in reports:
            assert len(series["Instances"]) == 1
            ds = pydicom.dcmread(__import__("io").BytesIO(
                orthanc.get(f"/instances/{series['Instances'][0]}/file")))
            texts[ds.SeriesDescription] = ds.ContentSequence[0].TextValue
            assert ds.PatientID == "SECRETID" and ds.StudyInstanceUID == study
    finally:
        orthanc.stop()
    assert sorted(texts) == ["csvdnet: not rated", "csvdnet: not rated (rating 2)"]
    for text in texts.values():
        assert text.startswith("csvdnet could not rate this study: ")
        assert "SECRET" not in text
    assert "failed 1" in status and "rev 1" in status and "SECRET" not in status
    assert "SECRET" not in node.log()
