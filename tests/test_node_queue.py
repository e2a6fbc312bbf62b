"""csvdnet.node: config checks, the durable spool and the study queue's recovery (no network)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from csvdnet.errors import CsvdnetInputError
from csvdnet.node.config import load_config
from csvdnet.node.queue import SpoolFull, StudyQueue, study_key
from csvdnet.node.sender import backoff
from csvdnet.node.status import format_status, summarize

MODEL = "saved_models/csvdnet-synthetic/2"


def _config(tmp_path, **changes):
    raw = {"ae_title": "CSVDNET", "port": 11112, "model": MODEL, "state_dir": "state",
           "allow": [{"ae_title": "ORTHANC", "host": "127.0.0.1"}, {"ae_title": "SCANNER"}],
           "destinations": [{"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1",
                             "port": 4242}]}
    raw.update(changes)
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_defaults_and_allow_list(tmp_path):
    config = load_config(_config(tmp_path))
    assert config.bind == "127.0.0.1" and config.http_bind == "127.0.0.1"
    assert config.state_dir == (tmp_path / "state").resolve()
    assert config.stable_seconds == 30 and config.http_port is None
    assert config.allows("ORTHANC", "127.0.0.1") and config.allows("ORTHANC  ", "127.0.0.1")
    assert not config.allows("ORTHANC", "10.0.0.5")  # tied to its address
    assert config.allows("SCANNER", "10.0.0.5")  # any address
    assert not config.allows("INTRUDER", "127.0.0.1")


@pytest.mark.parametrize("changes, words", [
    ({"ae_title": "A" * 17}, "ae_title"),
    ({"port": 70000}, "port: 70000"),
    ({"allow": []}, "allow is required"),
    ({"allow": [{"host": "127.0.0.1"}]}, "allow[0]: needs ae_title"),
    ({"allow": [{"ae_title": "X", "host": "pacs.local"}]}, "allow[0].host"),
    ({"bind": "everywhere"}, "bind"),
    ({"stable_seconds": -1}, "stable_seconds"),
    ({"colour": "blue"}, "unknown key(s) colour"),
    ({"destinations": [{"ae_title": "X", "host": "h"}]}, "destinations[0]: needs"),
    ({"tls": {"certificate": "node.crt"}}, "tls: needs exactly certificate, private_key, "
                                           "trusted"),
    ({"tls": {"certificate": "a", "private_key": "b", "trusted": "c"}}, "tls.certificate: "),
    ({"destinations": [{"ae_title": "X", "host": "h", "port": 1, "tls": True}]},
     "a destination has tls: true but there is no tls section"),
    ({"failure_report": "yes"}, "failure_report: 'yes' is not true or false"),
])
def test_config_errors_name_the_key(tmp_path, changes, words):
    with pytest.raises(CsvdnetInputError) as error:
        load_config(_config(tmp_path, **changes))
    assert "node.yaml" in str(error.value) and words in str(error.value)


def _queue(tmp_path, quota=1e9, now=None):
    clock = now or [1000.0]
    return StudyQueue(tmp_path / "state", quota, clock=lambda: clock[0]), clock


def test_store_is_durable_and_recorded(tmp_path):
    queue, _ = _queue(tmp_path)
    key = queue.store("1.2.3", "1.2.3.4", b"x" * 100)
    assert key == study_key("1.2.3")
    assert (tmp_path / "state" / "spool" / key / "1.2.3.4.dcm").read_bytes() == b"x" * 100
    record = json.loads((tmp_path / "state" / "queue" / f"{key}.json").read_text())
    assert record["state"] == "received" and record["study_uid"] == "1.2.3"
    assert not [p for p in (tmp_path / "state" / "spool" / key).iterdir() if ".part" in p.name]
    queue.store("1.2.3", "1.2.3.4", b"y" * 100)  # resent: replaces, counted once
    assert queue.spool_bytes() == 100 and queue.instance_count(key) == 1


def test_quota_refuses_and_writes_nothing(tmp_path):
    queue, _ = _queue(tmp_path, quota=250)
    queue.store("1.2.3", "1.2.3.1", b"x" * 200)
    with pytest.raises(SpoolFull, match="quota"):
        queue.store("1.2.3", "1.2.3.2", b"x" * 100)
    assert queue.instance_count(study_key("1.2.3")) == 1 and queue.spool_bytes() == 200


def test_recover_after_kill_in_each_state(tmp_path):
    queue, clock = _queue(tmp_path)
    keys = {state: queue.store(f"1.2.{n}", f"1.2.{n}.1", b"x") for n, state in
            enumerate(["received", "stable", "rating", "rated", "sent", "failed"])}
    for state, key in keys.items():
        if state != "received":
            queue.set_state(key, state, rated_instances=1)
    # a late instance written while the node was down, and an instance without a record
    # (killed between the spool write and the record): both found by their files
    (tmp_path / "state" / "spool" / keys["sent"] / "1.2.4.2.dcm").write_bytes(b"x")
    orphan = tmp_path / "state" / "spool" / study_key("9.9")
    orphan.mkdir()
    (orphan / ".9.9.1.dcm.99999999.0badc0de.part").write_bytes(b"half")  # killed writer
    clock[0] = 2000.0
    again, _ = _queue(tmp_path, now=clock)
    lines = again.recover()
    states = {k: again.get(k)["state"] for k in keys.values()}
    assert states[keys["stable"]] == states[keys["rating"]] == "received"  # rated again
    assert again.get(keys["rating"])["revision"] == 0  # same revision: same result UIDs
    assert states[keys["rated"]] == "rated" and states[keys["failed"]] == "failed"
    assert states[keys["sent"]] == "received" and again.get(keys["sent"])["revision"] == 1
    assert not list(orphan.iterdir())  # the killed writer's part file is gone
    assert any("was rating" in line for line in lines)
    assert again.last_instance(keys["received"]) == 2000.0  # the stable wait starts again


def test_late_instance_starts_next_revision(tmp_path):
    queue, _ = _queue(tmp_path)
    key = queue.store("1.2.3", "1.2.3.1", b"x")
    queue.set_state(key, "sent", rated_instances=1)
    queue.store("1.2.3", "1.2.3.1", b"x")  # the same instance again: nothing new
    assert queue.get(key)["state"] == "sent"
    queue.store("1.2.3", "1.2.3.2", b"x")
    record = queue.get(key)
    assert record["state"] == "received" and record["revision"] == 1


def test_send_bookkeeping_ignores_a_study_that_moved_on(tmp_path):
    queue, _ = _queue(tmp_path)
    key = queue.store("1.2.3", "1.2.3.1", b"x")
    queue.set_state(key, "rated", results=[], sends={})
    queue.store("1.2.3", "1.2.3.2", b"x")  # late: revision 1
    assert queue.record_send(key, 0, "pacs", {"done": True}) is None
    assert queue.get(key)["sends"] == {}


def test_backoff_doubles_to_its_ceiling():
    assert [backoff(n, 5, 60) for n in range(1, 6)] == [5, 10, 20, 40, 60]


def test_status_summary(tmp_path):
    queue, clock = _queue(tmp_path)
    key = queue.store("1.2.3", "1.2.3.1", b"x")
    queue.set_state(key, "failed", error="no FLAIR series")
    other = queue.store("1.2.4", "1.2.4.1", b"x")
    clock[0] += 50
    queue.set_state(other, "sent", rating_seconds=12.5)
    summary = summarize(queue.studies())
    assert summary["counts"]["failed"] == 1 and summary["counts"]["sent"] == 1
    assert summary["last_error"]["error"] == "no FLAIR series"
    text = format_status(summary)
    assert "failed 1" in text and "no FLAIR series" in text and "rating 12.5 s" in text
    assert "received_to_sent 50.0 s" in text


def test_one_node_per_state_dir(tmp_path):
    from csvdnet.fsutil import FolderLocked, folder_lock

    state = tmp_path / "state"
    with folder_lock(state / "node.lock", "csvdnet node"):
        with pytest.raises(FolderLocked):
            with folder_lock(state / "node.lock", "csvdnet node"):
                pass
    assert os.listdir(state) == []


def test_patient_names_and_ids_are_scrubbed_from_logs_and_records(tmp_path, caplog):
    import logging

    queue, _ = _queue(tmp_path)
    queue.redactor.learn("PAT0042", "DOE^JANE^Q")
    key = queue.store("1.2.3", "1.2.3.1", b"x")
    queue.set_state(key, "failed", error="study 1.2.3 (patient PAT0042, date 20260101): no FLAIR")
    assert queue.get(key)["error"] == "study 1.2.3 (patient [patient], date 20260101): no FLAIR"
    logger = logging.getLogger("csvdnet.test_redact")
    handler = logging.StreamHandler(open(tmp_path / "log.txt", "w"))
    handler.addFilter(queue.redactor)
    logger.addHandler(handler)
    try:
        logger.warning("%s seen as DOE^JANE^Q (JANE), study %s", "PAT0042", "1.2.3")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (tmp_path / "log.txt").read_text() == \
        "[patient] seen as [patient] ([patient]), study 1.2.3\n"


def test_purge_frees_sent_and_failed_studies_after_keep(tmp_path):
    queue, clock = _queue(tmp_path)
    sent = queue.store("1.2.3", "1.2.3.1", b"x" * 10)
    failed = queue.store("1.2.4", "1.2.4.1", b"x" * 10)
    waiting = queue.store("1.2.5", "1.2.5.1", b"x" * 10)
    queue.set_state(sent, "sent")
    queue.set_state(failed, "failed", error="no FLAIR")
    (queue.work / sent / "r0").mkdir(parents=True)
    clock[0] += 100
    assert queue.purge(keep_seconds=200) == []
    assert sorted(queue.purge(keep_seconds=50)) == ["1.2.3", "1.2.4"]
    assert not (queue.spool / sent).exists() and not (queue.work / sent).exists()
    assert queue.instance_count(waiting) == 1 and queue.spool_bytes() == 10
    assert queue.get(sent)["purged"] and queue.get(sent)["state"] == "sent"


def test_cli_bad_config_is_one_line_and_status_reads_the_state(tmp_path):
    from click.testing import CliRunner

    from csvdnet.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["node", "--config", str(_config(tmp_path, port="x"))])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'node.yaml'}: port: 'x' is not a TCP port (0-65535)"]
    assert runner.invoke(cli, ["node"]).exit_code == 2  # --config is required
    path = _config(tmp_path)
    queue, _ = _queue(tmp_path)
    queue.set_state(queue.store("1.2.3", "1.2.3.1", b"x"), "failed", error="no FLAIR series")
    result = runner.invoke(cli, ["node", "status", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("studies: received 0, stable 0, rating 0, rated 0, sent 0, "
                                    "failed 1\n")
    assert "study 1.2.3): no FLAIR series" in result.output
    as_json = json.loads(runner.invoke(cli, ["node", "status", "--config", str(path),
                                             "--json"]).output)
    assert as_json["counts"]["failed"] == 1


def test_revision_zero_keeps_the_result_uids_and_later_ones_get_their_own():
    import datetime

    from csvdnet.dicom.provenance import Provenance, derived_uid

    made = datetime.datetime(2026, 1, 1)
    first = Provenance("1.2.3", "model", "abc", made)
    assert first.series_uid("sr") == derived_uid("csvdnet-series", "1.2.3", "sr", "", "abc")
    again = Provenance("1.2.3", "model", "abc", made, revision=0)
    later = Provenance("1.2.3", "model", "abc", made, revision=1)
    assert again.series_uid("seg-flair", "9.9") == first.series_uid("seg-flair", "9.9")
    assert later.series_uid("sr") != first.series_uid("sr")
    assert later.series_uid("sr") != Provenance("1.2.3", "model", "abc", made, 2).series_uid("sr")
