"""Post-network stages of ``csvdnet predict`` on one subject: what each speed-up buys, as ratios
taken in the same process (the machine may be shared).

Predicts one synthetic subject with the model (``--model``, default the shipped one), then on
that subject's own arrays times, ``--repeats`` times each (medians, CPU and wall seconds),
per-component maxima (``find_peaks`` / ``components``) and the WMH components' distance
   extremes (``measure``): ``scipy.ndimage.maximum`` on the whole volume vs
   :func:`csvdnet.inference.postprocess.per_label` on the labelled voxels only.

Usage::

    python benchmarks/bench_postprocess.py [--cohort DIR] [--profile clinical] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402


def _flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile")
                            if f in have)
    return "?"


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median (CPU s, wall s) of ``repeats`` calls."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, help="a cohort folder (default: one synthetic "
                                                    "subject made here)")
    parser.add_argument("--profile", default="clinical")
    parser.add_argument("--model", default=str(HERE.parent / "saved_models" / "csvdnet-synthetic"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    from scipy import ndimage

    from csvdnet.inference import postprocess
    from csvdnet.inference.measure import ventricle_distance
    from csvdnet.inference.predictor import Predictor
    from csvdnet.io import read_cohort
    from csvdnet.synth import generate_cohort

    work = Path(tempfile.mkdtemp(prefix="bench_post_"))
    try:
        cohort_dir = args.cohort
        if cohort_dir is None:
            cohort_dir = work / "cohort"
            generate_cohort(cohort_dir, 1, 61, profile=args.profile, progress=False)
        subject = read_cohort(cohort_dir).subjects[0]
        predictor = Predictor.from_dir(args.model)
        prepared = predictor.prepare(subject)
        raw = predictor.run_network(prepared.array)
        result = predictor.finish(prepared, raw, 0.0)

        rows = []
        # 1. Per-label reductions on this subject's own arrays.
        cases = []
        for task in ("wmh", "lacune", "rssi"):
            labels, count = ndimage.label(result.masks[task], structure=postprocess.CONNECTIVITY)
            cases.append((f"{task} components' max probability ({count})",
                          np.asarray(result.probabilities[task], float), labels, count,
                          ndimage.maximum))
        for task in ("cmb", "epvs"):
            heat = np.asarray(raw[task])[0, ..., 0]
            peaks = ((heat >= predictor.info.thresholds[task])
                     & (ndimage.maximum_filter(heat, size=3) == heat))
            labels, count = ndimage.label(peaks, structure=postprocess.CONNECTIVITY)
            cases.append((f"{task} peak plateaus' height ({count})", heat, labels, count,
                          ndimage.maximum))
        distance = ventricle_distance(result.regions, result.affine)
        labels, count = ndimage.label(result.masks["wmh"], structure=postprocess.CONNECTIVITY)
        cases.append((f"WMH components' nearest ventricle distance ({count})", distance, labels,
                      count, ndimage.minimum))
        for name, values, labels, count, reduce in cases:
            if count == 0:
                continue  # nothing to reduce: both ways return at once
            index = np.arange(1, count + 1)
            whole = _timed(lambda: reduce(values, labels, index), args.repeats)
            fast = _timed(lambda: postprocess.per_label(reduce, values, labels, count),
                          args.repeats)
            assert np.array_equal(np.asarray(reduce(values, labels, index), float).reshape(-1),
                                  postprocess.per_label(reduce, values, labels, count))
            rows.append((name, whole, fast))

        load = os.getloadavg()[0]
        print(f"### Post-network stages ({datetime.date.today()}, "
              f"`python benchmarks/bench_postprocess.py --profile {args.profile}`)\n")
        print(f"{describe_machine()}; flags {_flags()}; load average {load:.1f} at the end; "
              f"one {args.profile} subject, reference grid {result.shape}; medians of "
              f"{args.repeats}.\n")
        print("| step | before: CPU s / wall s | after: CPU s / wall s | wall ratio |")
        print("|---|---:|---:|---:|")
        for name, (c0, w0), (c1, w1) in rows:
            print(f"| {name} | {c0:.3f} / {w0:.3f} | {c1:.3f} / {w1:.3f} | {w1 / w0:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
