"""csvdnet.node's storage SCP, sender and health endpoint against a real Orthanc (no model).

The SCP runs in this process (csvdnet.node.scp.StorageServer, the node's own code); Orthanc
(Debian package ``orthanc``) is the PACS that sends to it and that results go to.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from _orthanc import ORTHANC, ORTHANC_MISSING, Orthanc, free_port, node_config
from _orthanc import tiny_mr as _mr
from csvdnet.node.config import load_config
from csvdnet.node.queue import StudyQueue, study_key
from csvdnet.node.scp import StorageServer
from csvdnet.node.sender import send_files
from csvdnet.node.status import HealthServer
from csvdnet.node.worker import Sender

pytestmark = pytest.mark.skipif(ORTHANC is None, reason=ORTHANC_MISSING)

MR = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture
def node(tmp_path, caplog):
    """An in-process SCP + queue, and an Orthanc that knows it as modality ``csvdnet``."""
    caplog.set_level(logging.INFO)
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", "CSVDNET", port)
    orthanc.start()
    path = node_config(tmp_path, port, [{"name": "pacs", "ae_title": "ORTHANC",
                                         "host": "127.0.0.1", "port": orthanc.dicom_port}],
                       allow=[{"ae_title": "ORTHANC", "host": "127.0.0.1"},
                              {"ae_title": "MODALITY"}], spool_quota_mb=1)
    config = load_config(path)
    queue = StudyQueue(config.state_dir, config.spool_quota_mb * 1e6)
    server = StorageServer(config, queue)
    server.start()
    yield config, queue, orthanc
    server.stop()
    orthanc.stop()


def _send(config, datasets, calling="MODALITY"):
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    for sop_class in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate(config.bind, config.port, ae_title=config.ae_title)
    if not assoc.is_established:
        return None
    try:
        statuses = []
        for ds in datasets:
            status = assoc.send_c_store(ds) if assoc.is_established else None
            statuses.append(int(status.Status) if status and "Status" in status else None)
        return statuses
    finally:
        assoc.release()


def test_orthanc_forwards_a_study_into_the_spool(node, caplog):
    config, queue, orthanc = node
    study = generate_uid()
    datasets = [_mr(study, n) for n in range(1, 6)]
    files = []
    for ds in datasets:
        path = config.state_dir.parent / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    study_id = orthanc.upload(files)[0]
    answer = orthanc.forward(study_id)
    assert answer["InstancesCount"] == 5 and answer["FailedInstancesCount"] == 0
    key = study_key(study)
    spooled = sorted(p.name for p in (config.state_dir / "spool" / key).iterdir())
    assert spooled == sorted(f"{ds.SOPInstanceUID}.dcm" for ds in datasets)
    assert queue.get(key)["state"] == "received"
    assert "SECRET" not in caplog.text  # patient name / ID never logged
    assert study in caplog.text


def test_calling_ae_not_on_the_allow_list_is_rejected(node, tmp_path, caplog):
    config, queue, orthanc = node
    assert _send(config, [_mr(generate_uid(), 1)], calling="INTRUDER") is None
    assert "calling AE title 'INTRUDER' from 127.0.0.1 is not on the allow-list" in caplog.text
    # a real Orthanc whose AE title is not on the list: its store fails, nothing is spooled
    stranger = Orthanc(tmp_path / "stranger", "CSVDNET", config.port, aet="STRANGER")
    stranger.start()
    try:
        ds = _mr(generate_uid(), 1)
        ds.save_as(tmp_path / "one.dcm", enforce_file_format=True)
        study_id = stranger.upload([tmp_path / "one.dcm"])[0]
        with pytest.raises(urllib.error.HTTPError):
            stranger.forward(study_id)
    finally:
        stranger.stop()
    assert "'STRANGER' from 127.0.0.1 is not on the allow-list" in caplog.text
    assert queue.studies() == [] and queue.counters["rejected"] == 2


def test_malformed_instance_among_good_ones(node, caplog):
    config, queue, _ = node
    study = generate_uid()
    bad_uid = _mr(study, 3)
    bad_uid.SeriesInstanceUID = "1.2.abc"
    datasets = [_mr(study, 1), _mr(study, 2, pixels=False), bad_uid, _mr(study, 5)]
    statuses = _send(config, datasets)
    assert statuses == [0x0000, 0xC000, 0xC000, 0x0000]
    assert queue.instance_count(study_key(study)) == 2
    assert f"instance {datasets[1].SOPInstanceUID} from MODALITY@127.0.0.1 refused: " \
           f"no pixel data" in caplog.text
    assert "SeriesInstanceUID '1.2.abc' is not a UID" in caplog.text
    # a SOP class the node does not need (CT) is not even negotiated
    ct = _mr(study, 9, sop_class="1.2.840.10008.5.1.4.1.1.2")
    assert _send(config, [ct]) is None
    assert queue.instance_count(study_key(study)) == 2


def test_spool_quota_answers_out_of_resources(node, caplog):
    config, queue, _ = node
    study = generate_uid()
    big = _mr(study, 1)
    big.Rows = big.Columns = 512
    big.PixelData = np.zeros((512, 512), np.uint16).tobytes()  # 0.5 MB of the 1 MB quota
    statuses = _send(config, [big, _mr(study, 2)] + [_mr(study, 3)])
    big2 = _mr(study, 4)
    big2.Rows = big2.Columns = 512
    big2.PixelData = big.PixelData
    statuses += _send(config, [big2])
    assert statuses == [0x0000, 0x0000, 0x0000, 0xA700]
    assert queue.instance_count(study_key(study)) == 3
    assert "spool quota 1 MB reached" in caplog.text


def test_many_studies_at_once_are_queued_in_order(node):
    """Six senders at once, each study's first instance after the previous study's: the queue
    keeps the order of first receipt (the order the rating loop takes them in)."""
    from pynetdicom import AE

    config, queue, _ = node
    studies = [generate_uid() for _ in range(6)]
    firsts = [threading.Event() for _ in studies]
    results = {}

    def send(n, study):
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(MR, ExplicitVRLittleEndian)
        assoc = ae.associate(config.bind, config.port, ae_title=config.ae_title)
        statuses = []
        try:
            for k in range(1, 9):
                if k == 1 and n:
                    firsts[n - 1].wait(30)
                statuses.append(int(assoc.send_c_store(_mr(study, k)).Status))
                firsts[n].set()
        finally:
            assoc.release()
        results[study] = statuses

    threads = [threading.Thread(target=send, args=(n, s)) for n, s in enumerate(studies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[s] == [0] * 8 for s in studies)
    records = queue.studies()
    assert [r["study_uid"] for r in records] == studies  # oldest first receipt first
    assert all(queue.instance_count(r["key"]) == 8 for r in records)


def test_results_wait_for_a_stopped_orthanc_then_are_stored(node, tmp_path):
    config, queue, orthanc = node
    study = generate_uid()
    results = []
    for n in (1, 2):
        ds = _mr(study, n, series_uid=generate_uid(entropy_srcs=[study, "results"]))
        ds.Modality = "OT"
        path = queue.root / "work" / f"r{n}.dcm"
        path.parent.mkdir(exist_ok=True, parents=True)
        ds.save_as(path, enforce_file_format=True)
        results.append(str(path.relative_to(queue.root)))
    key = queue.store(study, study + ".5", b"placeholder bytes of an input instance")
    queue.set_state(key, "rated", results=results, sends={})
    sender = Sender(config, queue)
    orthanc.stop()
    sender.send_due()
    entry = queue.get(key)["sends"]["pacs"]
    assert queue.get(key)["state"] == "rated" and entry["attempts"] == 1
    assert "did not answer" in entry["error"] and entry["next"] > time.time()
    orthanc.start()
    deadline = time.monotonic() + 20
    while queue.get(key)["state"] != "sent" and time.monotonic() < deadline:
        sender.send_due()
        time.sleep(0.3)
    assert queue.get(key)["state"] == "sent"
    assert queue.get(key)["sends"]["pacs"]["attempts"] >= 2
    series = orthanc.series_of(study)
    assert [len(s["Instances"]) for s in series] == [2]
    # sent again (a node killed before it recorded the send): Orthanc keeps one copy each
    assert send_files([queue.root / r for r in results], config.destinations[0],
                      config.ae_title) is None
    assert [len(s["Instances"]) for s in orthanc.series_of(study)] == [2]


def test_health_and_metrics_endpoint(node):
    config, queue, _ = node
    queue.store("1.2.3", "1.2.3.1", b"x" * 10)
    http = HealthServer("127.0.0.1", 0, config.state_dir,
                        lambda: {**queue.counters, "spool_bytes": queue.spool_bytes()},
                        healthy=lambda: True)
    http.start()
    try:
        base = f"http://127.0.0.1:{http.port}"
        health = json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    finally:
        http.stop()
    assert health == {"status": "ok"}
    assert 'csvdnet_node_studies{state="received"} 1.0' in metrics
    assert "csvdnet_node_instances_total 1.0" in metrics
    assert "csvdnet_node_spool_bytes 10.0" in metrics
    assert http.server.server_address[0] == "127.0.0.1"


def test_readme_routing_script_sends_only_mr_series_once_stable(tmp_path, caplog):
    """The README's Orthanc Lua script, run by a real Orthanc: an MR study's MR series reach
    the node after StableAge; a non-MR series of the same study (csvdnet's own results) does not."""
    from _orthanc import readme_lua

    caplog.set_level(logging.INFO)
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", "CSVDNET", port, lua=readme_lua())
    orthanc.start()
    path = node_config(tmp_path, port, [], allow=[{"ae_title": "ORTHANC", "host": "127.0.0.1"}])
    config = load_config(path)
    queue = StudyQueue(config.state_dir, 1e9)
    server = StorageServer(config, queue)
    server.start()
    try:
        study = generate_uid()
        datasets = [_mr(study, n) for n in range(1, 4)]
        other = _mr(study, 9, series_uid=generate_uid(),
                    sop_class="1.2.840.10008.5.1.4.1.1.7")  # a secondary capture, Modality OT
        other.Modality = "OT"
        for n, ds in enumerate([*datasets, other]):
            ds.save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
        orthanc.upload(sorted(tmp_path.glob("*.dcm")))
        key = study_key(study)
        deadline = time.monotonic() + 30
        while queue.instance_count(key) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        server.stop()
        orthanc.stop()
    assert sorted(p.name for p in (config.state_dir / "spool" / key).iterdir()) == \
        sorted(f"{ds.SOPInstanceUID}.dcm" for ds in datasets)
    assert "refused" not in caplog.text
