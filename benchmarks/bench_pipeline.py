"""Benchmark the training data pipeline against iterating one pre-materialised batch.

Writes a synthetic preprocessed cache (default 20 subjects of about 80 x 96 x 80 voxels, 5
channels, masks and points; laid out as docs/contracts.md says) to a temporary folder, then
measures the time per batch of :func:`csvdnet.data.make_dataset` (64^3 patches, batch 2, a
whole-brain batch every 4) with and without augmentation, and of a dataset that repeats one
batch already in memory (what an input-bound-free training loop would see). Each figure is the
median over ``--repeats`` runs of ``--batches`` batches, after a warm-up that absorbs tracing.
Prints a markdown table with the date and the machine.

Usage::

    python benchmarks/bench_pipeline.py
    python benchmarks/bench_pipeline.py --subjects 8 --batches 8 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from csvdnet.config import DataConfig  # noqa: E402
from csvdnet.data import make_dataset  # noqa: E402

# The fake-cache writer of the tests: one writer of the cache layout outside csvdnet.cache.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _fake_cache import FakeSubject, ratings, sphere, write_cache  # noqa: E402
from _machine import cpu_model  # noqa: E402

CHANNELS = ("flair", "t1", "t2", "swi", "dwi")
SHAPES = ((80, 96, 80), (80, 96, 64), (64, 96, 80), (80, 80, 80))


def write_synthetic_cache(root: Path, count: int, seed: int = 0) -> list[str]:
    """A synthetic cache: noise images, a few balls per mask task, random points."""
    rng = np.random.default_rng(seed)
    subjects = []
    for i in range(count):
        shape = SHAPES[i % len(SHAPES)]
        masks = {}
        for task in ("wmh", "lacune" if i % 2 else "rssi"):
            balls = [sphere(shape, rng.uniform(8, np.array(shape) - 8), rng.uniform(1.5, 5))
                     for _ in range(rng.integers(1, 6))]
            masks[task] = np.bitwise_or.reduce(balls)
        points = {t: rng.uniform(4, np.array(shape) - 4, size=(n, 3)).tolist()
                  for t, n in (("cmb", rng.integers(0, 8)), ("epvs", rng.integers(5, 60)))}
        subjects.append(FakeSubject(
            f"sub{i:03d}", rng.normal(size=(*shape, len(CHANNELS))).astype(np.float32),
            masks=masks, points=points,
            ratings=ratings(int(rng.integers(0, 5))) if i % 3 else None))
    write_cache(root, subjects, CHANNELS, pad_multiple=16)
    return [s.id for s in subjects]


def seconds_per_batch(dataset: tf.data.Dataset, batches: int, repeats: int,
                      warmup: int) -> float:
    """Median over ``repeats`` of the mean time per batch of one iterator."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        times.append((time.perf_counter() - start) / batches)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cfg = DataConfig(channels=CHANNELS, patch_size=(args.patch,) * 3, whole_brain_every=4)
    # Warm-up: a whole schedule cycle, so both kinds of batch are traced and running.
    warmup = 2 * cfg.whole_brain_every
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        ids = write_synthetic_cache(cache, args.subjects)
        for name, run_cfg in (("pipeline, augmentation on", cfg),
                              ("pipeline, augmentation off",
                               dataclasses.replace(cfg, augment=False, modality_dropout=0.0))):
            dataset = make_dataset(cache, ids, run_cfg, batch_size=args.batch_size)
            rows.append((name, seconds_per_batch(dataset, args.batches, args.repeats, warmup)))
        one_batch = next(iter(make_dataset(cache, ids, cfg, batch_size=args.batch_size)))
        in_memory = tf.data.Dataset.from_tensors(one_batch).repeat().prefetch(tf.data.AUTOTUNE)
        baseline = seconds_per_batch(in_memory, args.batches, args.repeats, warmup)

    print(f"## csvdnet data pipeline, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print(f"Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, load average "
          f"{os.getloadavg()[0]:.1f}; TensorFlow {tf.__version__}.\n")
    print(f"{args.subjects} subjects of ~80 x 96 x 80 x {len(CHANNELS)}, patches "
          f"{args.patch}^3, batch {args.batch_size}, whole brain every "
          f"{cfg.whole_brain_every} batches; median of {args.repeats} x {args.batches} batches.\n")
    print("| source | s / batch | x pre-materialised |")
    print("|---|---:|---:|")
    for name, seconds in rows + [("one pre-materialised batch, repeated", baseline)]:
        print(f"| {name} | {seconds:.4f} | {seconds / baseline:.0f} |")


if __name__ == "__main__":
    main()
