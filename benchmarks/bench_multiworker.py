"""Benchmark the training step on two workers (MultiWorkerMirroredStrategy) against one worker.

Both runs train the same recipe with the same global batch on a synthetic cache:

- one process, the default strategy (one replica);
- two processes on loopback ports, each with its own ``TF_CONFIG`` (one replica each): the
  cluster ``csvdnet train`` forms with ``train.strategy: multi_worker``.

Each process builds what ``fit`` builds (strategy, network, loss, optimizer, the train step and
the training ``tf.data`` pipeline with its data sharding) and times each step, waiting for the
loss; the first steps (tracing, collective set-up, prefetch) are left out. Patch batches only
(``data.whole_brain_every=0``), so every step does the same work. On a machine with fewer cores
than the workers need, the two processes share the cores: the ratio then measures what the
all-reduces and a second process cost, not a speed-up. Prints markdown with the date, the CPU,
its vector flags and the load average.

Usage::

    python benchmarks/bench_multiworker.py                      # the demo recipe, 64^3 patches
    python benchmarks/bench_multiworker.py --steps 20 --override train.batch_size=4
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "training" / "configs" / "synthetic-demo.yaml"
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def child(config: Path, out: Path, warmup: int, steps: int) -> None:
    """One worker (or the single process): time ``steps`` train steps after ``warmup``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from csvdnet.config import load_config
    from csvdnet.training.fit import _training_dataset, build_training
    from csvdnet.training.plan import check_config, plan_data
    from csvdnet.run.precision import dtype_policy, resolve_policy
    from csvdnet.training.step import make_train_step
    from csvdnet.training.strategy import is_chief, make_strategy

    cfg = load_config(config)
    strategy = make_strategy(cfg.train.strategy)
    check_config(cfg, strategy.num_replicas_in_sync)
    data = plan_data(cfg)
    policy = resolve_policy(cfg.train.mixed_precision)
    with dtype_policy(policy):
        with strategy.scope():
            parts = build_training(cfg, policy)
            step = make_train_step(strategy, parts.network, parts.loss, parts.optimizer,
                                   cfg.train.jit_compile)
        batches = iter(strategy.experimental_distribute_dataset(
            _training_dataset(cfg, data, 0)))
        go_on = tf.constant(0.0)
        times = []
        for i in range(warmup + steps):
            start = time.perf_counter()
            float(step(next(batches), go_on)[0]["total"])
            if i >= warmup:
                times.append(time.perf_counter() - start)
    out.write_text(json.dumps({"times": times, "replicas": strategy.num_replicas_in_sync,
                               "chief": is_chief(strategy), "policy": policy}))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch(config: Path, outs: list[Path], args: argparse.Namespace) -> list[dict]:
    """Run one process per ``outs`` entry (two or more: a loopback cluster); their reports."""
    ports = free_ports(len(outs))
    processes = []
    for index, out in enumerate(outs):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                            os.environ.get("PYTHONPATH", "")])}
        env.pop("TF_CONFIG", None)
        if len(outs) > 1:
            env["TF_CONFIG"] = json.dumps({
                "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, __file__, "--child", str(config), str(out),
             "--warmup", str(args.warmup), "--steps", str(args.steps)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=args.timeout)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, log in zip(processes, logs):
        if p.returncode != 0:
            raise SystemExit(f"a benchmark process failed (exit {p.returncode}):\n{log[-3000:]}")
    return [json.loads(out.read_text()) for out in outs]


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return ", ".join(f for f in FLAGS if f in flags) or "none of " + ", ".join(FLAGS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEMO, help="training recipe")
    parser.add_argument("--override", action="append", default=[],
                        help="SECTION.KEY=VALUE applied to the recipe (repeatable)")
    parser.add_argument("--subjects", type=int, default=4, help="synthetic cache subjects")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    parser.add_argument("--steps", type=int, default=12, help="timed steps")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.warmup, args.steps)
        return

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import describe_machine
    from bench_pipeline import write_synthetic_cache

    from csvdnet.config import dump_config, load_config

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic_cache(tmp / "cache", args.subjects)
        reports = {}
        for name, strategy, workers in (("one worker", "default", 1),
                                        ("two workers", "multi_worker", 2)):
            cfg = load_config(args.config, [
                f"data.cache={tmp / 'cache'}", f"train.run_dir={tmp / name}",
                "data.whole_brain_every=0", "data.val_fraction=0", f"train.strategy={strategy}",
                *args.override])
            config = tmp / f"{strategy}.yaml"
            config.write_text(dump_config(cfg))
            outs = [tmp / f"{strategy}_{i}.json" for i in range(workers)]
            reports[name] = launch(config, outs, args)
    load_after = os.getloadavg()

    one = statistics.median(reports["one worker"][0]["times"])
    chief = next(r for r in reports["two workers"] if r["chief"])
    other = next(r for r in reports["two workers"] if not r["chief"])
    two = statistics.median(chief["times"])
    print(f"### Two-worker training step vs one worker ({datetime.date.today().isoformat()})\n")
    print(f"{describe_machine()}; CPU flags: {cpu_flags()}; load average (1/5/15 min) "
          f"{'/'.join(f'{x:.2f}' for x in load_before)} before, "
          f"{'/'.join(f'{x:.2f}' for x in load_after)} after.\n")
    recipe = args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
    print(f"Recipe `{recipe}`{' with ' + ', '.join(args.override) if args.override else ''}, "
          f"patch batches only, "
          f"global batch {cfg.train.batch_size}, {chief['policy']}; {args.steps} timed steps "
          f"after {args.warmup}.\n")
    print("| run | replicas | median step (s) | min | max |")
    print("|---|---|---|---|---|")
    for name, times in (("one worker (one process)", reports["one worker"][0]["times"]),
                        ("two workers, chief", chief["times"]),
                        ("two workers, other worker", other["times"])):
        replicas = 1 if name.startswith("one") else chief["replicas"]
        print(f"| {name} | {replicas} | {statistics.median(times):.3f} | {min(times):.3f} | "
              f"{max(times):.3f} |")
    print(f"\nTwo-worker / one-worker median step time: **{two / one:.2f}**.")


if __name__ == "__main__":
    main()
