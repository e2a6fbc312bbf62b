"""Benchmark the csvdnet network: shared vs per-head decoder.

For each decoder option and model size it reports the parameter count, the convolution FLOPs of one
forward pass (counted from the traced TensorFlow graph: Conv3D, transposed Conv3D and MatMul ops),
the time per forward pass (batch 1, best of ``--repeats``) and the resulting GFLOP/s next to the
GFLOP/s of a large float32 matmul timed in the same run, so numbers from a loaded or different
machine can still be compared. A short learning comparison trains a small model of each kind on
synthetic volumes (spheres = WMH masks, Gaussian points = CMB heatmaps) and scores held-out ones.

Usage::

    python benchmarks/bench_model.py                      # defaults: 64^3 and 96^3, learning run
    python benchmarks/bench_model.py --sizes 64 --repeats 2 --learn-steps 0 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _machine import cpu_model  # noqa: E402
from csvdnet.config import ModelConfig  # noqa: E402
from csvdnet.losses import MultiTaskLoss, soft_dice_loss  # noqa: E402
from csvdnet.models import build_model  # noqa: E402

DECODERS = ("shared", "per_head")
DEMO = ModelConfig(base_filters=8, depth=3, blocks_per_level=(1, 1, 1, 1), max_filters=64)
"""A CPU demo-sized network (the synthetic-cohort demo trains in minutes on a laptop)."""
LEARN = ModelConfig(input_channels=2, base_filters=8, depth=2, blocks_per_level=(1, 1, 1),
                    dropout=0.0)


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``fn`` over ``repeats`` calls after one warm-up (the least disturbed
    by other processes on a shared machine)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n float32 matmul: the machine's attainable dense rate right now."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda: tf.matmul(a, b))
    seconds = best_time(lambda: matmul().numpy(), repeats)
    return 2 * n ** 3 / seconds / 1e9


def graph_flops(graph: tf.Graph) -> float:
    """FLOPs (2 per multiply-add) of the convolutions and matmuls in a traced graph."""
    total = 0.0
    for op in graph.get_operations():
        if op.type == "Conv3D":  # output voxels x kernel volume x in x out channels
            out, kernel = op.outputs[0].shape, op.inputs[1].shape
            total += 2.0 * np.prod(out[:-1]) * np.prod(kernel)
        elif op.type == "Conv3DBackpropInputV2":  # transposed conv: per *input* voxel
            kernel, small = op.inputs[1].shape, op.inputs[2].shape
            total += 2.0 * np.prod(small[:-1]) * np.prod(kernel)
        elif op.type in ("MatMul", "BatchMatMulV2"):
            a, out = op.inputs[0].shape, op.outputs[0].shape
            total += 2.0 * np.prod(out) * a[-1]
    return total


def measure_forward(cfg: ModelConfig, size: int, repeats: int) -> dict[str, Any]:
    """Parameters, GFLOP and seconds of one batch-1 forward pass at ``size``^3."""
    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    spec = tf.TensorSpec((1, size, size, size, cfg.input_channels), tf.float32)
    forward = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    x = tf.random.normal(spec.shape)
    seconds = best_time(lambda: forward(x)["wmh"].numpy(), repeats)
    gflop = graph_flops(forward.graph) / 1e9
    return {"decoder": cfg.decoder, "size": size, "params": model.count_params(),
            "gflop": gflop, "seconds": seconds, "gflops_per_s": gflop / seconds}


def synthetic_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One noisy 2-channel volume: a random sphere (WMH) and two random points (CMB heatmap)."""
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).astype("float32")
    centre = rng.uniform(n * 0.3, n * 0.7, 3)
    sphere = (np.linalg.norm(grid - centre, axis=-1) <= rng.uniform(n / 8, n / 5)).astype("float32")
    heatmap = np.zeros((n, n, n), "float32")
    for point in rng.integers(2, n - 2, (2, 3)):
        heatmap = np.maximum(heatmap, np.exp(-((grid - point) ** 2).sum(-1) / 2.0))
    image = rng.normal(0.0, 0.3, (n, n, n, 2)).astype("float32")
    image[..., 0] += sphere
    image[..., 1] += heatmap
    return image, {"wmh": sphere[..., None], "cmb": heatmap[..., None].astype("float32")}


def learning_run(decoder: str, steps: int, size: int, seed: int = 0) -> dict[str, Any]:
    """Train on 8 synthetic volumes (batch 2) and score 4 held-out ones."""
    rng = np.random.default_rng(seed)
    samples = [synthetic_sample(rng, size) for _ in range(12)]
    images = np.stack([s[0] for s in samples])
    targets = {t: np.stack([s[1][t] for s in samples]) for t in ("wmh", "cmb")}
    keras.utils.set_random_seed(seed)
    model = build_model(dataclasses.replace(LEARN, decoder=decoder))
    objective = MultiTaskLoss(task_weights={"wmh": 1.0, "cmb": 1.0})
    optimizer = keras.optimizers.AdamW(3e-3)

    @tf.function
    def step(x: tf.Tensor, y: dict[str, tf.Tensor]) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = objective(y, model(x, training=True))["total"]
        pairs = [(g, v) for g, v in zip(tape.gradient(loss, model.trainable_variables),
                                        model.trainable_variables) if g is not None]
        optimizer.apply_gradients(pairs)
        return loss

    start = time.perf_counter()
    losses = []
    for i in range(steps):
        batch = [(2 * i) % 8, (2 * i + 1) % 8]
        losses.append(float(step(images[batch], {t: v[batch] for t, v in targets.items()})))
    seconds = time.perf_counter() - start
    held_out = model(images[8:], training=False)
    dice = 1.0 - float(soft_dice_loss(targets["wmh"][8:],
                                      tf.cast(held_out["wmh"] > 0.5, tf.float32), smooth=1e-6))
    val = objective({t: v[8:] for t, v in targets.items()}, held_out)
    return {"decoder": decoder, "seed": seed, "steps": steps, "first_loss": losses[0],
            "last10_loss": float(np.mean(losses[-10:])), "val_loss": float(val["total"]),
            "val_wmh_dice": dice, "val_cmb_loss": float(val["cmb"]),
            "seconds_per_step": seconds / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96],
                        help="Cubic input sizes (multiples of 2 ** depth).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed forward passes per case.")
    parser.add_argument("--learn-steps", type=int, default=150, help="0 skips the learning run.")
    parser.add_argument("--learn-size", type=int, default=32)
    parser.add_argument("--learn-seeds", type=int, default=1, help="Learning runs per decoder.")
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": cpu_model(),
        "cpus": os.cpu_count(), "load_average_before": os.getloadavg()[0],
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "matmul_gflops_before": matmul_gflops()}
    print(f"# csvdnet model benchmark, {results['date']}, {results['cpus']} CPUs, "
          f"load {results['load_average_before']:.2f}; 2048^2 matmul "
          f"{results['matmul_gflops_before']:.1f} GFLOP/s")

    print("\n| model | decoder | size | params | GFLOP | s / forward | GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    forward = []
    for label, base in (("default", ModelConfig()), ("demo", DEMO)):
        for size in args.sizes:
            for decoder in DECODERS:
                row = {"model": label,
                       **measure_forward(dataclasses.replace(base, decoder=decoder), size,
                                         args.repeats)}
                forward.append(row)
                print(f"| {label} | {decoder} | {size}^3 | {row['params']:,} | {row['gflop']:.1f} |"
                      f" {row['seconds']:.3f} | {row['gflops_per_s']:.1f} |", flush=True)
    results["forward"] = forward
    results["matmul_gflops_after"] = matmul_gflops()
    print(f"\n2048^2 matmul after: {results['matmul_gflops_after']:.1f} GFLOP/s")

    if args.learn_steps:
        print(f"\n| decoder | seed | steps | first loss | last-10 loss | val loss | val WMH Dice |"
              f" val CMB loss | s / step |  ({args.learn_size}^3, batch 2)")
        print("|---|---|---|---|---|---|---|---|---|")
        results["learning"] = []
        for seed in range(args.learn_seeds):
            for decoder in DECODERS:
                row = learning_run(decoder, args.learn_steps, args.learn_size, seed)
                results["learning"].append(row)
                print(f"| {decoder} | {seed} | {row['steps']} | {row['first_loss']:.3f} |"
                      f" {row['last10_loss']:.3f} | {row['val_loss']:.3f} |"
                      f" {row['val_wmh_dice']:.3f} | {row['val_cmb_loss']:.3f} |"
                      f" {row['seconds_per_step']:.3f} |", flush=True)

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
