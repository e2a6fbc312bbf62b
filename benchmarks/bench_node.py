"""csvdnet node beside a real Orthanc: overhead per study and memory over 20 studies (issue 20
goals: overhead (receive + spool + send, beyond predict) <= 5 s for a 5-series study of ~600
instances on 2 cores; resident memory flat within 10 % from study 2 to study 20).

Part 1, overhead: one ``clinical``-profile study with a 1 mm 3-D FLAIR (the study of
``bench_dicom.py``: 551 instances, five channel series) is stored into Orthanc, then sent by
Orthanc (REST ``/modalities/<node>/store``, synchronous) three ways, each timed: to a bare
pynetdicom SCP that answers success and keeps nothing (what the network and Orthanc cost anyway),
to the node's own storage SCP in this process (receive + durable spool), and to a running
``csvdnet node`` process that then rates it and stores its results back (its record's times:
rating, rated -> sent).

Part 2, many studies: ``--studies`` (20) ``tiny``-profile studies (4 synthetic subjects written
under different UIDs, with the series selection must set aside: 361 instances each) are stored
into Orthanc and all sent to the node at once (one asynchronous Orthanc job each). The node's
log gives the resident memory after each rating; Orthanc is checked to hold exactly one set of
results per study.

Usage::

    python benchmarks/bench_node.py --work /tmp/bench_node [--studies 20]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _machine import describe_machine  # noqa: E402
from _orthanc import NodeProcess, Orthanc, free_port, node_config  # noqa: E402
from bench_dicom import cpu_flags, make_study  # noqa: E402

_RSS = re.compile(r"study (\S+): (rated|failed) \(rss (\d+) MB\)")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _bare_scp(port: int) -> object:
    """A pynetdicom SCP that answers success to every C-STORE and keeps nothing."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt

    from csvdnet.node.scp import STORAGE_CLASSES

    ae = AE(ae_title="CSVDNET")
    for uid in STORAGE_CLASSES:
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
    return ae.start_server(("127.0.0.1", port), block=False,
                           evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])


def _in_process_node(work: Path, port: int) -> tuple[object, object]:
    from csvdnet.node.config import load_config
    from csvdnet.node.queue import StudyQueue
    from csvdnet.node.scp import StorageServer

    folder = work / "scp-only"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = load_config(node_config(folder, port, []))
    queue = StudyQueue(config.state_dir, 1e12)
    server = StorageServer(config, queue)
    server.start()
    return server, queue


def _wait_states(node: NodeProcess, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = node.records()
        if len(records) >= count and all(r["state"] in ("sent", "failed") for r in records):
            return records
        if node.process.poll() is not None:
            raise RuntimeError(f"node exited:\n{node.log()[-3000:]}")
        time.sleep(1)
    raise TimeoutError(f"not all {count} studies sent within {timeout} s")


def part_overhead(work: Path, lines: list[str]) -> None:
    study = make_study(work, "clinical", 7, False, 1.0)
    files = _files(study)
    port = free_port()
    orthanc = Orthanc(work / "orthanc-1", "CSVDNET", port)
    shutil.rmtree(orthanc.folder / "storage", ignore_errors=True)
    orthanc.start()
    try:
        study_id = orthanc.upload(files)[0]
        times = {}
        server = _bare_scp(port)
        started = time.perf_counter()
        orthanc.forward(study_id)
        times["bare"] = time.perf_counter() - started
        server.shutdown()
        server, queue = _in_process_node(work, port)
        started = time.perf_counter()
        orthanc.forward(study_id)
        times["spool"] = time.perf_counter() - started
        server.stop()
        folder = work / "node-1"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        node = NodeProcess(node_config(folder, port, [
            {"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1",
             "port": orthanc.dicom_port}], stable=2))
        node.start()
        started = time.perf_counter()
        orthanc.forward(study_id)
        times["node"] = time.perf_counter() - started
        record = _wait_states(node, 1, 1800)[0]
        node.stop()
    finally:
        orthanc.stop()
    t = record["times"]
    send = t["sent"] - t["rated"]
    lines += [
        f"One study of {len(files)} instances (clinical profile, 1 mm 3-D FLAIR; five channel "
        f"series), Orthanc -> node -> Orthanc, state `{record['state']}`:", "",
        "| what | seconds |", "|---|---:|",
        f"| Orthanc sends the study to a bare pynetdicom SCP (answers success, keeps nothing) "
        f"| {times['bare']:.2f} |",
        f"| Orthanc sends it to the node's SCP in process (decode, checks, fsync'd spool) "
        f"| {times['spool']:.2f} |",
        f"| Orthanc sends it to the running `csvdnet node` | {times['node']:.2f} |",
        f"| stable wait (configured `stable_seconds`, not overhead) | 2 |",
        f"| rating (convert + predict + SEG / SR / report: predict's own work) "
        f"| {record.get('rating_seconds', float('nan')):.1f} |",
        f"| results stored to Orthanc (rated -> sent, {len(record.get('results', []))} objects) "
        f"| {send:.2f} |",
        f"| **node overhead: receive + spool + send** | **{times['node'] + send:.2f}** |",
        f"| of which the network and Orthanc cost with a bare SCP | {times['bare']:.2f} |", ""]


def part_many(work: Path, count: int, lines: list[str]) -> None:
    from csvdnet.dicom.vendor import write_study
    from csvdnet.synth import generate_cohort

    cohort = work / "synth-tiny"
    if not cohort.is_dir():
        generate_cohort(cohort, 4, 11, profile="tiny", progress=False)
    subjects = sorted(p for p in cohort.iterdir() if (p / "flair.nii.gz").is_file())
    dicom = work / "dicom-many"
    shutil.rmtree(dicom, ignore_errors=True)
    studies = [write_study(subjects[n % len(subjects)], dicom, patient_id=f"BENCH{n:03d}",
                           seed=n) for n in range(count)]
    port = free_port()
    orthanc = Orthanc(work / "orthanc-2", "CSVDNET", port)
    shutil.rmtree(orthanc.folder / "storage", ignore_errors=True)
    orthanc.start()
    folder = work / "node-2"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    node = NodeProcess(node_config(folder, port, [
        {"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port}],
        stable=2))
    try:
        ids = [orthanc.upload(_files(s.root))[0] for s in studies]
        node.start()
        started = time.perf_counter()
        for study_id in ids:
            orthanc.forward(study_id, asynchronous=True)
        records = _wait_states(node, count, 3600)
        wall = time.perf_counter() - started
        node.stop()
        results = {}
        for study in studies:
            series = [s for s in orthanc.series_of(study.study_uid)
                      if s["MainDicomTags"].get("Modality") in ("SEG", "SR", "OT")]
            results[study.study_uid] = sum(len(s["Instances"]) for s in series)
    finally:
        node.stop()
        orthanc.stop()
    rss = [(m.group(1), int(m.group(3))) for m in _RSS.finditer(node.log())]
    order = [uid for uid, _ in rss]
    first = sorted(records, key=lambda r: r["times"]["received"])
    states = {r["state"] for r in records}
    per = [r["rating_seconds"] for r in records if r.get("rating_seconds")]
    from_two = [mb for _, mb in rss[1:]]
    spread = (max(from_two) - min(from_two)) / min(from_two) * 100 if from_two else float("nan")
    lines += [
        f"{count} tiny-profile studies (361 instances each, extras included) sent to the node "
        f"at once (one asynchronous Orthanc job each): {len(records)} records, states "
        f"{sorted(states)}, revisions {sorted({r['revision'] for r in records})}, rated in the "
        f"order of first receipt: {order == [r['study_uid'] for r in first]}; result instances "
        f"per study in Orthanc: {sorted(set(results.values()))} (one set each); all sent after "
        f"{wall:.0f} s; rating median {sorted(per)[len(per) // 2]:.1f} s "
        f"(min {min(per):.1f}, max {max(per):.1f}).", "",
        "Resident memory after each rating (MB, node log): " +
        ", ".join(str(mb) for _, mb in rss) + ".", "",
        f"From study 2 to study {len(rss)}: min {min(from_two)} MB, max {max(from_two)} MB, "
        f"spread {spread:.1f} % of the min (goal <= 10 %); study 1 -> 2: {rss[0][1]} -> "
        f"{rss[1][1] if len(rss) > 1 else '-'} MB.", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-many", action="store_true")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    lines: list[str] = []
    if not args.skip_overhead:
        part_overhead(args.work, lines)
    if not args.skip_many:
        part_many(args.work, args.studies, lines)
    load_after = os.getloadavg()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    header = [f"### csvdnet node with a real Orthanc — `python benchmarks/bench_node.py "
              f"--work W --studies {args.studies}` ({datetime.date.today().isoformat()})", "",
              f"{describe_machine()}; flags {cpu_flags()}; Orthanc "
              f"{subprocess.run(['Orthanc', '--version'], capture_output=True, text=True).stdout.splitlines()[0].split()[-1]}; "
              f"load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end "
              f"(`uptime`: {uptime}); the machine's 2 cores are shared with other engineers' jobs.",
              ""]
    print("\n".join(header + lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
