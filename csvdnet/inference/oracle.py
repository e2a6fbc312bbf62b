"""What a perfect network would output: a subject's labels as :meth:`Predictor.run_network`'s dict.

The rating-layer oracle. :func:`oracle_outputs` turns a subject's ground-truth labels into the
dense maps and score logits an ideal network would give for the working-grid volume of a
:class:`~csvdnet.inference.predictor.Prepared`, so that :meth:`Predictor.finish
<csvdnet.inference.predictor.Predictor.finish>` (inversion, thresholds, peaks, regions,
measurement, rules) can be checked on its own: every rating it gets wrong from these outputs
is lost after the network, not by it (``benchmarks/bench_rating.py``).

- **Masks** (WMH, RSSI, lacune) are brought onto the working grid by
  :func:`csvdnet.preprocessing.preprocess_labels`, the code the preprocessed cache stores
  training's targets with, and output as probabilities 0 / 1.
- **Points** (CMB, EPVS) are mapped the same way and rendered by
  :func:`csvdnet.data.targets.render_heatmap` with the model's heatmap sigma
  (:func:`model_heatmap_sigma`); by default at the sub-voxel point (``subvoxel=True``), or at
  the nearest voxel as training draws its targets.
- **Score** logits are CORAL cumulative logits of ``+SCORE_LOGIT`` below the true total and
  ``-SCORE_LOGIT`` from it on, which :func:`csvdnet.scoring.ordinal_class` decodes to the total.

A task without a label (and the score without a total) is all zeros: the oracle never invents a
truth, and a caller names the tasks it lacked (:func:`missing_tasks`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.errors import CsvdnetInputError

__all__ = ["DENSE_TASKS", "SCORE_LOGIT", "missing_tasks", "model_heatmap_sigma",
           "oracle_outputs", "oracle_predict", "score_logits"]

DENSE_TASKS = SEGMENTATION_TASKS + DETECTION_TASKS
"""The dense outputs, in the network's order."""

SCORE_LOGIT = 12.0
"""Magnitude of the oracle's cumulative score logits: ``sigmoid(12) = 1 - 6e-6``, so the class
probabilities put all but ~1e-5 on the true total."""


def score_logits(total: int | None, classes: int = 5) -> np.ndarray:
    """CORAL cumulative logits ``(1, classes - 1)`` that decode to ``total``.

    Args:
        total: The true total score in ``0 .. classes - 1``; None gives zeros (no truth).
        classes: Number of ordinal classes.

    Raises:
        ValueError: ``total`` outside ``0 .. classes - 1``.
    """
    if total is None:
        return np.zeros((1, classes - 1), np.float32)
    if not 0 <= int(total) < classes:
        raise ValueError(f"total {total} outside 0..{classes - 1}")
    levels = np.arange(classes - 1)
    return np.where(levels < int(total), SCORE_LOGIT, -SCORE_LOGIT).astype(np.float32)[None]


def missing_tasks(labels: Mapping[str, Any]) -> tuple[str, ...]:
    """The dense tasks that ``labels`` (task -> file) has no file for."""
    return tuple(task for task in DENSE_TASKS if task not in labels)


def model_heatmap_sigma(model_dir: str | os.PathLike) -> tuple[float, str]:
    """The heatmap sigma (mm) a model's CMB / EPVS targets were rendered with, and its source.

    A training run records it in ``config.yaml`` (``data.heatmap_sigma_mm``); an export's
    ``metadata.json`` does not (format 1), so the training default is taken for it, and the
    source says so.

    Raises:
        CsvdnetInputError: An unreadable ``config.yaml``.
    """
    from csvdnet.config import DataConfig, load_config

    model_dir = Path(model_dir)
    if (model_dir / "config.yaml").is_file():
        cfg = load_config(model_dir / "config.yaml")
        source = f"{model_dir / 'config.yaml'} data.heatmap_sigma_mm"
        return float(cfg.data.heatmap_sigma_mm), source
    for folder in (model_dir, *sorted(model_dir.glob("[0-9]*"), key=_version, reverse=True)):
        metadata = folder / "metadata.json"
        if metadata.is_file():
            try:
                recorded = json.loads(metadata.read_text(encoding="utf-8")).get(
                    "heatmap_sigma_mm")
            except (OSError, ValueError) as exc:
                raise CsvdnetInputError(metadata, f"not readable JSON ({exc})") from None
            if recorded is not None:
                return float(recorded), f"{metadata} heatmap_sigma_mm"
            break
    return (float(DataConfig().heatmap_sigma_mm),
            "training default DataConfig.heatmap_sigma_mm (the model records none)")


def _version(path: Path) -> int:
    return int(path.name) if path.name.isdigit() else -1


def oracle_outputs(prepared: Any, labels: Mapping[str, str | os.PathLike], *,
                   heatmap_sigma_mm: float, total: int | None, score_classes: int = 5,
                   subvoxel: bool = True,
                   label_sequence: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """The outputs a perfect network would give for ``prepared``, from the subject's labels.

    ``Predictor.finish(prepared, oracle_outputs(...), 0.0)`` then rates the truth exactly as
    ``csvdnet predict`` rates a network's outputs.

    Args:
        prepared: A :class:`~csvdnet.inference.predictor.Prepared` (``Predictor.prepare``).
        labels: Task -> label file: WMH / RSSI / lacune NIfTI masks, CMB / EPVS CSV of world
            coordinates or NIfTI label maps (as :attr:`csvdnet.io.Subject.labels`; other
            entries, such as ``regions``, are ignored).
        heatmap_sigma_mm: Gaussian sigma of the heatmaps (:func:`model_heatmap_sigma`).
        total: The true total SVD score (``ratings.csv``), None when unrated.
        score_classes: Number of ordinal classes of the model's score head.
        subvoxel: Centre each Gaussian on the point (an ideal network); False draws it at the
            nearest voxel, as training's targets are drawn.
        label_sequence: Task -> sequence the label is drawn on (default: the subject's
            :attr:`~csvdnet.io.Subject.label_sequence`, else the reference).

    Returns:
        Task -> float32 ``(1, X, Y, Z, 1)`` on the working grid for every dense task (zeros
        where ``labels`` has none), and ``score`` -> float32 ``(1, score_classes - 1)``
        logits (zeros when ``total`` is None).

    Raises:
        CsvdnetInputError: An unreadable label, a mask on another grid than its sequence, a
            point outside its image.
    """
    import tensorflow as tf

    from csvdnet.data.targets import render_heatmap, sigma_voxels
    from csvdnet.io import load_mask, read_points
    from csvdnet.preprocessing import preprocess_labels

    meta = prepared.meta
    shape = tuple(int(n) for n in prepared.array.shape[:3])
    if label_sequence is None:
        label_sequence = getattr(prepared.subject, "label_sequence", None) or {}
    masks = {t: load_mask(labels[t]) for t in SEGMENTATION_TASKS if t in labels}
    points = {t: read_points(labels[t]) for t in DETECTION_TASKS if t in labels}
    masks, points = preprocess_labels(
        meta, masks, points, label_sequence={t: s for t, s in label_sequence.items()
                                             if t in DENSE_TASKS},
        point_sources={t: str(labels[t]) for t in points})
    sigma = sigma_voxels(float(heatmap_sigma_mm), tf.constant(meta.spacing, tf.float32))
    outputs: dict[str, np.ndarray] = {}
    for task in DENSE_TASKS:
        if task in masks:
            dense = masks[task].astype(np.float32)
        elif task in points:
            dense = render_heatmap(tf.constant(points[task], tf.float32), tf.constant(shape),
                                   sigma, subvoxel=subvoxel).numpy()
        else:
            dense = np.zeros(shape, np.float32)
        outputs[task] = dense[None, ..., None]
    outputs["score"] = score_logits(total, score_classes)
    return outputs


def oracle_predict(predictor: Any, subject: Any, *, heatmap_sigma_mm: float,
                   subvoxel: bool = True) -> Any:
    """Rate ``subject``'s ground truth with ``predictor``'s real post-network code.

    ``predictor.prepare`` -> :func:`oracle_outputs` (the subject's labels and its
    ``ratings.csv`` total) -> ``predictor.finish`` with a network time of 0: the
    :class:`~csvdnet.inference.result.SubjectResult` ``csvdnet predict`` would give if the
    network were perfect. The network itself never runs.

    Args:
        predictor: A :class:`~csvdnet.inference.predictor.Predictor`.
        subject: A :class:`csvdnet.io.Subject` with its labels (and ratings).
        heatmap_sigma_mm: Gaussian sigma of the heatmaps (:func:`model_heatmap_sigma`).
        subvoxel: See :func:`oracle_outputs`.

    Raises:
        CsvdnetInputError: Any problem with the subject's files.
    """
    prepared = predictor.prepare(subject)
    total = None if subject.ratings is None else subject.ratings.total_score
    outputs = oracle_outputs(prepared, subject.labels, heatmap_sigma_mm=heatmap_sigma_mm,
                             total=total, score_classes=predictor.score_classes,
                             subvoxel=subvoxel)
    return predictor.finish(prepared, outputs, 0.0)
