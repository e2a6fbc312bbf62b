"""Loading a model directory for prediction: what it is, checked before use.

A **training run** directory (written by ``csvdnet train``) holds ``config.yaml`` (the resolved
config: network, thresholds, rule sets), ``preprocess.json`` (the preprocessing record of the
cache it trained on: channels, working spacing, normalisation, pad multiple; read with
:func:`csvdnet.training.record.load_preprocess_record`) and the weights in ``best/`` and
``last/``. The network is rebuilt from the config and run in float32 whatever
policy it trained under: a bfloat16 graph is several times slower on CPUs without bfloat16
units, and the weights are float32 either way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from csvdnet.errors import CsvdnetInputError
from csvdnet.inference.result import ModelInfo

__all__ = ["file_sha256", "load_run"]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def load_run(cls: type, run_dir: Path, *, weights: str = "best",
             rule_sets: Sequence[str] | None = None, tta: bool = False) -> Any:
    """A :class:`~csvdnet.inference.predictor.Predictor` over a training run's network.

    Raises:
        CsvdnetInputError: Not a run, no weights, or an unusable preprocessing record.
    """
    if not run_dir.is_dir():
        raise CsvdnetInputError(run_dir, "model directory not found")
    if not (run_dir / "config.yaml").is_file():
        raise CsvdnetInputError(run_dir, "not a model directory: no config.yaml (a training run "
                                         "written by `csvdnet train`)")
    if weights not in ("best", "last"):
        raise CsvdnetInputError(run_dir, f"weights must be 'best' or 'last', got {weights!r}")
    import tensorflow as tf

    from csvdnet.training.checkpoints import WEIGHTS_NAME
    from csvdnet.training.heldout import load_network
    from csvdnet.training.precision import dtype_policy
    from csvdnet.training.record import load_preprocess_record, run_config

    cfg = run_config(run_dir)
    if not (run_dir / weights / WEIGHTS_NAME).is_file() and weights == "best":
        weights = "last"  # a run stopped before its first validation has no best/
    weights_path = run_dir / weights / WEIGHTS_NAME
    if not weights_path.is_file():
        raise CsvdnetInputError(weights_path, "no weights: has the run finished an epoch?")
    record = load_preprocess_record(run_dir, cfg)
    preprocess_cfg, channels = record.preprocess, tuple(record.channels)
    if len(channels) != cfg.model.input_channels:
        raise CsvdnetInputError(run_dir / "preprocess.json",
                                f"{len(channels)} channels ({', '.join(channels)}) but the "
                                f"network takes {cfg.model.input_channels}")
    with dtype_policy("float32"):
        network = load_network(run_dir, cfg, weights)
    forward = tf.function(lambda x: network(x, training=False), reduce_retracing=True)
    spacing = preprocess_cfg.spacing
    info = ModelInfo(
        id=f"{run_dir.name}/{weights}", path=str(run_dir.resolve()),
        sha256=file_sha256(weights_path), kind="run", channels=channels,
        spacing=tuple(float(s) for s in spacing) if spacing is not None else (0.0, 0.0, 0.0),
        thresholds=dict(cfg.inference.thresholds),
        min_lesion_mm3=dict(cfg.inference.min_lesion_mm3),
        modality_dropout=cfg.data.modality_dropout > 0.0)
    chosen = tuple(rule_sets) if rule_sets else tuple(getattr(cfg.inference, "rule_sets", ()))
    predictor = cls(forward, info, preprocess_cfg, window=cfg.inference.window,
                    overlap=cfg.inference.overlap, gaussian=cfg.inference.gaussian_blend,
                    rule_sets=chosen, score_classes=cfg.model.score_classes, tta=tta)
    predictor.network = network
    return predictor
