"""Which ``tf.distribute`` strategy a run uses, and which worker writes the run directory."""

from __future__ import annotations

import functools
import json
import os
from typing import Mapping

import tensorflow as tf

from csvdnet.errors import CsvdnetInputError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def cluster_workers(environ: Mapping[str, str] = os.environ) -> int:
    """Number of workers (chief included) that ``TF_CONFIG`` describes; 1 without it.

    Raises:
        CsvdnetInputError: ``TF_CONFIG`` is set but is not the JSON TensorFlow expects.
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return 1
    try:
        cluster = json.loads(text).get("cluster", {})
        return len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, AttributeError):
        raise CsvdnetInputError("TF_CONFIG", "not a JSON object with a 'cluster' mapping") from None


def _local_devices() -> list[str]:
    """The GPUs of this machine, else its (logical) CPUs: the replicas of a mirrored run.

    Naming the CPUs explicitly lets a machine split into several logical CPU devices run the
    real mirrored code path (``MirroredStrategy()`` alone would use one CPU).
    """
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The distribution strategy named by ``train.strategy``.

    ``"auto"`` picks MultiWorkerMirroredStrategy when ``TF_CONFIG`` lists several workers,
    MirroredStrategy when this machine has several GPUs, and the default (single device)
    strategy otherwise. Call this first in a program: a multi-worker strategy must be created
    before any other TensorFlow op runs.

    Args:
        name: One of :data:`STRATEGIES`.

    Returns:
        The strategy; variables created under its ``scope()`` are distributed.

    Raises:
        CsvdnetInputError: Unknown name or a malformed ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise CsvdnetInputError("train.strategy", f"must be one of {', '.join(STRATEGIES)}, "
                                                  f"got {name!r}")
    if name == "auto":
        if cluster_workers() > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    return _create(name, tuple(_local_devices()) if name == "mirrored" else ())


@functools.cache
def _create(name: str, devices: tuple[str, ...]) -> tf.distribute.Strategy:
    """One strategy per kind and devices for the whole process.

    A second MirroredStrategy over the same devices starts its collective keys afresh and its
    all-reduces collide with those of the first ("shape mismatch in the collective instance"),
    so calling :func:`fit` twice in one process must reuse the first; a multi-worker strategy
    may be created only once anyway.
    """
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(devices=list(devices))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes logs, weights and the real checkpoint (always, off a cluster).

    In a multi-worker run the chief is task ``chief`` or, without one, ``worker`` 0.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_id(strategy: tf.distribute.Strategy) -> str:
    """``"<task type>_<task id>"`` of this process (``"local"`` off a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type}_{resolver.task_id}"
