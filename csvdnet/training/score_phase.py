"""Second training phase: the point score head fitted on frozen whole-brain summaries (issue 25).

The dense heads learn from patches; the score head needs whole brains, and one whole-brain
training step costs ~12-18 patch steps on a CPU (training/README.md). With ``model.score_inputs:
points`` the score head is four logistic units, one per Staals point, each reading a 7-number
summary of its own dense head (:class:`csvdnet.models.PointScore`). Given the frozen network, a
subject contributes one forward pass of its whole brain and four yes / no labels from
``ratings.csv``; the units are then fitted in closed form (L2-regularised logistic regression,
scikit-learn) in well under a second. Subjects the dense heads never trained on (a fresh synthetic
cohort) give summaries like those of new patients, so the fitted probabilities are calibrated for
them rather than for the heads' own training subjects.

``python -m csvdnet.training.score_phase RUN --cache CACHE`` fits the run's score head on every
rated subject of CACHE (preprocessed as the run's training cache) and writes the run's
``best/model.weights.h5`` back with the fitted head (the file before is kept beside it as
``model.weights.before-score-phase.h5``), and ``RUN/score_phase.json``: the cache, the subjects,
each point's coefficients, its prevalence and the in-sample accuracy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import write_text_atomic
from csvdnet.models.point_score import POINT_HEADS, POINTS, SUMMARY_THRESHOLDS
from csvdnet.scoring import wmh_point

SCORE_PHASE_FILE = "score_phase.json"
L2_C = 1.0
"""Inverse L2 strength of each point's logistic regression (on standardised features)."""


def point_labels(ratings: Mapping[str, Any] | None) -> np.ndarray | None:
    """The four Staals points (``POINTS`` order) of a subject's ratings, or None if unrated."""
    if not ratings:
        return None
    keys = ("lacune_count", "cmb_count", "fazekas_pv", "fazekas_deep", "epvs_bg_grade")
    if any(ratings.get(k) is None for k in keys):
        return None
    return np.array([ratings["lacune_count"] >= 1, ratings["cmb_count"] >= 1,
                     wmh_point(ratings["fazekas_pv"], ratings["fazekas_deep"]),
                     ratings["epvs_bg_grade"] >= 2], dtype=np.int64)


def brain_summaries(network: Any, cache: str | Path, channels: Sequence[str],
                    progress: bool = False) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each rated subject's point features ``(N, P, F)`` and labels ``(N, P)`` from one pass.

    The whole brain goes through ``network`` as the ``score`` signature of an export does (one
    call, no sliding window), and the features are those of the network's ``score`` layer.
    """
    from csvdnet.cache import load_cache, load_cached_subject

    index, ids = load_cache(cache)
    order = [list(index["channels"]).index(c) for c in channels]
    layer = network.get_layer("score")
    kept, features, labels = [], [], []
    for number, subject_id in enumerate(ids, 1):
        subject = load_cached_subject(cache, subject_id)
        label = point_labels(subject.ratings)
        if label is None:
            continue
        image = np.ascontiguousarray(subject.image[..., order], dtype=np.float32)[None]
        outputs = network(image, training=False)
        features.append(np.asarray(layer.features([outputs[h] for h in POINT_HEADS]))[0])
        labels.append(label)
        kept.append(subject_id)
        if progress:
            print(f"[{number}/{len(ids)}] {subject_id}", flush=True)
    if not kept:
        raise CsvdnetInputError(cache, "no subject with complete ratings")
    return kept, np.stack(features), np.stack(labels)


def fit_points(features: np.ndarray, labels: np.ndarray,
               c: float = L2_C) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Fit each point's logistic unit; ``(kernel (P, F), bias (P,), per-point records)``.

    Features are standardised for the fit and the coefficients mapped back, so the layer reads
    the raw features. A point whose labels are all equal gets no weights and the bias of its
    smoothed prevalence.
    """
    from sklearn.linear_model import LogisticRegression

    count, points, width = features.shape
    kernel, bias, records = np.zeros((points, width)), np.zeros(points), []
    for p in range(points):
        x, y = features[:, p, :], labels[:, p]
        prevalence = float(y.mean())
        if y.min() == y.max():
            rate = (y.sum() + 0.5) / (count + 1.0)
            bias[p] = np.log(rate / (1.0 - rate))
        else:
            mean, scale = x.mean(axis=0), x.std(axis=0)
            scale[scale == 0] = 1.0
            model = LogisticRegression(C=c, max_iter=1000).fit((x - mean) / scale, y)
            kernel[p] = model.coef_[0] / scale
            bias[p] = model.intercept_[0] - float(np.sum(model.coef_[0] * mean / scale))
        predicted = (x @ kernel[p] + bias[p]) > 0
        records.append({"point": POINTS[p], "head": POINT_HEADS[p], "prevalence": prevalence,
                        "accuracy_in_sample": float(np.mean(predicted == y)),
                        "kernel": kernel[p].tolist(), "bias": float(bias[p])})
    return kernel, bias, records


def set_points(network: Any, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Write fitted weights into the network's ``score`` layer (a ``PointScore``)."""
    layer = network.get_layer("score")
    layer.kernel.assign(kernel.astype(np.float32))
    layer.bias.assign(bias.astype(np.float32))


def score_phase(run_dir: str | Path, cache: str | Path, *, weights: str = "best",
                c: float = L2_C, progress: bool = False) -> dict[str, Any]:
    """Fit the run's point score head on ``cache`` and write it into ``RUN/<weights>/``.

    Raises:
        CsvdnetInputError: The run's score head is not ``points``, or no rated subject.
    """
    from csvdnet.run.layout import WEIGHTS_NAME
    from csvdnet.run.network import load_network
    from csvdnet.run.record import load_preprocess_record, run_config

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if cfg.model.score_inputs != "points":
        raise CsvdnetInputError(run_dir / "config.yaml", "model.score_inputs is "
                                f"{cfg.model.score_inputs!r}: the score phase fits 'points'")
    network = load_network(run_dir, cfg, weights)  # float32: as an export computes the score
    channels = load_preprocess_record(run_dir, cfg).channels
    ids, features, labels = brain_summaries(network, cache, channels, progress)
    kernel, bias, records = fit_points(features, labels, c)
    set_points(network, kernel, bias)
    path = run_dir / weights / WEIGHTS_NAME
    backup = path.with_name("model.weights.before-score-phase.h5")
    if not backup.exists():
        shutil.copy2(path, backup)
    network.save_weights(path)
    record = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "cache": str(Path(cache).resolve()), "weights": weights,
        "c": c, "subjects": ids, "points": records,
        "features": ["logit(peak)"] + [f"{k} >= {t}" for t in SUMMARY_THRESHOLDS
                                        for k in ("log1p(voxels)", "log1p(maxima)")]}
    write_text_atomic(run_dir / SCORE_PHASE_FILE, json.dumps(record, indent=1) + "\n")
    np.savez(run_dir / "score_phase_features.npz", ids=np.array(ids), features=features,
             labels=labels)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csvdnet.training.score_phase",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="training run directory (model.score_inputs: points)")
    parser.add_argument("--cache", required=True, help="preprocessed cache of rated subjects")
    parser.add_argument("--weights", default="best", choices=("best", "last"))
    parser.add_argument("--c", type=float, default=L2_C, help="inverse L2 strength")
    args = parser.parse_args(argv)
    record = score_phase(args.run, args.cache, weights=args.weights, c=args.c, progress=True)
    for point in record["points"]:
        print(f"{point['point']:>10}: prevalence {point['prevalence']:.2f}, in-sample accuracy "
              f"{point['accuracy_in_sample']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
