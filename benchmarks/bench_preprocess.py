"""Benchmark ``preprocess_subject``: time per subject and per stage, registration error vs truth.

Usage::

    python benchmarks/bench_preprocess.py                      # 3 synthetic demo subjects
    python benchmarks/bench_preprocess.py --subjects 5 --spacing 1.5
    python benchmarks/bench_preprocess.py --cohort /path/to/manifest.csv

Without ``--cohort`` a small synthetic cohort (``csvdnet.synth.generate_cohort``, profile
``demo``) is written to a temporary folder. Each subject folder of a synthetic cohort holds
``synth.json`` with the true head motion per sequence (``sequence_transforms``, reference world ->
sequence world), which the estimated transforms are compared with: the rotation angle of
``R_est^T R_true`` in degrees, and the largest displacement (mm) between the two transforms over
the 8 corners of the brain box. Prints markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nibabel.affines import apply_affine  # noqa: E402

from csvdnet.config import PreprocessConfig  # noqa: E402
from csvdnet.io import load_nifti, read_cohort  # noqa: E402
from csvdnet.preprocessing import subject as pp  # noqa: E402
from csvdnet.preprocessing.grid import _centre_corners  # noqa: E402
from _machine import describe_machine  # noqa: E402

_TIMES: dict[str, float] = defaultdict(float)


def _timed(name: str, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _TIMES[name] += time.perf_counter() - t0
    return wrapper


def _instrument() -> None:
    """Wrap the stages of preprocess_subject (functions it looks up in its module) with timers."""
    pp.register_sequences = _timed("registration", pp.register_sequences)
    pp.auto_brain_mask = _timed("brain mask", pp.auto_brain_mask)
    pp._foreground = _timed("foreground (Otsu)", pp._foreground)
    pp._resample = _timed("resampling", pp._resample)
    pp._normalise = _timed("normalisation", pp._normalise)


def _vector_flags() -> str:
    """The widest x86 vector extensions the CPU reports (the goals must hold without AVX-512)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile")
    return ", ".join(f for f in wanted if f in flags) or "no AVX2"


def registration_error(est: np.ndarray, true: np.ndarray,
                       corners: np.ndarray) -> tuple[float, float]:
    """(rotation angle in degrees, max displacement in mm over ``corners``) between transforms."""
    rel = est[:3, :3].T @ true[:3, :3]
    angle = np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1.0, 1.0)))
    disp = apply_affine(est, corners) - apply_affine(true, corners)
    return float(angle), float(np.linalg.norm(disp, axis=1).max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", help="cohort folder or manifest (default: a synthetic one)")
    parser.add_argument("--subjects", type=int, default=3, help="synthetic subjects (default 3)")
    parser.add_argument("--profile", default="demo", help="synthetic profile (default demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spacing", type=float, default=1.5, help="working spacing, mm")
    parser.add_argument("--limit", type=int, default=None, help="at most this many subjects")
    args = parser.parse_args(argv)

    tmp = None
    if args.cohort is None:
        from csvdnet.synth import generate_cohort
        tmp = tempfile.TemporaryDirectory(prefix="bench_preprocess_")
        cohort_path = generate_cohort(Path(tmp.name) / "cohort", args.subjects, args.seed,
                                      profile=args.profile, progress=False)
    else:
        cohort_path = Path(args.cohort)
    cohort = read_cohort(cohort_path)
    subjects = cohort.subjects[:args.limit] if args.limit else cohort.subjects
    cfg = PreprocessConfig(spacing=(args.spacing,) * 3)
    _instrument()

    totals, stages, errors = [], defaultdict(list), []
    for subject in subjects:
        _TIMES.clear()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        images = {name: load_nifti(path) for name, path in subject.sequences.items()}
        load = time.perf_counter() - t0
        t1 = time.perf_counter()
        _, meta = pp.preprocess_subject(images, cfg)
        run = time.perf_counter() - t1
        totals.append(run)
        stages["CPU time, load + preprocess (s of CPU)"].append(time.process_time() - cpu0)
        stages["load (nifti)"].append(load)
        for name, value in _TIMES.items():
            stages[name].append(value)
        truth_file = Path(next(iter(subject.sequences.values()))).parent / "synth.json"
        if truth_file.is_file():
            truth = json.loads(truth_file.read_text())["sequence_transforms"]
            start, stop = (np.asarray(b) for b in meta.brain_box)
            corners = apply_affine(meta.working_affine,
                                   start + _centre_corners(stop - start + 1) - 0.5)
            for name in meta.channels:
                if name == meta.reference or name not in truth:
                    continue
                angle, disp = registration_error(meta.sequence_transforms[name],
                                                 np.asarray(truth[name]), corners)
                errors.append((subject.id, name, angle, disp))

    print("# preprocess_subject benchmark\n")
    print(f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"- machine: {describe_machine()}; vector units: {_vector_flags()}")
    print(f"- load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
          " (other processes share the CPUs: compare the CPU-time row)")
    print(f"- cohort: {cohort_path} ({len(subjects)} subjects), spacing {args.spacing} mm, "
          f"sequences {', '.join(cohort.sequences)}\n")
    print("| stage | median s / subject |\n|---|---|")
    print(f"| **preprocess_subject total** | **{statistics.median(totals):.2f}** |")
    for name, values in stages.items():
        print(f"| {name} | {statistics.median(values):.2f} |")
    print("\n(`foreground` is also called inside registration and the brain mask; the stages "
          "overlap.)\n")
    if errors:
        print("| subject | sequence | rotation error (deg) | max displacement (mm) |\n"
              "|---|---|---|---|")
        for sid, name, angle, disp in errors:
            print(f"| {sid} | {name} | {angle:.3f} | {disp:.3f} |")
        worst_a = max(e[2] for e in errors)
        worst_d = max(e[3] for e in errors)
        print(f"\n**worst: {worst_a:.3f} deg, {worst_d:.3f} mm** over {len(errors)} "
              f"registrations")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
