"""Held-out accuracy against the goals of issue 11, through the code path of ``csvdnet predict``.

What it does:

1. Predicts the held-out cohort with the library code ``csvdnet predict`` runs
   (:meth:`csvdnet.inference.predictor.Predictor.from_dir`,
   :func:`csvdnet.inference.cohort.open_input`, :func:`~csvdnet.inference.cohort.predict_cohort`):
   native-space outputs, the model's stored thresholds and minimum lesion sizes, into
   ``OUT/predictions`` (every subject redone), timing each subject. ``--model`` is a training
   run directory or an exported SavedModel directory, as for ``csvdnet predict``. With
   ``--predictions DIR`` nothing is predicted: an existing ``csvdnet predict`` output folder is
   evaluated instead (its ``scores.tsv`` ``seconds`` column gives the timing, its subjects'
   ``report.json`` the model that made it).
2. Evaluates the predictions against the cohort's labels with
   :func:`csvdnet.evaluation.evaluate.evaluate` (the code of ``csvdnet evaluate``: native space,
   95 % percentile bootstrap intervals over subjects) into ``OUT/evaluation``.
3. Prints the goals table of issue 11 and writes it to ``OUT/results.md`` and
   ``OUT/results.json``: each figure with its bootstrap interval where ``evaluate`` gives one
   ("-" where it gives none), the goal, whether it is met and the numbers behind it; the
   agreement of the rule total with the ordinal-head total; the machine, its CPU flags, the load
   average, the date, the model, the cohort, its synthesis seed and the number of subjects.
4. With ``--compare OTHER/results.json``, adds the other run's value and the difference
   (an A/B comparison, A = this run, B = the other), marking a difference "within the interval"
   when either run's value lies inside the other's 95 % interval: such a difference is not
   established by one cohort (run a second seed).

The goals table, the A/B comparison and the markdown of ``results.md`` are in
``_accuracy_tables.py`` beside this script.

Exit status: 0; 1 when a subject failed to predict or has no prediction (the figures then leave
it out, and the table says so); 2 for an unusable cohort, model or prediction folder.

The former working-grid mode (``--run`` / ``--cache``, :mod:`csvdnet.training.heldout`) is gone:
the goals are measured on the outputs users get. ``csvdnet.training.heldout`` still serves
training's own validation.

Usage (the demo recipe's held-out check, training/README.md)::

    csvdnet synth --profile demo --subjects 24 --seed 7 --out demo/heldout
    python benchmarks/bench_accuracy.py --model runs/synthetic-demo \\
        --cohort demo/heldout/manifest.csv --out benchmarks/out/heldout-demo --jobs 2

    # an exported model, with test-time flips, compared with the run above:
    python benchmarks/bench_accuracy.py --model saved_models/csvdnet-synthetic/2 \\
        --cohort demo/heldout/manifest.csv --out benchmarks/out/heldout-export-tta --tta \\
        --label "export + TTA" --compare benchmarks/out/heldout-demo/results.json

    # existing predictions (no prediction run):
    python benchmarks/bench_accuracy.py --model runs/synthetic-demo \\
        --cohort demo/heldout/manifest.csv --predictions demo/heldout-pred \\
        --out benchmarks/out/heldout-demo-existing
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from csvdnet import __version__  # noqa: E402
from csvdnet.errors import CsvdnetInputError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _accuracy_tables import (AGREEMENT, _confusion, _get, compare,  # noqa: E402,F401
                              goal_rows, report)  # _confusion: bench_rating imports it from here
from _machine import describe_machine  # noqa: E402

RESULTS_FORMAT = "csvdnet-bench-accuracy"
RESULTS_VERSION = 1


# ----------------------------------------------------------------------------------------------
# The machine, the cohort, the model.

def cpu_flags() -> dict[str, Any]:
    """Whether the CPU has avx2, avx512f, avx512_bf16 and AMX (``/proc/cpuinfo`` flags)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return {"avx2": None, "avx512f": None, "avx512_bf16": None, "amx": None}
    amx = sorted(f for f in flags if f.startswith("amx"))
    return {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "amx": bool(amx), "amx_flags": amx}


PACKAGES = ("numpy", "scipy", "SimpleITK", "nibabel", "scikit-image", "tensorflow", "keras")
"""Packages whose version can move a held-out figure (the same model and cohort seed gave CMB FP
4 vs 5 and ordinal exact 0.417 vs 0.500 on two installs, 2026-12-07 / 08)."""


def package_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`PACKAGES` (None when absent)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when the working tree differs), if in git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty.strip() else "")


def cohort_synthesis(cohort_path: Path) -> dict[str, Any] | None:
    """``seed`` and ``profile`` from the first subject's ``synth.json`` (a synthetic cohort)."""
    from csvdnet.io import read_cohort

    cohort = read_cohort(cohort_path)
    for subject in cohort.subjects:
        for image in subject.sequences.values():
            path = Path(image).parent / "synth.json"
            if path.is_file():
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    return None
                return {"seed": record.get("seed"), "profile": record.get("profile"),
                        "first_subject": subject.id, "synth_json": str(path)}
        return None
    return None


def reports_model(pred_dir: Path) -> dict[str, Any]:
    """The model named by the predictions' ``report.json`` files (existing predictions)."""
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(pred_dir.rglob("*report.json")):
        try:
            model = json.loads(path.read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(model, dict):
            models.setdefault((str(model.get("path")), str(model.get("sha256"))), model)
    return {"models": list(models.values()), "consistent": len(models) == 1}


def recorded_seconds(pred_dir: Path) -> list[float]:
    """The ``seconds`` column of an existing ``scores.tsv`` (the predictor's stage timings)."""
    path = pred_dir / "scores.tsv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        out = []
        for row in csv.DictReader(handle, delimiter="\t"):
            try:
                out.append(float(row.get("seconds") or "nan"))
            except ValueError:
                continue
        return [s for s in out if s == s]


# ----------------------------------------------------------------------------------------------
# Prediction and evaluation.

def predict(model: Path, cohort: Path, out: Path, *, jobs: int, tta: bool, weights: str
            ) -> dict[str, Any]:
    """Predict ``cohort`` into ``out`` exactly as ``csvdnet predict`` (local engine) does."""
    from csvdnet.tfimport import import_tensorflow

    tf = import_tensorflow()
    from csvdnet.inference.cohort import open_input, predict_cohort, progress_printer
    from csvdnet.inference.predictor import Predictor

    started = time.perf_counter()
    predictor = Predictor.from_dir(model, weights=weights, tta=tta)
    load_seconds = time.perf_counter() - started
    subjects, problems, bids = open_input(cohort, predictor.info.channels,
                                          predictor.preprocess_cfg.reference)
    total = len(subjects) + len(problems)
    started = time.perf_counter()
    summary = predict_cohort(predictor, subjects, out, bids=bids, source=cohort, jobs=jobs,
                             overwrite=True, on_subject=progress_printer(total),
                             problems=problems)
    wall = time.perf_counter() - started
    seconds = list(summary.seconds.values())
    return {"made_here": True, "folder": str(out), "jobs": jobs, "tta": tta, "weights": weights,
            "tensorflow": getattr(tf, "__version__", None),
            "model": dataclasses.asdict(predictor.info),
            "subjects_total": total, "predicted": len(summary.done),
            "failed": {**problems, **summary.failed},
            "model_load_seconds": round(load_seconds, 2), "wall_seconds": round(wall, 2),
            "seconds_per_subject_median": round(statistics.median(seconds), 2)
            if seconds else None,
            "seconds_per_subject_wall": round(wall / len(seconds), 2) if seconds else None,
            "seconds_source": "each subject's load + predict + write in predict_cohort, "
                              f"{jobs} in flight"}


def existing_predictions(pred_dir: Path, model: Path) -> dict[str, Any]:
    seconds = recorded_seconds(pred_dir)
    reports = reports_model(pred_dir)
    note = None
    if reports["models"]:
        paths = {str(Path(m.get("path", "")).resolve()) for m in reports["models"]}
        if str(model.resolve()) not in paths:
            note = (f"the predictions' report.json files name model {sorted(paths)}, not "
                    f"--model {model}")
    if not reports["consistent"] and reports["models"]:
        note = (note + "; " if note else "") + "the predictions come from more than one model"
    return {"made_here": False, "folder": str(pred_dir), "jobs": None, "tta": None,
            "weights": None, "model_from_reports": reports["models"], "model_note": note,
            "seconds_per_subject_median": round(statistics.median(seconds), 2)
            if seconds else None,
            "seconds_source": "the `seconds` column of their scores.tsv, the sum of the "
                              "predictor's stage timings"}


def run_evaluation(cohort: Path, pred_dir: Path, out: Path) -> tuple[dict[str, Any], list]:
    from csvdnet.evaluation.evaluate import evaluate

    seen = [0]

    def progress(subject: str, state: str) -> None:
        seen[0] += 1
        print(f"{seen[0]}: {subject}: {state}", file=sys.stderr, flush=True)

    result = evaluate(cohort, pred_dir, out, on_subject=progress)
    return result.summary, result.rows


# ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="training run directory or exported SavedModel directory")
    parser.add_argument("--cohort", required=True,
                        help="labelled held-out cohort: folder or manifest.csv")
    parser.add_argument("--out", required=True,
                        help="output folder: predictions/, evaluation/, results.md, results.json")
    parser.add_argument("--jobs", type=int, default=2,
                        help="subjects in flight at once, as csvdnet predict --jobs")
    parser.add_argument("--tta", action="store_true", help="left-right flip test-time "
                                                           "augmentation, as csvdnet predict")
    parser.add_argument("--weights", choices=("best", "last"), default="best",
                        help="which weights of a training run")
    parser.add_argument("--predictions", default=None,
                        help="evaluate this existing csvdnet predict output instead of "
                             "predicting")
    parser.add_argument("--label", default=None, help="a name for this run in the table")
    parser.add_argument("--compare", default=None,
                        help="results.json of another run of this script (A/B comparison)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    model, cohort, out = Path(args.model), Path(args.cohort), Path(args.out)
    other = None
    if args.compare:
        try:
            other = json.loads(Path(args.compare).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            parser.error(f"--compare {args.compare}: {exc}")
        if other.get("format") != RESULTS_FORMAT:
            parser.error(f"--compare {args.compare}: not a results.json of this script")
    if not cohort.exists():
        parser.error(f"--cohort {cohort}: not found")
    if args.predictions and not Path(args.predictions).is_dir():
        parser.error(f"--predictions {args.predictions}: not a folder")
    if not args.predictions and not model.is_dir():
        parser.error(f"--model {model}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION, "label": args.label,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "csvdnet_version": __version__, "git_commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None
                                                       else sys.argv[1:])]),
        "model": str(model),
        "machine": {"description": describe_machine(), "cpu_flags": cpu_flags(),
                    "load_average_start": load_average(), "packages": package_versions()}}
    try:
        synthesis = cohort_synthesis(cohort)
        if args.predictions:
            pred_dir = Path(args.predictions)
            record["prediction"] = existing_predictions(pred_dir, model)
        else:
            pred_dir = out / "predictions"
            record["prediction"] = predict(model, cohort, pred_dir, jobs=args.jobs,
                                           tta=args.tta, weights=args.weights)
        summary, _ = run_evaluation(cohort, pred_dir, out / "evaluation")
    except CsvdnetInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    subjects = summary["subjects"]
    record["machine"]["load_average_end"] = load_average()
    record["cohort"] = {"path": str(cohort), "subjects": subjects["cohort"],
                        "evaluated": subjects["evaluated"], "synthesis": synthesis}
    record["evaluation"] = {"folder": str(out / "evaluation"),
                            "summary": str(out / "evaluation" / "summary.json"),
                            "missing_prediction": subjects["missing_prediction"],
                            "confidence_intervals": _get(summary, "definitions",
                                                         "confidence_intervals")}
    record["rows"] = goal_rows(summary)
    record["agreement"] = goal_rows(summary, AGREEMENT)
    if other is not None:
        other_seed = _get(other, "cohort", "synthesis", "seed")
        warning = None
        if (other_seed != (synthesis or {}).get("seed")
                or _get(other, "cohort", "subjects") != subjects["cohort"]):
            warning = ("B was measured on a different cohort (seed or subject count differs): "
                       "the difference mixes model and cohort")
        record["comparison"] = {"path": args.compare, "label": other.get("label"),
                                "model": other.get("model"),
                                "cohort": _get(other, "cohort", "path"), "seed": other_seed,
                                "warning": warning,
                                "rows": compare(record["rows"] + record["agreement"], other)}
    text = report(record)
    (out / "results.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(text)
    print(f"(written: {out / 'results.md'}, {out / 'results.json'})")
    failed = record["prediction"].get("failed") or {}
    return 1 if failed or subjects["missing_prediction"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
