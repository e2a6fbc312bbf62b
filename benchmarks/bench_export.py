"""Benchmark ``csvdnet export`` and the exported model: export time, size, load time, network time.

For a training run (``--run``; default: a run directory made here from the demo recipe's
network, ``training/configs/synthetic-demo.yaml``, with its initial weights: speed and size do
not depend on the weights) it

1. exports it (:func:`csvdnet.export.export_run`, float32) and records the wall time and the
   size of the version folder;
2. loads the export with ``Predictor.from_dir`` (checksums verified, ``tf.saved_model.load``)
   and the run with its Keras network, timing both (each in its own process: a cold load);
3. times the network step of prediction (``Predictor._network``: sliding windows of the
   training patch + the whole-volume score) on one volume of ``--shape`` voxels, exported
   SavedModel vs in-memory Keras model in the same process, ``--repeats`` times each after one
   warm-up, alternating so that the load of other processes falls on both alike.

Usage::

    python benchmarks/bench_export.py                         # demo recipe, 96 x 112 x 96 voxels
    python benchmarks/bench_export.py --run runs/synthetic-demo --repeats 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RECIPE = HERE.parent / "training" / "configs" / "synthetic-demo.yaml"


def recipe_run(root: Path) -> Path:
    """A run directory of the demo recipe's network with initial weights (timing only)."""
    import keras

    from csvdnet.cache import PREPROCESS_FORMAT, PREPROCESS_VERSION
    from csvdnet.config import dump_config, load_config, to_dict
    from csvdnet.models import build_model
    from csvdnet.run.layout import WEIGHTS_NAME

    cfg = load_config(RECIPE)
    run = root / "run"
    (run / "best").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "preprocess.json").write_text(json.dumps({
        "format": PREPROCESS_FORMAT, "version": PREPROCESS_VERSION,
        "channels": list(cfg.data.channels), "preprocess": to_dict(cfg.preprocess),
        "pad_multiple": cfg.preprocess.pad_multiple}))
    keras.utils.set_random_seed(0)
    build_model(cfg.model).save_weights(run / "best" / WEIGHTS_NAME)
    return run


def cold_load(path: str) -> float:
    """Seconds of ``Predictor.from_dir(path)`` in a fresh process (TensorFlow imported first)."""
    code = ("import os, sys, time; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\n"
            "import tensorflow\n"
            "from csvdnet.inference.predictor import Predictor\n"
            "t = time.perf_counter(); Predictor.from_dir(sys.argv[1])\n"
            "print(time.perf_counter() - t)\n")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None, help="Training run (default: demo recipe, "
                                                    "initial weights).")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 112, 96),
                        help="Working-grid volume of the network timing (demo: 1.5 mm brain).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    args = parser.parse_args()

    import numpy as np

    from _machine import describe_machine
    from csvdnet.export import export_run
    from csvdnet.inference.predictor import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = Path(args.run) if args.run else recipe_run(root)
        started = time.perf_counter()
        result = export_run(run, root / "saved_models" / "bench", version=1)
        export_seconds = time.perf_counter() - started
        loads = {"export": cold_load(str(result.path)), "run": cold_load(str(run))}
        exported, keras_run = Predictor.from_dir(result.path), Predictor.from_dir(run)
        image = np.random.default_rng(0).normal(size=(*args.shape, 5)).astype(np.float32)
        times: dict[str, list[float]] = {"export": [], "run": []}
        for predictor in (exported, keras_run):  # warm-up: tracing, first allocations
            predictor._network(image)
        for _ in range(args.repeats):
            for name, predictor in (("export", exported), ("run", keras_run)):
                t = time.perf_counter()
                predictor._network(image)
                times[name].append(time.perf_counter() - t)
        a, b = exported._network(image), keras_run._network(image)
        difference = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    median = {k: statistics.median(v) for k, v in times.items()}
    figures = {
        "machine": describe_machine(), "load_average": os.getloadavg(),
        "model": str(args.run or "demo recipe, initial weights"),
        "export_seconds": export_seconds, "size_mb": result.size_bytes / 1e6,
        "cold_load_seconds": loads, "shape": list(args.shape), "window": exported.window,
        "network_seconds": times, "network_median": median,
        "ratio_export_to_keras": median["export"] / median["run"],
        "max_abs_difference": difference,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    multiprocessing.freeze_support()
    main()
