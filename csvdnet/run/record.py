"""What a run directory records about its inputs: the resolved config and the cache's preprocessing.

``<run_dir>/preprocess.json`` is a copy of the preprocessing of the cache the run trained on
(:func:`csvdnet.cache.preprocess_record`): the network's input channels in order, working spacing,
reference sequence, brain mask, intensity clipping, pad multiple. Prediction, export and the
held-out check read the model's preprocessing from this one record (nnU-Net's plans), never
from a config that may disagree with the cache: ``config.yaml``'s ``preprocess`` section says
what a *new* cache would be made with, not what this network saw.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import yaml

from csvdnet.cache import PREPROCESS_FORMAT, PREPROCESS_VERSION, preprocess_record
from csvdnet.config import Config, PreprocessConfig, from_dict, load_config
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import write_text_atomic
from csvdnet.run.calibration import load_calibration

__all__ = ["PREPROCESS_RECORD", "PreprocessRecord", "load_preprocess_record", "run_config",
           "write_preprocess_record"]

logger = logging.getLogger(__name__)

PREPROCESS_RECORD = "preprocess.json"
"""File name of the preprocessing record in a run directory."""


@dataclasses.dataclass(frozen=True)
class PreprocessRecord:
    """The preprocessing a run's network was trained with.

    Attributes:
        channels: Input sequences, in the network's channel order.
        preprocess: The cache's preprocessing settings (spacing, reference, normalisation...).
        pad_multiple: Volumes are padded to a multiple of this.
        recorded: ``True`` when read from ``preprocess.json``; ``False`` for a run written before
            the record existed, whose config stood in for it.
    """

    channels: tuple[str, ...]
    preprocess: PreprocessConfig
    pad_multiple: int
    recorded: bool = True


def run_config(run_dir: str | os.PathLike, calibrated: bool = True) -> Config:
    """The resolved config a run recorded (``run_dir/config.yaml``).

    With ``calibrated`` (the default) the thresholds, smallest lesion sizes and ridge fractions
    that :func:`csvdnet.evaluation.calibrate.calibrate_run` chose on the run's validation
    subjects (``run_dir/calibration.json``, when present) replace those of its ``inference``
    section: what predict, export and the held-out check use.

    A config recorded before rule sets were named (``inference.rule_set``, never read by any
    code) loads with the default rule sets.

    Raises:
        CsvdnetInputError: ``run_dir`` is not a run directory, or its config or calibration is
            invalid.
    """
    cfg = _recorded_config(run_dir)
    if not calibrated:
        return cfg
    record = load_calibration(run_dir)
    if record is None:
        return cfg
    inference = dataclasses.replace(
        cfg.inference,
        thresholds={**cfg.inference.thresholds,
                    **{k: float(v) for k, v in record["thresholds"].items()}},
        min_lesion_mm3={**cfg.inference.min_lesion_mm3,
                        **{k: float(v) for k, v in record["min_lesion_mm3"].items()}},
        # Calibrations written before 2026-12-08 chose no ridge fraction.
        peak_ridge={**cfg.inference.peak_ridge,
                    **{k: float(v) for k, v in record.get("peak_ridge", {}).items()}})
    return dataclasses.replace(cfg, inference=inference)


def _recorded_config(run_dir: str | os.PathLike) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CsvdnetInputError(run_dir, "not a training run (no config.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return load_config(path)  # reports the YAML error with the file's name
    inference = data.get("inference") if isinstance(data, dict) else None
    if isinstance(inference, dict) and "rule_set" in inference:
        logger.warning("%s: inference.rule_set %r of an older csvdnet ignored; scoring with the "
                       "default inference.rule_sets", path, inference.pop("rule_set"))
        return from_dict(Config, data, str(path))
    return load_config(path)


def write_preprocess_record(run_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                            channels: tuple[str, ...] | list[str]) -> Path:
    """Copy the cache's preprocessing record into the run directory (atomically).

    Args:
        run_dir: The run directory.
        cache_dir: The cache the run trains on.
        channels: The network's input channels, in order (``data.channels``).

    Returns:
        The path written.
    """
    path = Path(run_dir) / PREPROCESS_RECORD
    record = preprocess_record(cache_dir, channels)
    record["cache"] = str(Path(cache_dir).resolve())
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    return path


def load_preprocess_record(run_dir: str | os.PathLike,
                           cfg: Config | None = None) -> PreprocessRecord:
    """The preprocessing of the run's network, from ``run_dir/preprocess.json``.

    A run written before the record existed falls back to its config (``preprocess`` section,
    ``data.channels``) with a warning.

    Args:
        run_dir: The run directory.
        cfg: The run's config, for the fallback (default: read from ``run_dir/config.yaml``).

    Raises:
        CsvdnetInputError: The record is unreadable, of another format or version, or invalid.
    """
    path = Path(run_dir) / PREPROCESS_RECORD
    if not path.is_file():
        cfg = cfg if cfg is not None else run_config(run_dir)
        logger.warning("%s: no %s (a run made before csvdnet recorded its cache's "
                       "preprocessing): using the preprocess section of its config.yaml",
                       run_dir, PREPROCESS_RECORD)
        return PreprocessRecord(tuple(cfg.data.channels), cfg.preprocess,
                                cfg.preprocess.pad_multiple, recorded=False)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CsvdnetInputError(path, f"not a readable preprocessing record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != PREPROCESS_FORMAT:
        raise CsvdnetInputError(path, f"not a preprocessing record (format is not "
                                      f"{PREPROCESS_FORMAT!r})")
    if record.get("version") != PREPROCESS_VERSION:
        raise CsvdnetInputError(path, f"preprocessing record version {record.get('version')!r} "
                                      f"is not supported (expected {PREPROCESS_VERSION})")
    channels = record.get("channels")
    if (not isinstance(channels, list) or not channels
            or not all(isinstance(c, str) for c in channels)):
        raise CsvdnetInputError(path, f"channels: expected a list of sequence names, got "
                                      f"{channels!r}")
    if not isinstance(record.get("preprocess"), dict):
        raise CsvdnetInputError(path, "preprocess: expected a mapping of preprocessing settings")
    preprocess = from_dict(PreprocessConfig, record["preprocess"], source=str(path))
    return PreprocessRecord(tuple(channels), preprocess, preprocess.pad_multiple)
