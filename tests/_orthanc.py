"""A real Orthanc (Debian package ``orthanc``) on free loopback ports, and a csvdnet node process,
for tests/test_node_*.py and benchmarks/bench_node.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from pydicom import Dataset

# Debian puts it in /usr/sbin, which a non-root PATH may lack
ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")
ORTHANC_MISSING = "Orthanc not installed (Debian package orthanc; .ci/run installs it)"
REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "saved_models" / "csvdnet-synthetic" / "2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_mr(study_uid: str, number: int, *, series_uid: str | None = None,
            pixels: bool = True, sop_class: str = "1.2.840.10008.5.1.4.1.1.4") -> "Dataset":
    """An 8 x 8 MR image of ``study_uid`` (no acquisition attributes: not a study to rate)."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid(entropy_srcs=[study_uid, "series"])
    ds.PatientName, ds.PatientID = "SECRET^NAME", "SECRETID"
    ds.Modality, ds.InstanceNumber = "MR", number
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if pixels:
        ds.PixelData = np.full((8, 8), number, np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = \
        sop_class, ds.SOPInstanceUID
    return ds


class Orthanc:
    """One Orthanc server with its own storage folder; :meth:`stop` / :meth:`start` keep it."""

    def __init__(self, folder: Path, node_ae: str, node_port: int, aet: str = "ORTHANC",
                 lua: str | None = None, tls: dict | None = None) -> None:
        self.folder = Path(folder)
        self.http_port, self.dicom_port, self.aet = free_port(), free_port(), aet
        (self.folder / "storage").mkdir(parents=True, exist_ok=True)
        scripts = []
        if lua:
            scripts = [str(self.folder / "route.lua")]
            (self.folder / "route.lua").write_text(lua)
        self.config = self.folder / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "csvdnet-test", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"), "Plugins": [],
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": aet,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomModalities": {"csvdnet": {"AET": node_ae, "Host": "127.0.0.1",
                                            "Port": node_port, "UseDicomTls": bool(tls)}},
            **({"DicomTlsEnabled": True, "DicomTlsRemoteCertificateRequired": True,
                **tls} if tls else {}),
            "StableAge": 2, "DicomScuTimeout": 10, "DicomAlwaysAllowStore": True,
            "OverwriteInstances": False, "LuaScripts": scripts}, indent=1))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        log = open(self.folder / "orthanc.log", "ab")
        self.process = subprocess.Popen([ORTHANC, str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"Orthanc exited {self.process.returncode}: "
                                       f"{(self.folder / 'orthanc.log').read_text()[-2000:]}")
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not answer within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def request(self, method: str, path: str, body: bytes | dict | None = None,
                timeout: float = 120):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            raw = answer.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def get(self, path: str):
        return self.request("GET", path)

    def upload(self, files) -> list[str]:
        """Store files into Orthanc (REST); returns their study ids."""
        return sorted({self.request("POST", "/instances", Path(f).read_bytes())["ParentStudy"]
                       for f in files})

    def forward(self, study_id: str, asynchronous: bool = False, mr_only: bool = False):
        """Orthanc sends the study (``mr_only``: its MR series, not csvdnet's results, as the
        README's routing script does) to the node (C-STORE SCU)."""
        resources = [study_id]
        if mr_only:
            resources = [s["ID"] for s in self.get(f"/studies/{study_id}/series")
                         if s["MainDicomTags"].get("Modality") == "MR"]
        return self.request("POST", "/modalities/csvdnet/store",
                            {"Resources": resources, "Synchronous": not asynchronous})

    def series_of(self, study_uid: str) -> list[dict]:
        found = self.request("POST", "/tools/find", {"Level": "Series", "Expand": True,
                                                     "Query": {"StudyInstanceUID": study_uid}})
        return found


def readme_lua() -> str:
    """The Orthanc routing script of the README's "Running beside a PACS" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("-- /etc/orthanc/csvdnet-route.lua")
    return text[start:text.index("```", start)]


def node_config(folder: Path, port: int, destinations: list[dict], *, stable: float = 3,
                allow: list[dict] | None = None, http_port: int | None = None, **extra) -> Path:
    config = {"ae_title": "CSVDNET", "port": port, "model": str(MODEL),
              "state_dir": str(folder / "state"), "destinations": destinations,
              "allow": allow or [{"ae_title": "ORTHANC", "host": "127.0.0.1"}],
              "stable_seconds": stable, "retry": {"initial_seconds": 1, "max_seconds": 4},
              **({"http": {"port": http_port}} if http_port else {}), **extra}
    path = folder / "node.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class NodeProcess:
    """``csvdnet node --config`` as a child process (so a test can ``kill -9`` it)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.state = yaml.safe_load(config.read_text())["state_dir"]
        self.process: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> None:
        readies = self.log().count("ready:")
        log = open(Path(self.state).parent / "node.stderr", "ab")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "csvdnet"), "node", "--config", str(self.config)],
            stdout=log, stderr=log, env=env, cwd=REPO)
        if wait:
            self.wait_log("ready:", timeout=120, count=readies + 1)

    def log(self) -> str:
        path = Path(self.state) / "node.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def wait_log(self, text: str, timeout: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited {self.process.returncode}: "
                                   f"{(Path(self.state).parent / 'node.stderr').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} in the node log after {timeout} s:\n"
                                   f"{self.log()[-3000:]}")
            time.sleep(0.2)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill9()

    def records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((Path(self.state) / "queue").glob("*.json"))]
