"""Benchmark a training recipe's step on this machine: the real pipeline vs one batch in memory.

Builds the recipe's network, loss and optimizer exactly as ``csvdnet train`` does
(:func:`csvdnet.training.fit.build_training`, same dtype policy and strategy) and times the
``tf.function`` train step:

- on 64^3-style patch batches drawn by the real ``tf.data`` pipeline, and on ONE pre-materialised
  patch batch fed again and again, in alternating blocks so machine load hits both alike; the
  ratio is the input pipeline's overhead (goal: <= 1.15);
- on whole-brain batches (the pipeline's fixed whole-brain shape), and one validation forward pass
  of a whole volume.

From these it estimates the recipe's wall time: steps x the mean step over the whole-brain
schedule, plus the validation passes. Peak memory is the process's maximum resident set size
(``resource.getrusage``). Prints markdown with the date and the machine.

Usage::

    python benchmarks/bench_train.py --cache demo/cache            # the demo recipe's cache
    python benchmarks/bench_train.py --synthetic 8                 # a synthetic 80x96x80 cache
    python benchmarks/bench_train.py --config training/configs/cohort-1mm.yaml --cache ...
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from csvdnet.config import Config, load_config  # noqa: E402
from csvdnet.data import make_dataset, make_validation_dataset, whole_brain_shape  # noqa: E402
from csvdnet.training.fit import build_training  # noqa: E402
from csvdnet.training.plan import check_config, plan_data  # noqa: E402
from csvdnet.run.precision import dtype_policy, resolve_policy  # noqa: E402
from csvdnet.training.step import make_train_step  # noqa: E402
from csvdnet.training.strategy import make_strategy  # noqa: E402

# The pipeline benchmark's synthetic cache writer (which uses the tests' fake-cache helper).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402
from bench_pipeline import write_synthetic_cache  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "training" / "configs" / "synthetic-demo.yaml"


def step_times(step: Callable[[], tf.Tensor], count: int) -> list[float]:
    """Wall time of each of ``count`` calls (each waits for the scalar it returns)."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        float(step())
        times.append(time.perf_counter() - start)
    return times


def peak_rss_gib() -> float:
    """Maximum resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEMO, help="training recipe")
    parser.add_argument("--cache", type=Path, help="preprocessed cache (default: the recipe's)")
    parser.add_argument("--synthetic", type=int, default=0,
                        help="instead, write a synthetic cache of this many subjects")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--blocks", type=int, default=3, help="alternating blocks per source")
    parser.add_argument("--whole-steps", type=int, default=3, help="timed whole-brain steps")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache
        if args.synthetic:
            cache = Path(tmp) / "cache"
            write_synthetic_cache(cache, args.synthetic)
        overrides = [f"data.cache={cache}"] if cache else []
        cfg = load_config(args.config, overrides + [f"train.run_dir={tmp}/run"])
        report = run(cfg, args)
    print_report(cfg, args, report)


def run(cfg: Config, args: argparse.Namespace) -> dict[str, float]:
    """Time the recipe's steps; returns the figures of the report."""
    strategy = make_strategy(cfg.train.strategy)
    check_config(cfg, strategy.num_replicas_in_sync)
    data = plan_data(cfg)
    policy = resolve_policy(cfg.train.mixed_precision)
    batch = cfg.train.batch_size

    def batches(every: int) -> Iterator:
        dataset = make_dataset(data.cache, data.train_ids,
                               dataclasses.replace(cfg.data, whole_brain_every=every),
                               batch_size=batch, tasks=data.tasks,
                               score_classes=cfg.model.score_classes)
        return iter(strategy.experimental_distribute_dataset(dataset))

    with dtype_policy(policy):
        with strategy.scope():
            parts = build_training(cfg, policy)
            step = make_train_step(strategy, parts.network, parts.loss, parts.optimizer,
                                   cfg.train.jit_compile)
        go_on = tf.constant(0.0)

        def train(batch: Any) -> tf.Tensor:
            return step(batch, go_on)[0]["total"]

        patches = batches(0)
        fixed = next(patches)
        step_times(lambda: train(next(patches)), 3)  # trace, fill the prefetch buffers
        pipeline, in_memory = [], []
        for _ in range(args.blocks):
            pipeline += step_times(lambda: train(next(patches)), args.steps)
            in_memory += step_times(lambda: train(fixed), args.steps)
        patch_rss = peak_rss_gib()

        wholes = batches(1)
        step_times(lambda: train(next(wholes)), 1)
        whole = step_times(lambda: train(next(wholes)), args.whole_steps)
        predict = tf.function(lambda x: parts.network(x, training=False), reduce_retracing=True)
        volume = next(iter(make_validation_dataset(
            data.val_cache, data.val_ids or data.train_ids, cfg.data, tasks=data.tasks,
            score_classes=cfg.model.score_classes)))[0]
        forward = step_times(lambda: tf.reduce_sum(predict(volume)["wmh"]), 3)

    patch_s, memory_s = statistics.median(pipeline), statistics.median(in_memory)
    whole_s, forward_s = statistics.median(whole), min(forward[1:])
    every, train = cfg.data.whole_brain_every, cfg.train
    mean_step = ((every - 1) * patch_s + whole_s) / every if every else patch_s
    validations = -(-train.epochs // train.validate_every) if data.val_ids else 0
    total_s = train.epochs * train.steps_per_epoch * mean_step \
        + validations * len(data.val_ids) * forward_s
    return {"patch_s": patch_s, "memory_s": memory_s, "whole_s": whole_s, "forward_s": forward_s,
            "mean_step_s": mean_step, "total_h": total_s / 3600, "patch_rss": patch_rss,
            "peak_rss": peak_rss_gib(), "policy": policy,
            "replicas": strategy.num_replicas_in_sync, "subjects": len(data.train_ids),
            "val_subjects": len(data.val_ids), "validations": validations,
            "whole_shape": "x".join(map(str, whole_brain_shape(data.cache)))}


def print_report(cfg: Config, args: argparse.Namespace, r: dict[str, float]) -> None:
    batch, train = cfg.train.batch_size, cfg.train
    m = cfg.model
    print(f"## csvdnet training step, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print(f"Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, load average "
          f"{os.getloadavg()[0]:.1f} at the end; {platform.python_version()}, TensorFlow "
          f"{tf.__version__}.\n")
    print(f"Recipe `{args.config.name}`: model base_filters {m.base_filters}, depth {m.depth}, "
          f"blocks {list(m.blocks_per_level)}; {r['policy']}, {r['replicas']} replica(s), "
          f"jit_compile {train.jit_compile}; batch {batch}, patches "
          f"{'x'.join(map(str, cfg.data.patch_size))}, whole brains {r['whole_shape']} every "
          f"{cfg.data.whole_brain_every} batches; {r['subjects']} training and "
          f"{r['val_subjects']} validation subjects. Medians of {args.blocks} x {args.steps} "
          f"alternating patch steps per source.\n")
    print("| measurement | s / step | samples / s |")
    print("|---|---:|---:|")
    for name, seconds in (("patch step, real tf.data pipeline", r["patch_s"]),
                          ("patch step, one pre-materialised batch", r["memory_s"]),
                          ("whole-brain step, real pipeline", r["whole_s"]),
                          ("recipe mean step (whole-brain schedule)", r["mean_step_s"])):
        print(f"| {name} | {seconds:.3f} | {batch / seconds:.2f} |")
    print(f"| validation forward, one whole volume | {r['forward_s']:.3f} | |\n")
    print(f"- pipeline / pre-materialised: **{r['patch_s'] / r['memory_s']:.3f}** (goal <= 1.15)")
    print(f"- peak memory (max RSS): {r['patch_rss']:.2f} GiB after the patch steps, "
          f"{r['peak_rss']:.2f} GiB with whole-brain steps and validation")
    print(f"- estimated recipe time: {train.epochs * train.steps_per_epoch} steps x "
          f"{r['mean_step_s']:.3f} s + {r['validations']} validations x {r['val_subjects']} "
          f"volumes x {r['forward_s']:.2f} s = **{r['total_h']:.2f} h** at this load (checkpoint "
          f"and summary writes add seconds per epoch)")


if __name__ == "__main__":
    main()
