"""Why the lacune head learns nothing, measured (issue 11's diagnosis, reproduced).

1. The lacune loss of a featureless head (one uniform probability p everywhere) on a lesion
   patch, under the old recipe (Dice smoothing 1, focal gamma 2) and the new one (Dice smoothing
   1e-5, cross-entropy with lesion voxels weighted 100): where its minimum lies, and the loss at
   the 1e-3 prior.
2. On lacune-centred training patches of a cache, with a trained run's weights: the norm of each
   task's gradient into the shared layers (encoder and decoder: every variable outside the heads),
   old vs new loss, and how large the bfloat16 rounding of the summed gradient is against the
   lacune's own contribution (what ``mixed_bfloat16`` does to it).

    python benchmarks/diagnose_lacune.py --run RUN_DIR --cache CACHE_DIR [--batches 8]

Prints a table; the figures go into training/README.md ("Diagnosis").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

OLD = {"dice": "positive"}
NEW = {"dice": "positive", "dice_smooth": 1e-5, "pos_weight": {"lacune": 100.0, "rssi": 30.0},
       "task_focal_gamma": {"lacune": 0.0, "rssi": 0.0}}


def featureless(loss, lesion_voxels: int = 20, voxels: int = 64 ** 3) -> dict[str, float]:
    """Lacune loss of a uniform prediction on one lesion patch: minimum, its p, and at 1e-3."""
    target = np.zeros((1, voxels), np.float32)
    target[0, :lesion_voxels] = 1.0
    grid = np.logspace(-7, -0.5, 131).astype(np.float32)
    values = np.array([float(loss.task_loss("lacune", target, np.full_like(target, p)))
                       for p in grid])
    best = int(np.argmin(values))
    at_prior = float(loss.task_loss("lacune", target, np.full_like(target, 1e-3)))
    return {"argmin_p": float(grid[best]), "min_loss": float(values[best]),
            "loss_at_1e-3": at_prior}


def shared_gradients(model, loss, batches) -> dict[str, list[float]]:
    """Per batch: the norm of each task's gradient into the shared variables, and the
    bfloat16 rounding error of their sum against the lacune's gradient norm."""
    import tensorflow as tf

    # The heads' own variables are the 1x1x1 "<task>_logits" convolutions and the score head.
    shared = [v for v in model.trainable_variables
              if "_logits" not in v.path and "score" not in v.path]
    out: dict[str, list[float]] = {}
    for image, targets, weights in batches:
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(image, training=True)
            per_task = {t: loss.task_loss(t, targets[t], outputs[t], weights[t])
                        for t in loss.tasks if t in targets and t != "score"}
        grads = {t: tape.gradient(value, shared) for t, value in per_task.items()}
        del tape
        flat = {t: tf.concat([tf.reshape(g if g is not None else tf.zeros_like(v), [-1])
                              for g, v in zip(gs, shared)], 0) for t, gs in grads.items()}
        for t, g in flat.items():
            out.setdefault(f"norm_{t}", []).append(float(tf.norm(g)))
        total = tf.add_n(list(flat.values()))
        rounding = total - tf.cast(tf.cast(total, tf.bfloat16), tf.float32)
        out.setdefault("bf16_rounding_over_lacune", []).append(
            float(tf.norm(rounding)) / max(float(tf.norm(flat["lacune"])), 1e-30))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="training run (best/ weights)")
    parser.add_argument("--cache", type=Path, required=True, help="preprocessed cache")
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()

    from csvdnet.config import LossConfig, load_config
    from csvdnet.data import make_dataset
    from csvdnet.losses import MultiTaskLoss
    from csvdnet.models import build_model

    print(describe_machine())
    losses = {name: MultiTaskLoss.from_loss_config(LossConfig(**kw))
              for name, kw in (("old", OLD), ("new", NEW))}
    print("\n1. Featureless lacune loss on a 64^3 patch with 20 lesion voxels")
    for name, loss in losses.items():
        print(f"   {name}: {json.dumps(featureless(loss))}")

    cfg = load_config(args.run / "config.yaml")
    split = json.loads((args.run / "split.json").read_text())
    data = dataclasses.replace(cfg.data, lesion_oversample=1.0, whole_brain_every=0,
                               lesion_task_weights={"lacune": 1.0, "wmh": 0.0, "rssi": 0.0,
                                                    "cmb": 0.0, "epvs": 0.0}, modality_dropout=0.0)
    model = build_model(cfg.model)
    model.load_weights(args.run / "best" / "model.weights.h5")
    dataset = make_dataset(args.cache, split["train"], data, batch_size=cfg.train.batch_size,
                           tasks=losses["old"].tasks)
    batches = list(dataset.take(args.batches))
    print(f"\n2. Gradients into the shared layers, {args.batches} lacune-centred batches of "
          f"{cfg.train.batch_size} (median over batches), float32 model")
    for name, loss in losses.items():
        found = shared_gradients(model, loss, batches)
        norms = {k[5:]: float(np.median(v)) for k, v in found.items() if k.startswith("norm_")}
        lacune = norms["lacune"]
        ratios = {t: round(n / lacune, 1) for t, n in norms.items() if t != "lacune"}
        print(f"   {name}: |g_lacune| {lacune:.3g}; other tasks / lacune {json.dumps(ratios)}; "
              f"bf16 rounding of the sum / |g_lacune| "
              f"{np.median(found['bf16_rounding_over_lacune']):.3g}")


if __name__ == "__main__":
    main()
