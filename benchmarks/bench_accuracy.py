"""Accuracy of a trained run on a held-out cache, against the recipe's targets.

Runs :func:`csvdnet.training.heldout.evaluate_run` (working spacing, dense outputs by sliding
window, the run's thresholds and minimum lesion sizes, exactly as training validates) and prints
markdown: the pooled metrics next to the demo recipe's aims, per-subject medians and quartiles
(the VALDO way of reporting), and the confusion of the total SVD score. With ``--calibrate`` it
first picks each task's threshold on the run's own validation subjects
(:func:`~csvdnet.training.heldout.calibrate_thresholds`) and evaluates the held-out cache with
those as well. Writes everything as JSON too.

Usage (the demo recipe's held-out check, training/README.md)::

    csvdnet synth --profile demo --subjects 24 --seed 7 --out demo/heldout
    csvdnet preprocess demo/heldout/manifest.csv --out demo/heldout-cache \\
        --config training/configs/synthetic-demo.yaml
    python benchmarks/bench_accuracy.py --run runs/synthetic-demo --cache demo/heldout-cache \\
        --calibrate
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from csvdnet.errors import CsvdnetInputError  # noqa: E402
from csvdnet.evaluation import DetectionCounts, LesionCounts  # noqa: E402
from csvdnet.training.heldout import (HeldoutResult, calibrate_thresholds,  # noqa: E402
                                      evaluate_run)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

AIMS = {"dice_wmh": 0.85, "f1_cmb": 0.85, "f1_epvs": 0.85, "lesion_f1_lacune": 0.8,
        "lesion_f1_rssi": 0.8, "score_kappa": 0.95}
"""The demo recipe's aims (issue 4): what a network that has learnt the phantoms reaches."""

NAMES = {"dice_wmh": "WMH Dice (voxels, pooled)", "lesion_f1_wmh": "WMH lesion F1",
         "dice_rssi": "RSSI Dice", "lesion_f1_rssi": "RSSI lesion F1",
         "dice_lacune": "lacune Dice", "lesion_f1_lacune": "lacune lesion F1",
         "f1_cmb": "CMB detection F1", "f1_epvs": "EPVS detection F1",
         "score_accuracy": "total SVD score accuracy",
         "score_kappa": "total SVD score quadratic-weighted kappa",
         "selection": "selection score (mean of the aimed metrics)"}


def _subject_f1(row: dict[str, float], task: str) -> float | None:
    """Per-subject F1 from the counts; None when the subject has nothing to find or found."""
    if f"tp_{task}" in row:
        counts = DetectionCounts(*(int(row[f"{k}_{task}"]) for k in ("tp", "fp", "fn")))
        return counts.f1 if counts.n_true + counts.n_pred else None
    if f"lesions_true_{task}" not in row:
        return None
    counts = LesionCounts(*(int(row[f"lesions_{k}_{task}"])
                            for k in ("true", "detected", "predicted", "hit")))
    return counts.f1 if counts.true + counts.predicted else None


def report(result: HeldoutResult, title: str) -> str:
    """Markdown: pooled metrics vs aims, per-subject quartiles, score confusion."""
    lines = [f"### {title}", "",
             f"Run `{result.run_dir}` ({result.weights} weights, {result.policy}), held-out cache "
             f"`{result.cache}`: {len(result.subjects)} subjects; prediction (sliding window + "
             f"whole-volume score) {result.seconds_per_subject:.1f} s per subject (median).",
             "", "| metric | pooled | per-subject median [IQR] (n) | aim |", "|---|---:|---:|---:|"]
    for key, name in NAMES.items():
        if key not in result.metrics:
            continue
        per = []
        if key.startswith(("dice_", "lesion_f1_", "f1_")):
            task = key.rsplit("_", 1)[1]
            for row in result.per_subject:
                if key.startswith("dice_"):
                    # Per-subject Dice over the subjects that have the lesion.
                    if row.get(f"volume_voxels_{task}", 0) > 0:
                        per.append(row[key])
                else:
                    value = _subject_f1(row, task)
                    if value is not None:
                        per.append(value)
        spread = (f"{np.median(per):.3f} [{np.percentile(per, 25):.3f}-"
                  f"{np.percentile(per, 75):.3f}] ({len(per)})" if per else "")
        aim = f">= {AIMS[key]}" if key in AIMS else ""
        lines.append(f"| {name} | {result.metrics[key]:.3f} | {spread} | {aim} |")
    pairs = [(int(r["score_true"]), int(r["score_predicted"])) for r in result.per_subject
             if "score_true" in r]
    if pairs:
        confusion = np.zeros((5, 5), int)
        for true, predicted in pairs:
            confusion[true, predicted] += 1
        lines += ["", "Total SVD score, rows true, columns predicted:", "",
                  "| true \\ predicted | 0 | 1 | 2 | 3 | 4 |", "|---|---|---|---|---|---|"]
        lines += [f"| {i} | " + " | ".join(str(n) for n in confusion[i]) + " |"
                  for i in range(5)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory written by csvdnet train")
    parser.add_argument("--cache", required=True, help="held-out preprocessed cache")
    parser.add_argument("--weights", choices=("best", "last"), default="best")
    parser.add_argument("--out", default="benchmarks/out/accuracy.json",
                        help="JSON with pooled and per-subject metrics")
    parser.add_argument("--window", type=int, nargs=3, default=None,
                        help="sliding-window size (default: the run's inference.window)")
    parser.add_argument("--calibrate", action="store_true",
                        help="also evaluate with thresholds calibrated on the run's validation "
                             "subjects")
    args = parser.parse_args(argv)
    print(f"## Held-out accuracy — `python benchmarks/bench_accuracy.py` "
          f"({datetime.datetime.now():%Y-%m-%d %H:%M})\n\n{describe_machine()}\n")
    record = {}
    try:
        result = evaluate_run(args.run, args.cache, weights=args.weights, window=args.window)
        record["configured"] = result.to_dict()
        print(report(result, "With the run's configured thresholds"))
        if args.calibrate:
            chosen, table = calibrate_thresholds(args.run, weights=args.weights,
                                                 window=args.window)
            record["calibration"] = {"thresholds": chosen,
                                     "validation_metric_by_threshold": table}
            print("\nThresholds calibrated on the run's validation subjects (task: threshold, "
                  "validation metric at each grid value):\n")
            for task, scores in table.items():
                grid = ", ".join(f"{v:g}: {m:.3f}" for v, m in scores.items())
                print(f"- {task}: **{chosen[task]:g}** ({grid})")
            calibrated = evaluate_run(args.run, args.cache, weights=args.weights,
                                      window=args.window, thresholds=chosen)
            record["calibrated"] = calibrated.to_dict()
            print("\n" + report(calibrated, "With the calibrated thresholds"))
    except CsvdnetInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"\n(JSON: {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
