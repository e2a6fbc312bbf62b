"""Training on several workers: MultiWorkerMirroredStrategy from TF_CONFIG, on loopback ports.

Two ``csvdnet train`` processes (one CPU replica each) form a two-worker cluster on this machine.
Their run must be the single-process run with the same global batch, numerically: the same data
(each worker keeps its half of every global batch), the same loss shares, and the chief's
checkpoint. A worker killed mid-run and the job restarted with ``--resume`` continue from the
chief's last checkpoint and end where an uninterrupted run ends.

Tolerance: the weights, optimizer moments and loss log-variances agree within ``rtol=1e-5,
atol=1e-6`` (float32; the two-worker gradient is the sum of two half-batch all-reduced shares,
so only the summation order differs: 2e-7 seen here).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from csvdnet.config import Config, dump_config
from csvdnet.training import fit
from csvdnet.training.strategy import (cluster_workers, expand_hostlist, make_strategy,
                                       slurm_tf_config)
from csvdnet.errors import CsvdnetInputError
from _fake_cache import write_cache
from test_training import CHANNELS, make_cfg, make_subject

TESTS = Path(__file__).parent
EPOCHS, STEPS_PER_EPOCH = 3, 2
RTOL, ATOL = 1e-5, 1e-6
RUN_ENTRIES = {"config.yaml", "preprocess.json", "split.json", "logs", "checkpoints", "best",
               "last", "calibration.json"}


def worker_cfg(cache: Path, run_dir: Path, strategy: str) -> Config:
    """``make_cfg``'s tiny run (global batch 2, a whole-brain batch every 3rd step, one
    validation subject) for ``EPOCHS`` x ``STEPS_PER_EPOCH`` steps."""
    return make_cfg(cache, run_dir, epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
                    strategy=strategy)


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free on 127.0.0.1 (held together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """Two ``csvdnet train CONFIG --resume`` processes with a TF_CONFIG each on loopback ports;
    worker 0 is the chief. Each worker's TMPDIR is its own folder, to see what it leaves."""

    def __init__(self, config: Path, tmp: Path, name: str):
        ports = free_ports(2)
        spec = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        self.tmpdirs = [tmp / f"{name}_tmp{i}" for i in range(2)]
        code = "from csvdnet.cli import cli; cli(prog_name='csvdnet')"
        self.processes = []
        for index, tmpdir in enumerate(self.tmpdirs):
            tmpdir.mkdir()
            env = {**os.environ, "TMPDIR": str(tmpdir), "TF_CPP_MIN_LOG_LEVEL": "2",
                   "TF_CONFIG": json.dumps({"cluster": spec,
                                            "task": {"type": "worker", "index": index}}),
                   "PYTHONPATH": os.pathsep.join([str(TESTS.parent),
                                                  os.environ.get("PYTHONPATH", "")])}
            self.processes.append(subprocess.Popen(
                [sys.executable, "-c", code, "train", str(config), "--resume", "--quiet"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))

    def finish(self, timeout: float = 240) -> list[str]:
        """Wait for both; their outputs (both must exit 0)."""
        outputs = []
        try:
            for process in self.processes:
                outputs.append(process.communicate(timeout=timeout)[0])
        finally:
            self.kill()
        for i, (process, output) in enumerate(zip(self.processes, outputs)):
            assert process.returncode == 0, f"worker {i}: {output[-3000:]}"
        return outputs

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)


def latest_step(run_dir: Path) -> int:
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def assert_same_state(reference: Path, run_dir: Path) -> None:
    """The latest checkpoints hold the same network, loss, optimizer, step and epoch."""
    a = tf.train.load_checkpoint(str(reference / "checkpoints"))
    b = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    names = [n for n, _ in tf.train.list_variables(str(reference / "checkpoints"))
             if n.startswith(("network/", "loss/", "optimizer/", "step/", "epoch/"))]
    # The object graph saves each weight once, under the first path to it: the optimizer's.
    assert sum(n.startswith("optimizer/_trainable_variables/") for n in names) > 10
    assert sum(n.startswith("optimizer/_variables/") for n in names) > 20  # moments
    assert "step/.ATTRIBUTES/VARIABLE_VALUE" in names
    for name in names:
        np.testing.assert_allclose(b.get_tensor(name), a.get_tensor(name), rtol=RTOL, atol=ATOL,
                                   err_msg=name)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """tests/test_training.py's four 16^3 subjects (one validates)."""
    rng = np.random.default_rng(0)
    subjects = [make_subject(rng, f"s{i}", (5 + 2 * i, 8, 7 + i), i % 3) for i in range(4)]
    return write_cache(tmp_path_factory.mktemp("multiworker") / "cache", subjects, CHANNELS)


@pytest.fixture(scope="module")
def reference(cache, tmp_path_factory) -> Path:
    """The same run in one process (default strategy, one replica, the same global batch)."""
    run_dir = tmp_path_factory.mktemp("one_worker") / "run"
    result = fit(worker_cfg(cache, run_dir, "default"), progress=False)
    assert (result.step, result.replicas) == (EPOCHS * STEPS_PER_EPOCH, 1)
    return run_dir


def write_config(cache: Path, run_dir: Path, tmp: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_text(dump_config(worker_cfg(cache, run_dir, "multi_worker")))
    return path


# ---------------------------------------------------------------------------------------------
# Cluster description (fast).

def test_tf_config_and_slurm_step_are_checked(monkeypatch):
    bad_task = json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                           "task": {"type": "worker", "index": 2}})
    for text, reason in ((bad_task, "is not in the cluster"), ("{", "not JSON"),
                         ('{"cluster": {"worker": ["a"]}}', "host:port")):
        with pytest.raises(CsvdnetInputError, match=reason):
            cluster_workers({"TF_CONFIG": text})
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for name in ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    # Without a cluster, every machine would train alone and write train.run_dir as the chief.
    with pytest.raises(CsvdnetInputError, match="TF_CONFIG.*needs TF_CONFIG"):
        make_strategy("multi_worker")

    assert expand_hostlist("gpu[08-10,12],login1,r[1-2]n[1-2]") == [
        "gpu08", "gpu09", "gpu10", "gpu12", "login1", "r1n1", "r1n2", "r2n1", "r2n2"]
    for bad in ("gpu[1-", "gpu[3-1]", "gpu]1", "gpu[a-b]"):
        with pytest.raises(CsvdnetInputError, match="SLURM_STEP_NODELIST"):
            expand_hostlist(bad)
    step = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "3", "SLURM_STEP_NODELIST": "n[7-9]"}
    assert slurm_tf_config(step) == {
        "cluster": {"worker": ["n7:12345", "n8:12345", "n9:12345"]},
        "task": {"type": "worker", "index": 1}}
    assert slurm_tf_config({**step, "CSVDNET_PORT": "2222"})["cluster"]["worker"][0] == "n7:2222"
    # A batch script's own shell, or a one-task step: no cluster.
    assert slurm_tf_config({"SLURM_PROCID": "0", "SLURM_NTASKS": "3"}) is None
    assert slurm_tf_config({**step, "SLURM_STEP_NUM_TASKS": "1"}) is None
    with pytest.raises(CsvdnetInputError, match="--ntasks-per-node=1"):
        slurm_tf_config({**step, "SLURM_STEP_NODELIST": "n[7-8]"})
    with pytest.raises(CsvdnetInputError, match="not an integer"):
        slurm_tf_config({**step, "CSVDNET_PORT": "http"})


# ---------------------------------------------------------------------------------------------
# Two worker processes (slow: each starts TensorFlow and joins the cluster).

@pytest.mark.slow
def test_two_workers_equal_one_worker_with_the_same_global_batch(cache, reference, tmp_path):
    run_dir = tmp_path / "run"
    cluster = Cluster(write_config(cache, run_dir, tmp_path), tmp_path, "job")
    outputs = cluster.finish()
    for output in outputs:
        assert f"done: epoch {EPOCHS}, step {EPOCHS * STEPS_PER_EPOCH}" in output, output[-2000:]
    # Only the chief validated, and so only the chief calibrates the run at the end.
    assert "calibrated on 1 validation subjects" in outputs[0], outputs[0][-2000:]
    assert "calibrated" not in outputs[1], outputs[1][-2000:]
    assert_same_state(reference, run_dir)
    # The chief alone wrote the run directory and TensorBoard (one event file); the other
    # worker's checkpoint copies went to its own temporary folders, all removed.
    assert {p.name for p in run_dir.iterdir()} == RUN_ENTRIES
    assert len(list((run_dir / "logs" / "train").glob("events.out.tfevents.*"))) == 1
    assert list(cluster.tmpdirs[1].iterdir()) == []


@pytest.mark.slow
def test_killed_worker_and_restarted_job_resume_from_the_chiefs_checkpoint(
        cache, reference, tmp_path):
    run_dir = tmp_path / "run"
    config = write_config(cache, run_dir, tmp_path)
    total = EPOCHS * STEPS_PER_EPOCH
    cluster = Cluster(config, tmp_path, "first")
    try:
        deadline = time.monotonic() + 240
        while latest_step(run_dir) == 0 and time.monotonic() < deadline:
            assert all(p.poll() is None for p in cluster.processes), \
                [p.communicate()[0][-2000:] for p in cluster.processes]
            time.sleep(0.1)
        # SIGKILL the non-chief mid-run: the chief, waiting in an all-reduce, learns from the
        # cluster's heartbeats that it is gone and fails (about 10 s here) instead of hanging.
        cluster.processes[1].send_signal(signal.SIGKILL)
        cluster.processes[1].wait(timeout=60)
        output = cluster.processes[0].communicate(timeout=180)[0]
    finally:
        cluster.kill()
    assert cluster.processes[0].returncode == 1, output[-2000:]
    # How the chief learns it depends on timing: the heartbeats mark the peer unhealthy, or its
    # pending receive sees the connection reset or the socket closed (both seen on a quiet
    # machine; the last in a CI run); all three are gRPC UNAVAILABLE, raised as UnavailableError.
    peer_lost = ("unhealthy", "Connection reset by peer", "Socket closed")
    assert "UnavailableError" in output and any(m in output for m in peer_lost), \
        output[-2000:]
    saved = latest_step(run_dir)
    assert 0 < saved < total and saved % STEPS_PER_EPOCH == 0, saved

    restarted = Cluster(config, tmp_path, "restart")
    outputs = restarted.finish()
    for output in outputs:
        # Both workers continue from the chief's checkpoint, not from step 0.
        assert re.search(rf"resumed .* at step {saved}\b", output), output[-2000:]
        assert f"done: epoch {EPOCHS}, step {total}" in output, output[-2000:]
    assert latest_step(run_dir) == total
    # The restarted non-chief found the chief's best/metrics.json but does nothing with it.
    assert "calibrated" in outputs[0] and "calibrated" not in outputs[1], outputs[1][-2000:]
    assert_same_state(reference, run_dir)
    assert {p.name for p in run_dir.iterdir()} == RUN_ENTRIES
    assert list(restarted.tmpdirs[1].iterdir()) == []
