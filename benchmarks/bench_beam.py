"""Benchmark ``csvdnet predict --engine beam`` (DirectRunner) against local ``csvdnet predict``.

On one synthetic cohort (``csvdnet synth``, demo profile: the shipped model's input) it runs, each
as its own ``csvdnet predict`` command in a fresh process into its own output folder:

1. local predict (``--jobs 1``);
2. local predict with ``--jobs 2`` (threads: preprocessing overlaps the network);
3. the Beam pipeline on the DirectRunner with 2 worker processes
   (``--direct_num_workers=2 --direct_running_mode=multi_processing``).

It reports wall seconds per subject of each command (start-up, model loading and, for Beam,
pipeline construction and worker start included: what a user waits for), the subjects' own
seconds (``scores.tsv`` ``seconds``: the stages inside each subject) and the overhead ratio
(Beam wall / local wall). The outputs of the runs are compared file by file (timing fields
masked as in ``tests/test_beam.py``). ``--append`` adds the figures to ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/bench_beam.py --work /tmp/bench_beam            # 8 subjects, seed 5
    python benchmarks/bench_beam.py --work /tmp/bench_beam --append
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402

FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                     "amx_tile")
_HTML_DATE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
_HTML_SECONDS = re.compile(rb"(<tr><td>[a-z]+</td><td>)\d+\.\d\d(</td></tr>)")


def cpu_flags() -> str:
    """The vector / matrix flags of ``/proc/cpuinfo`` that matter to TensorFlow on CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return " ".join(f for f in FLAGS_OF_INTEREST if f in present) or "none of " + \
                    ", ".join(FLAGS_OF_INTEREST)
    except OSError:
        pass
    return "unknown"


def csvdnet() -> str:
    found = Path(sys.executable).with_name("csvdnet")
    return str(found) if found.exists() else "csvdnet"


def run(command: list[str], log: Path) -> float:
    """Run a command (its output to ``log``); wall seconds. A failed subject (exit 1) is
    reported, anything else stops the benchmark."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if code not in (0, 1):
        sys.exit(f"{' '.join(command)} exited {code}; see {log}")
    if code == 1:
        print(f"warning: some subjects failed, see {log}", file=sys.stderr)
    return seconds


def subject_seconds(out: Path) -> list[float]:
    with open(out / "scores.tsv", newline="") as handle:
        return [float(row["seconds"]) for row in csv.DictReader(handle, delimiter="\t")]


def masked(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith("report.json"):
        report = json.loads(data)
        report["created"], report["timings"] = None, list(report["timings"])
        return json.dumps(report).encode()
    if path.name.endswith("report.html"):
        return _HTML_DATE.sub(b"DATE", _HTML_SECONDS.sub(rb"\1#\2", data))
    if path.name == "scores.tsv":
        rows = [line.split(b"\t") for line in data.splitlines()]
        column = rows[0].index(b"seconds")
        return b"\n".join(b"\t".join(r[:column] + r[column + 1:]) for r in rows)
    return data


def compare(a: Path, b: Path) -> tuple[int, list[str]]:
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    other = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    differ = sorted(set(names) ^ set(other))
    differ += [n for n in names if n in other and masked(a / n) != masked(b / n)]
    return len(names), differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Working folder (created).")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--model", type=Path, default=ROOT / "saved_models" / "csvdnet-synthetic"
                        / "1")
    parser.add_argument("--workers", type=int, default=2, help="Beam DirectRunner processes.")
    parser.add_argument("--append", action="store_true", help="Append to benchmarks/RESULTS.md.")
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cohort = work / "cohort"
    if not (cohort / "manifest.csv").is_file():
        shutil.rmtree(cohort, ignore_errors=True)
        run([csvdnet(), "synth", "--out", str(cohort), "--subjects", str(args.subjects),
             "--seed", str(args.seed), "--profile", "demo"], work / "synth.log")
    manifest = cohort / "manifest.csv"
    base = [csvdnet(), "predict", str(manifest), "--model", str(args.model), "--quiet"]
    runs = {
        "local --jobs 1": base + ["--out", str(work / "local1")],
        "local --jobs 2": base + ["--out", str(work / "local2"), "--jobs", "2"],
        f"beam DirectRunner, {args.workers} processes": base + [
            "--out", str(work / "beam"), "--engine", "beam", "--",
            f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"],
    }
    results = {}
    load_before = os.getloadavg()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    for name, command in runs.items():
        out = Path(command[command.index("--out") + 1])
        shutil.rmtree(out, ignore_errors=True)
        load = os.getloadavg()[0]
        wall = run(command, work / f"{out.name}.log")
        inner = subject_seconds(out)
        results[name] = {"wall": wall, "per_subject": wall / len(inner),
                         "inner_median": statistics.median(inner), "subjects": len(inner),
                         "load_1min_at_start": load, "load_1min_at_end": os.getloadavg()[0],
                         "out": out}
        print(f"{name}: {wall:.1f} s wall, {wall / len(inner):.1f} s per subject, subject "
              f"median {statistics.median(inner):.1f} s, load {load:.1f}", flush=True)
    finished_at = datetime.datetime.now(datetime.timezone.utc)
    load_after = os.getloadavg()

    local = results["local --jobs 1"]
    files, differ = compare(local["out"], results[list(runs)[-1]]["out"])
    lines = [
        "",
        f"## Cohort prediction on Apache Beam vs local — `python benchmarks/bench_beam.py "
        f"--work {args.work}` ({started_at:%Y-%m-%d %H:%M}-{finished_at:%H:%M} UTC)",
        "",
        f"{describe_machine()}; CPU flags: {cpu_flags()}. Load average (1, 5, 15 min) "
        f"{'/'.join(f'{v:.1f}' for v in load_before)} before, "
        f"{'/'.join(f'{v:.1f}' for v in load_after)} after. {args.subjects} `demo`-profile "
        f"subjects (`csvdnet synth --seed {args.seed}`), model "
        f"`{os.path.relpath(args.model, ROOT)}`, each command a fresh process (TensorFlow start-up "
        f"and model loading included).",
        "",
        "| command | wall s | wall s per subject | subject's own s, median | 1-min load at start / end | vs local --jobs 1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['wall']:.1f} | {r['per_subject']:.1f} | "
                     f"{r['inner_median']:.1f} | {r['load_1min_at_start']:.1f} / "
                     f"{r['load_1min_at_end']:.1f} | {r['wall'] / local['wall']:.2f} |")
    lines += ["", f"Outputs, Beam vs local --jobs 1: {files} files, "
                  f"{'all the same' if not differ else 'DIFFERENT: ' + ', '.join(differ)} "
                  f"(timing fields masked as in tests/test_beam.py).", ""]
    text = "\n".join(lines)
    print(text)
    if args.append:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
