"""csvdnet.models.point_score: the total as the sum of four point units, hand-computed."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from csvdnet.config import ModelConfig
from csvdnet.errors import CsvdnetInputError
from csvdnet.models import SCORE_TASK, PointScore, build_model, ordinal_decode
from csvdnet.models.point_score import (CUMULATIVE_CLIP, FEATURES_PER_POINT, POINT_HEADS,
                                        cumulative_logits, head_features, total_distribution)

TINY = ModelConfig(input_channels=2, base_filters=4, depth=2, blocks_per_level=(1, 1, 1),
                   norm_groups=4, score_classes=5, score_inputs="points")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_total_distribution_is_the_poisson_binomial():
    # one point certain, one absent, two at 1/2: the total is 1 + Binomial(2, 1/2)
    dist = np.asarray(total_distribution(np.array([[0.5, 0.5, 0.0, 1.0]], np.float32)))
    np.testing.assert_allclose(dist, [[0.0, 0.25, 0.5, 0.25, 0.0]], atol=1e-7)
    q = np.array([[0.1, 0.2, 0.7, 0.4]], np.float32)
    brute = np.zeros(5)
    for bits in range(16):
        present = [(bits >> i) & 1 for i in range(4)]
        brute[sum(present)] += np.prod([q[0, i] if b else 1 - q[0, i]
                                        for i, b in enumerate(present)])
    np.testing.assert_allclose(np.asarray(total_distribution(q))[0], brute, rtol=1e-6)


def test_cumulative_logits_decode_back_to_the_distribution():
    dist = np.array([[0.1, 0.2, 0.3, 0.25, 0.15]], np.float32)
    logits = np.asarray(cumulative_logits(dist))
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), [[0.9, 0.7, 0.4, 0.15]], rtol=1e-5)
    classes, probs = ordinal_decode(logits)
    np.testing.assert_allclose(np.asarray(probs), dist, atol=1e-6)
    assert int(np.asarray(classes)[0]) == 2  # P(T > 1) = 0.7 > 0.5, P(T > 2) = 0.4
    # certain totals stay finite
    edge = np.asarray(cumulative_logits(np.array([[0, 0, 0, 0, 1.0]], np.float32)))
    np.testing.assert_allclose(edge, _logit(1 - CUMULATIVE_CLIP), rtol=1e-3)


def test_head_features_by_hand():
    p = np.zeros((1, 8, 8, 8, 1), np.float32)
    p[0, 1, 1, 1] = 0.9            # a peak
    p[0, 5, 5, 5] = 0.6            # another
    p[0, 2, 6, 3] = 0.3            # a two-voxel blob, one maximum
    p[0, 2, 6, 4] = 0.25
    got = np.asarray(head_features(p))[0]
    expected = [_logit(0.9), math.log1p(4), math.log1p(3), math.log1p(2), math.log1p(2),
                math.log1p(1), math.log1p(1)]
    assert got.shape == (FEATURES_PER_POINT,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    empty = np.asarray(head_features(np.zeros((1, 4, 4, 4, 1), np.float32)))[0]
    np.testing.assert_allclose(empty, [_logit(1e-4)] + [0.0] * 6, rtol=1e-4)


def test_layer_reads_each_point_from_its_own_head():
    heads = [np.zeros((1, 6, 6, 6, 1), np.float32) for _ in POINT_HEADS]
    heads[1][0, 3, 3, 3] = 0.9  # a microbleed, nothing else
    layer = PointScore()
    layer.build([h.shape for h in heads])
    kernel = np.zeros((4, FEATURES_PER_POINT), np.float32)
    kernel[:, 0] = 1.0  # each point's logit = logit(its head's peak) + bias
    layer.kernel.assign(kernel)
    q = np.asarray(layer.point_probabilities(heads))[0]
    np.testing.assert_allclose(q, [1e-4, 0.9, 1e-4, 1e-4], rtol=1e-3)
    np.testing.assert_allclose(np.asarray(ordinal_decode(layer(heads))[1])[0, :2],
                               [0.1, 0.9], atol=1e-3)


def test_model_with_point_score_keeps_the_score_contract_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(TINY)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 16, 2)).astype("float32")
    out = model(x)
    assert tuple(out[SCORE_TASK].shape) == (2, 4)
    # untrained: every point at 1/2, the total Binomial(4, 1/2)
    probs = np.asarray(ordinal_decode(out[SCORE_TASK])[1])
    np.testing.assert_allclose(probs, [[1, 4, 6, 4, 1]] * 2 / np.float32(16), atol=1e-6)
    model.get_layer(SCORE_TASK).kernel.assign(
        np.random.default_rng(1).normal(size=(4, FEATURES_PER_POINT)).astype("float32"))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)[SCORE_TASK]),
                               np.asarray(model(x)[SCORE_TASK]), rtol=1e-5)


def test_score_gradient_reaches_the_point_units_not_the_dense_heads():
    keras.utils.set_random_seed(0)
    model = build_model(TINY)
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 16, 16, 16, 2)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x)[SCORE_TASK])
    grads = tape.gradient(loss, model.trainable_weights)
    by_path = {w.path: g for w, g in zip(model.trainable_weights, grads)}
    assert by_path["score/bias"] is not None and float(tf.norm(by_path["score/bias"])) > 0
    assert all(g is None for p, g in by_path.items() if not p.startswith("score/"))


def test_points_need_five_classes():
    with pytest.raises(CsvdnetInputError, match="model.score_classes"):
        ModelConfig(score_inputs="points", score_classes=4)
