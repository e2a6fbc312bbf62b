"""``csvdnet predict --jobs 2`` against ``--jobs 1`` on one cohort: wall seconds and their ratio.

Usage::

    python benchmarks/bench_jobs.py --cohort MANIFEST --model DIR --out DIR [--repeats 2]

Runs the real command (``csvdnet predict``, a fresh process each time, so TensorFlow's start
and the model's loading are in every figure) with ``--jobs 1`` and ``--jobs 2`` alternately,
``--repeats`` times each, into ``OUT/jobs<N>-<k>``; prints the median wall seconds of each, the
ratio, the CPU model and flags that matter to TensorFlow, and the load average before and after
(a two-thread speed-up means nothing on a machine where something else runs). Every run's
``scores.tsv`` is compared with the first ``--jobs 1`` run's, the ``seconds`` column left out:
the values must be the same.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """The flags of :data:`FLAGS` that ``/proc/cpuinfo`` lists."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in FLAGS if flag in present]
    except OSError:
        pass
    return []


def load_average() -> str:
    """1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def scores(path: Path) -> list[dict[str, str]]:
    """``scores.tsv`` rows without the ``seconds`` column, by subject."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return sorted(({k: v for k, v in row.items() if k != "seconds"} for row in rows),
                  key=lambda row: row["subject"])


def run(cohort: str, model: str, out: Path, jobs: int) -> float:
    """Wall seconds of one ``csvdnet predict`` (raises if it fails)."""
    if out.exists():
        shutil.rmtree(out)
    command = [str(Path(sys.executable).parent / "csvdnet"), "predict", cohort, "--model", model,
               "--out", str(out), "--jobs", str(jobs), "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohort", required=True, help="Input of csvdnet predict.")
    parser.add_argument("--model", required=True, help="Model directory.")
    parser.add_argument("--out", required=True, help="Folder for the runs' outputs.")
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each --jobs.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {describe_machine()}; flags: {' '.join(cpu_flags()) or 'none listed'}")
    print(f"load average before: {load_average()}", flush=True)
    walls: dict[int, list[float]] = {1: [], 2: []}
    reference = None
    for k in range(args.repeats):
        for jobs in (1, 2):
            folder = out / f"jobs{jobs}-{k}"
            seconds = run(args.cohort, args.model, folder, jobs)
            walls[jobs].append(seconds)
            rows = scores(folder / "scores.tsv")
            reference = reference if reference is not None else rows
            same = "same scores" if rows == reference else "SCORES DIFFER from jobs1-0"
            print(f"--jobs {jobs} run {k + 1}: {seconds:.1f} s ({len(rows)} subjects, {same}); "
                  f"load {load_average()}", flush=True)
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    print(f"median wall: --jobs 1 {one:.1f} s, --jobs 2 {two:.1f} s, ratio {two / one:.2f}")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
