"""Benchmark ``csvdnet predict`` per subject: seconds per stage, peak memory, network GFLOP/s.

For each working spacing (default: 1.5 mm, the demo model's, and 1 mm) it synthesises
``clinical``-profile subjects (1 mm anatomy on native clinical grids, the input a user has),
predicts each one through :class:`csvdnet.inference.predictor.Predictor` and writes its full
output (maps, tables, report.json, report.html), timing every stage the predictor records
(load, preprocess, network, invert, postprocess, regions, scoring, outputs, report). Each
spacing runs in its own process so that its peak resident memory is its own.

The network is the one of ``--model`` (a training run) or, by default, the demo recipe's
network (``training/configs/synthetic-demo.yaml``) with its initial weights: speed does not
depend on the weights. Its GFLOP/s (convolution FLOPs of every window and of the whole-volume
score pass, counted from the traced graph) is reported as a ratio to ``tf.nn.conv3d``
(32 -> 32 channels, 3^3 kernel, 1 x 128^3 x 32) timed in the same process.

Usage::

    python benchmarks/bench_predict.py                        # 3 subjects at 1.5 and 1 mm
    python benchmarks/bench_predict.py --subjects 5 --spacings 1.0 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECIPE = ROOT / "training" / "configs" / "synthetic-demo.yaml"
STAGES = ("load", "preprocess", "network", "invert", "postprocess", "regions", "scoring",
          "outputs", "report")


def conv3d_gflops(repeats: int = 3) -> float:
    """GFLOP/s of ``tf.nn.conv3d`` 32 -> 32, k3, on 1 x 128^3 x 32 (the CPU ceiling here)."""
    import tensorflow as tf

    x = tf.random.normal((1, 128, 128, 128, 32))
    kernel = tf.random.normal((3, 3, 3, 32, 32))
    conv = tf.function(lambda: tf.nn.conv3d(x, kernel, [1] * 5, "SAME"))
    conv()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        conv().numpy()
        times.append(time.perf_counter() - start)
    return 2.0 * 128 ** 3 * 27 * 32 * 32 / statistics.median(times) / 1e9


def network_gflop(network: Any, channels: int, window: tuple[int, ...],
                  windows: int, whole: tuple[int, ...]) -> float:
    """Convolution GFLOP of ``windows`` window passes plus one whole-volume pass."""
    import tensorflow as tf

    sys.path.insert(0, str(HERE))
    from bench_model import graph_flops

    def flops(shape: tuple[int, ...]) -> float:
        spec = tf.TensorSpec((1, *shape, channels), tf.float32)
        graph = tf.function(lambda x: network(x, training=False)).get_concrete_function(spec).graph
        return graph_flops(graph)

    return (windows * flops(window) + flops(whole)) / 1e9


def make_predictor(model_dir: str | None, spacing: float) -> Any:
    """The predictor at ``spacing``: the run's network, or the demo recipe's initial one."""
    import dataclasses

    from csvdnet.config import load_config
    from csvdnet.fsutil import file_sha256
    from csvdnet.inference.predictor import Predictor
    from csvdnet.inference.result import ModelInfo
    from csvdnet.run.precision import dtype_policy

    if model_dir:
        predictor = Predictor.from_dir(model_dir)
        predictor.preprocess_cfg = dataclasses.replace(predictor.preprocess_cfg,
                                                       spacing=(spacing,) * 3)
        return predictor
    import keras
    import tensorflow as tf

    from csvdnet.models import build_model

    cfg = load_config(RECIPE)
    keras.utils.set_random_seed(0)
    with dtype_policy("float32"):  # what predict runs on a CPU
        network = build_model(cfg.model)
    forward = tf.function(lambda x: network(x, training=False), reduce_retracing=True)
    info = ModelInfo(id="demo-recipe-initial-weights", path=str(RECIPE),
                     sha256=file_sha256(RECIPE), kind="run", channels=cfg.data.channels,
                     spacing=(spacing,) * 3, thresholds=dict(cfg.inference.thresholds),
                     min_lesion_mm3=dict(cfg.inference.min_lesion_mm3),
                     modality_dropout=cfg.data.modality_dropout > 0)
    predictor = Predictor(forward, info,
                          dataclasses.replace(cfg.preprocess, spacing=(spacing,) * 3),
                          window=cfg.inference.window, overlap=cfg.inference.overlap,
                          gaussian=cfg.inference.gaussian_blend, rule_sets=cfg.inference.rule_sets,
                          score_classes=cfg.model.score_classes)
    predictor.network = network
    return predictor


def run_spacing(spacing: float, cohort: str, out: str, model_dir: str | None,
                queue: Any) -> None:
    """Predict every subject of ``cohort`` at ``spacing``; put the figures on ``queue``."""
    from csvdnet.inference import outputs
    from csvdnet.inference.sliding_window import window_origins
    from csvdnet.io import read_cohort

    predictor = make_predictor(model_dir, spacing)
    ceiling = conv3d_gflops()
    rows = []
    for subject in read_cohort(cohort):
        started = time.perf_counter()
        result = predictor.predict(subject)
        outputs.write_subject(result, Path(out) / f"{spacing:g}mm")
        total = time.perf_counter() - started
        rows.append({"subject": subject.id, "total": total, **result.timings})
    # The network's work on the last subject: windows of the training patch + one whole pass.
    from csvdnet.io import load_subject
    from csvdnet.preprocessing import preprocess_subject

    images = load_subject(read_cohort(cohort).subjects[-1])
    array, _ = preprocess_subject({c: images[c] for c in predictor.info.channels},
                                  predictor.preprocess_cfg)
    window = tuple(min(w, s) for w, s in zip(predictor.window, array.shape[:3]))
    count = len(window_origins(array.shape[:3], window, predictor.overlap))
    gflop = network_gflop(predictor.network, array.shape[-1], window, count, array.shape[:3])
    network_s = statistics.median(r["network"] for r in rows[1:] or rows)
    queue.put({"spacing": spacing, "rows": rows, "working_shape": list(array.shape[:3]),
               "windows": count, "network_gflop": gflop,
               "network_gflops_per_s": gflop / network_s, "conv3d_gflops_per_s": ceiling,
               "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20})


def main() -> None:
    sys.path.insert(0, str(HERE))
    from _machine import describe_machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / "out" / "predict"))
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--spacings", type=float, nargs="+", default=[1.5, 1.0])
    parser.add_argument("--model", default=None, help="A training run (default: the demo "
                                                       "recipe's network, initial weights); "
                                                       "the FLOP count needs its Keras network.")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from csvdnet.synth import generate_cohort

    cohort = Path(args.out) / "cohort"
    manifest = cohort / "manifest.csv"
    if not manifest.is_file():
        generate_cohort(cohort, args.subjects, args.seed, profile="clinical", progress=False)
    print(f"# bench_predict: {describe_machine()}, {time.strftime('%Y-%m-%d')}, "
          f"load {os.getloadavg()[0]:.1f}")
    results = []
    context = multiprocessing.get_context("spawn")
    for spacing in args.spacings:
        queue = context.Queue()
        process = context.Process(target=run_spacing,
                                  args=(spacing, str(manifest), args.out, args.model, queue))
        process.start()
        figures = None
        while figures is None:  # a child that dies (an error) must not leave us waiting
            try:
                figures = queue.get(timeout=5)
            except Exception:  # queue.Empty
                if not process.is_alive():
                    raise SystemExit(f"the {spacing:g} mm run failed (its traceback is above)")
        process.join()
        results.append(figures)
        rows = figures["rows"]
        steady = rows[1:] or rows  # the first subject also traces the network
        print(f"\n### {spacing:g} mm working spacing: working grid {figures['working_shape']}, "
              f"{figures['windows']} windows, peak RSS {figures['peak_rss_gib']:.2f} GiB")
        print("| stage | median s (subjects 2..N) | first subject s |")
        print("|---|---:|---:|")
        for stage in STAGES + ("total",):
            values = [r.get(stage, 0.0) for r in steady]
            print(f"| {stage} | {statistics.median(values):.2f} | {rows[0].get(stage, 0.0):.2f} |")
        print(f"network: {figures['network_gflop']:.1f} GFLOP, "
              f"{figures['network_gflops_per_s']:.0f} GFLOP/s = "
              f"{figures['network_gflops_per_s'] / figures['conv3d_gflops_per_s']:.0%} of "
              f"tf.nn.conv3d's {figures['conv3d_gflops_per_s']:.0f} GFLOP/s in the same process")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
