"""Which ``tf.distribute`` strategy a run uses, and which worker writes the run directory."""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Mapping

import tensorflow as tf

from csvdnet.errors import CsvdnetInputError

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def _tf_config(environ: Mapping[str, str]) -> dict | None:
    """``TF_CONFIG`` parsed and checked (``None`` when unset or blank).

    Raises:
        CsvdnetInputError: Not JSON, no ``cluster`` mapping of task types to ``host:port``
            lists, or a ``task`` whose type or index the cluster does not have.
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise CsvdnetInputError("TF_CONFIG", f"not JSON ({exc})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) and ":" in a for a in v)
            for v in cluster.values()):
        raise CsvdnetInputError("TF_CONFIG", "not a JSON object with a 'cluster' mapping of task "
                                             "types to lists of \"host:port\" addresses")
    task = config.get("task")
    if task is not None:
        kind = task.get("type") if isinstance(task, dict) else None
        index = task.get("index", 0) if isinstance(task, dict) else None
        if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(
                cluster[kind]):
            raise CsvdnetInputError("TF_CONFIG", f"task {task!r} is not in the cluster "
                                                 f"{ {k: len(v) for k, v in cluster.items()} }")
    return config


def cluster_workers(environ: Mapping[str, str] = os.environ) -> int:
    """Number of workers (chief included) that ``TF_CONFIG`` describes; 1 without it.

    Raises:
        CsvdnetInputError: ``TF_CONFIG`` is set but is not the JSON TensorFlow expects.
    """
    config = _tf_config(environ)
    if config is None:
        return 1
    cluster = config["cluster"]
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def expand_hostlist(hostlist: str) -> list[str]:
    """Host names of a SLURM host list: ``"gpu[01-03,07],login"`` -> gpu01, gpu02, gpu03, gpu07,
    login (what ``scontrol show hostnames`` prints, without needing ``scontrol``).

    Raises:
        CsvdnetInputError: Unbalanced brackets or a range that is not ``a-b`` of integers.
    """
    def split_top(text: str) -> list[str]:
        items, depth, start = [], 0, 0
        for i, char in enumerate(text):
            depth += {"[": 1, "]": -1}.get(char, 0)
            if depth not in (0, 1):
                raise CsvdnetInputError("SLURM_STEP_NODELIST", f"bad host list {hostlist!r}")
            if char == "," and depth == 0:
                items.append(text[start:i])
                start = i + 1
        if depth:
            raise CsvdnetInputError("SLURM_STEP_NODELIST", f"bad host list {hostlist!r}")
        return items + [text[start:]]

    def expand(item: str) -> list[str]:
        if "[" not in item:
            return [item]
        head, rest = item.split("[", 1)
        body, tail = rest.split("]", 1)
        names = []
        for part in body.split(","):
            low, _, high = part.partition("-")
            if not low.isdigit() or not (high or low).isdigit() or int(high or low) < int(low):
                raise CsvdnetInputError("SLURM_STEP_NODELIST",
                                        f"bad range {part!r} in host list {hostlist!r}")
            names += [f"{head}{n:0{len(low)}d}" for n in range(int(low), int(high or low) + 1)]
        return [name + suffix for name in names for suffix in expand(tail)]

    return [host for item in split_top(hostlist.strip()) if item for host in expand(item)]


def slurm_tf_config(environ: Mapping[str, str] = os.environ, port: int = 12345) -> dict | None:
    """The ``TF_CONFIG`` of this task of an ``srun`` step of several tasks, one per node.

    Worker ``i`` is ``SLURM_PROCID`` ``i`` on the ``i``-th node of the step's host list (SLURM's
    default block distribution with ``--ntasks-per-node=1``), listening on ``port``
    (``CSVDNET_PORT`` overrides it); worker 0 is the chief. Each task uses all GPUs of its node.

    Returns:
        The ``TF_CONFIG`` mapping, or ``None`` outside an ``srun`` step of several tasks
        (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` > 1 and ``SLURM_STEP_NODELIST`` set).

    Raises:
        CsvdnetInputError: The step has more tasks than nodes (not one task per node), or a
            SLURM variable or ``CSVDNET_PORT`` is malformed.
    """
    # srun's step variables only: a batch script's own shell is no step of several tasks.
    tasks = environ.get("SLURM_STEP_NUM_TASKS", "").strip()
    nodelist = environ.get("SLURM_STEP_NODELIST", "")
    if "SLURM_PROCID" not in environ or not nodelist or tasks in ("", "1"):
        return None
    hosts = expand_hostlist(nodelist)
    try:
        count, rank = int(tasks), int(environ["SLURM_PROCID"])
        port = int(environ.get("CSVDNET_PORT", port))
    except ValueError as exc:
        raise CsvdnetInputError("SLURM_STEP_NUM_TASKS / SLURM_PROCID / CSVDNET_PORT",
                                f"not an integer ({exc})") from None
    if count != len(hosts) or not 0 <= rank < count:
        raise CsvdnetInputError("SLURM_STEP_NUM_TASKS",
                                f"{count} tasks on {len(hosts)} nodes ({nodelist!r}): run one "
                                f"task per node (srun --ntasks-per-node=1); each uses all GPUs "
                                f"of its node")
    return {"cluster": {"worker": [f"{host}:{port}" for host in hosts]},
            "task": {"type": "worker", "index": rank}}


def _local_devices() -> list[str]:
    """The GPUs of this machine, else its (logical) CPUs: the replicas of a mirrored run.

    Naming the CPUs explicitly lets a machine split into several logical CPU devices run the
    real mirrored code path (``MirroredStrategy()`` alone would use one CPU).
    """
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The distribution strategy named by ``train.strategy``.

    ``"auto"`` picks MultiWorkerMirroredStrategy when ``TF_CONFIG`` lists several workers
    (inside an ``srun`` step of several tasks without ``TF_CONFIG``, it is set from
    :func:`slurm_tf_config` first; ``"multi_worker"`` does the same),
    MirroredStrategy when this machine has several GPUs, and the default (single device)
    strategy otherwise. Call this first in a program: a multi-worker strategy must be created
    before any other TensorFlow op runs.

    Args:
        name: One of :data:`STRATEGIES`.

    Returns:
        The strategy; variables created under its ``scope()`` are distributed.

    Raises:
        CsvdnetInputError: Unknown name, a malformed ``TF_CONFIG`` or SLURM step, or
            ``multi_worker`` without a cluster of several workers.
    """
    if name not in STRATEGIES:
        raise CsvdnetInputError("train.strategy", f"must be one of {', '.join(STRATEGIES)}, "
                                                  f"got {name!r}")
    if name in ("auto", "multi_worker") and not os.environ.get("TF_CONFIG", "").strip():
        slurm = slurm_tf_config()
        if slurm is not None:
            os.environ["TF_CONFIG"] = json.dumps(slurm)
            logger.info("TF_CONFIG from the SLURM step: %s", os.environ["TF_CONFIG"])
    if name == "multi_worker" and cluster_workers() < 2:
        # Without a cluster every machine would train alone and write train.run_dir as chief.
        raise CsvdnetInputError("TF_CONFIG", "train.strategy multi_worker needs TF_CONFIG "
                                             "listing the workers (or an srun step of several "
                                             "tasks); it is unset or lists one worker")
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
