"""csvdnet node over DICOM TLS with a real Orthanc (its DicomTls* options), certificates made
by openssl for the test: Orthanc -> node and node -> Orthanc both over TLS, a plain (non-TLS)
association refused."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from pydicom.uid import generate_uid

from _orthanc import ORTHANC, ORTHANC_MISSING, Orthanc, free_port, node_config, tiny_mr
from csvdnet.node.config import load_config
from csvdnet.node.queue import StudyQueue, study_key
from csvdnet.node.scp import StorageServer
from csvdnet.node.sender import send_files

pytestmark = [pytest.mark.skipif(ORTHANC is None, reason=ORTHANC_MISSING),
              pytest.mark.skipif(shutil.which("openssl") is None,
                                 reason="openssl not installed (makes the test certificates)")]


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(folder):
    """A CA, and a certificate for 127.0.0.1 signed by it for the node and for Orthanc."""
    folder.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=csvdnet test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("node", "orthanc"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
                 f"{name}.key", "-out", f"{name}.csr", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out",
                 f"{name}.crt", cwd=folder)
    return folder


def test_tls_both_ways_and_plain_refused(tmp_path):
    from pynetdicom import AE

    certs = _certificates(tmp_path / "certs")
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", "CSVDNET", port, tls={
        "DicomTlsCertificate": str(certs / "orthanc.crt"),
        "DicomTlsPrivateKey": str(certs / "orthanc.key"),
        "DicomTlsTrustedCertificates": str(certs / "ca.pem")})
    orthanc.start()
    config = load_config(node_config(
        tmp_path, port, [{"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1",
                          "port": orthanc.dicom_port, "tls": True}],
        tls={"certificate": str(certs / "node.crt"), "private_key": str(certs / "node.key"),
             "trusted": str(certs / "ca.pem")}))
    queue = StudyQueue(config.state_dir, 1e9)
    server = StorageServer(config, queue)
    server.start()
    try:
        study = generate_uid()
        for n in (1, 2):
            tiny_mr(study, n).save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
        answer = orthanc.forward(orthanc.upload([tmp_path / "1.dcm", tmp_path / "2.dcm"])[0])
        assert answer["FailedInstancesCount"] == 0
        assert queue.instance_count(study_key(study)) == 2  # received over TLS
        plain = AE(ae_title="ORTHANC")
        plain.add_requested_context("1.2.840.10008.5.1.4.1.1.4")
        plain.acse_timeout = plain.network_timeout = 5
        assert not plain.associate("127.0.0.1", port, ae_title="CSVDNET").is_established
        result = tmp_path / "result.dcm"
        ds = tiny_mr(study, 3, series_uid=generate_uid())
        ds.Modality = "OT"
        ds.save_as(result, enforce_file_format=True)
        assert send_files([result], config.destinations[0], "CSVDNET", tls=config.tls) is None
        assert send_files([result], config.destinations[0], "CSVDNET", tls=None) \
            == "pacs (ORTHANC@127.0.0.1:%d) wants TLS and the node has no tls section" \
            % orthanc.dicom_port
        stored = [s for s in orthanc.series_of(study)
                  if s["MainDicomTags"]["SeriesInstanceUID"] == ds.SeriesInstanceUID]
        assert [len(s["Instances"]) for s in stored] == [1]  # sent over TLS
    finally:
        server.stop()
        orthanc.stop()
