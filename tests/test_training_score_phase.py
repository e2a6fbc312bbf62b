"""csvdnet.training.from_export and score_phase: a run from an export, its point head fitted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from csvdnet.errors import CsvdnetInputError
from csvdnet.models import SCORE_TASK
from csvdnet.models.point_score import FEATURES_PER_POINT, POINT_HEADS
from csvdnet.training.from_export import run_from_export
from csvdnet.run.network import load_network
from csvdnet.run.record import run_config
from csvdnet.training.score_phase import fit_points, point_labels, score_phase

DENSE = ("wmh", "rssi", "lacune", "cmb", "epvs")


def test_point_labels_follow_staals():
    ratings = {"lacune_count": 0, "cmb_count": 2, "fazekas_pv": 3, "fazekas_deep": 0,
               "epvs_bg_grade": 1}
    np.testing.assert_array_equal(point_labels(ratings), [0, 1, 1, 0])
    ratings.update(lacune_count=1, fazekas_pv=2, fazekas_deep=2, epvs_bg_grade=2, cmb_count=0)
    np.testing.assert_array_equal(point_labels(ratings), [1, 0, 1, 1])
    assert point_labels({**ratings, "cmb_count": None}) is None
    assert point_labels(None) is None


def test_fit_points_learns_each_point_from_its_features():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 4, FEATURES_PER_POINT)) * 3 + 5
    labels = np.stack([features[:, 0, 0] > 5, features[:, 1, 2] > 4, features[:, 2, 4] < 6,
                       np.zeros(60, bool)], axis=1).astype(int)
    kernel, bias, records = fit_points(features, labels, c=100.0)
    logits = np.einsum("npf,pf->np", features, kernel) + bias
    accuracy = ((logits > 0) == labels).mean(axis=0)
    assert accuracy[:3].min() >= 0.95
    # the fitted unit leans on the feature that decides it
    assert np.argmax(np.abs(kernel[1] * features[:, 1].std(axis=0))) == 2
    # a point never present: no weights, the smoothed prevalence
    np.testing.assert_array_equal(kernel[3], 0.0)
    assert bias[3] == pytest.approx(np.log(0.5 / 60.5))
    assert [r["accuracy_in_sample"] for r in records][:3] == pytest.approx(accuracy[:3].tolist())


def test_run_from_export_keeps_the_dense_network_and_fits_the_points(tiny_run, exported_model,
                                                                      tmp_path):
    _, run = tiny_run
    out = tmp_path / "from_export"
    record = run_from_export(exported_model, run / "config.yaml", out,
                             ["model.score_inputs=points"], fresh=["score"])
    assert record["kept_initial"] == ["score/bias", "score/kernel"]
    assert "score/kernel" in record["unused"]
    cfg = run_config(out)
    assert cfg.model.score_inputs == "points"
    metadata = json.loads((exported_model / "metadata.json").read_text())
    assert cfg.inference.thresholds == metadata["thresholds"]
    validation = json.loads((out / "best" / "metrics.json").read_text())
    assert validation["step"] == metadata["training"]["step"]
    assert not any(k.startswith("score_") or k == "selection" for k in validation["metrics"])
    network = load_network(out, cfg)
    served = tf.saved_model.load(str(exported_model)).signatures["serving_default"]
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 16, 5)).astype(np.float32)
    mine, theirs = network(x, training=False), served(image=tf.constant(x))
    for task in DENSE:
        np.testing.assert_array_equal(np.asarray(mine[task]), theirs[task].numpy())
    with pytest.raises(CsvdnetInputError, match="already holds a run"):
        run_from_export(exported_model, run / "config.yaml", out)

    fitted = score_phase(out, run.parent / "cache")
    assert len(fitted["subjects"]) >= 1
    network = load_network(out, cfg)
    layer = network.get_layer(SCORE_TASK)
    np.testing.assert_allclose(layer.kernel.numpy(), [p["kernel"] for p in fitted["points"]],
                               rtol=1e-5, atol=1e-7)
    outputs = network(x, training=False)
    q = 1 / (1 + np.exp(-(np.einsum(
        "pf,pf->p", np.asarray(layer.features([outputs[h] for h in POINT_HEADS]))[0],
        layer.kernel.numpy()) + layer.bias.numpy())))
    np.testing.assert_allclose(np.asarray(layer.point_probabilities(
        [outputs[h] for h in POINT_HEADS]))[0], q, rtol=1e-5)
    assert (out / "best" / "model.weights.before-score-phase.h5").is_file()


def test_score_phase_refuses_another_score_head(tiny_run):
    with pytest.raises(CsvdnetInputError, match="score_inputs"):
        score_phase(tiny_run[1], tiny_run[1].parent / "cache")


def test_points_recipe_trains_without_whole_brains_then_the_score_phase_fits_it(tiny_run,
                                                                               tmp_path):
    """The recipe of synthetic-demo-points.yaml, tiny: score loss 0, no whole-brain batches."""
    import dataclasses

    from _tiny_run import tiny_config

    from csvdnet.training import fit

    cache = tiny_run[1].parent / "cache"
    cfg = tiny_config(cache, tmp_path / "run")
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, score_inputs="points"),
        losses=dataclasses.replace(cfg.losses, task_weights={
            **cfg.losses.task_weights, "score": 0.0}),
        data=dataclasses.replace(cfg.data, whole_brain_every=0),
        train=dataclasses.replace(cfg.train, steps_per_epoch=2))
    fit(cfg, progress=False)
    run = tmp_path / "run"
    before = load_network(run, run_config(run)).get_layer(SCORE_TASK)
    np.testing.assert_array_equal(before.kernel.numpy(), 0.0)  # no score loss: untouched
    fitted = score_phase(run, cache)
    assert [p["point"] for p in fitted["points"]] == ["lacune", "microbleed", "wmh", "epvs"]
    after = load_network(run, run_config(run)).get_layer(SCORE_TASK)
    np.testing.assert_allclose(after.bias.numpy(), [p["bias"] for p in fitted["points"]],
                               rtol=1e-5)
