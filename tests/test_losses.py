"""csvdnet.losses: hand-computed values, label masks, CORAL helpers, multi-task weighting."""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from csvdnet.config import LossConfig
from csvdnet.losses import (BinaryFocalLoss, CenterNetFocalLoss, CoralLoss, MultiTaskLoss,
                            SegmentationLoss, SoftDiceLoss, WeightedMSELoss, binary_focal_loss,
                            centernet_focal_loss, coral_loss, masked_mean, ordinal_decode,
                            ordinal_targets, segmentation_loss, soft_dice_loss, weighted_mse_loss)


def volume(values) -> np.ndarray:
    """One sample, values laid along z: shape (1, 1, 1, N, 1)."""
    return np.asarray(values, "float32").reshape(1, 1, 1, -1, 1)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# --------------------------------------------------------------------------------------------
# Hand-computed values.

def _cube_with(indices) -> np.ndarray:
    flat = np.zeros(64, "float32")
    flat[list(indices)] = 1.0
    return flat.reshape(1, 4, 4, 4, 1)


@pytest.mark.parametrize("pred, expected", [
    (range(8), 0.0),                                  # perfect
    (range(8, 16), 1 - 1 / 17),                       # disjoint: 1 - smooth / (8 + 8 + smooth)
    ([0, 1, 2, 3, 8, 9, 10, 11], 1 - 9 / 17),         # half overlap: 1 - (2*4 + 1) / 17
])
def test_soft_dice_hand_computed(pred, expected):
    got = soft_dice_loss(_cube_with(range(8)), _cube_with(pred))
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_soft_dice_on_empty_targets():
    empty = np.zeros((1, 4, 4, 4, 1), "float32")
    assert float(soft_dice_loss(empty, empty)) == 0.0
    two_halves = empty.copy()
    two_halves[0, 0, 0, :2] = 0.5                     # sum p = 1 -> 1 - 1 / (1 + 1)
    assert float(soft_dice_loss(empty, two_halves)) == pytest.approx(0.5)


def test_binary_focal_hand_computed():
    y, p = volume([1, 0]), volume([0.8, 0.3])
    expected = (0.2 ** 2 * -math.log(0.8) + 0.3 ** 2 * -math.log(0.7)) / 2
    assert float(binary_focal_loss(y, p, gamma=2.0)) == pytest.approx(expected, rel=1e-5)
    bce = (-math.log(0.8) - math.log(0.7)) / 2
    assert float(binary_focal_loss(y, p, gamma=0.0)) == pytest.approx(bce, rel=1e-5)
    assert float(segmentation_loss(y, p, gamma=0.0)) == pytest.approx(
        float(soft_dice_loss(y, p)) + bce, rel=1e-5)


def test_positive_dice_averages_dice_over_lesion_samples_only():
    y = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], "float32").reshape(2, 1, 1, 4, 1)
    p = np.array([[0.8, 0.6, 0.2, 0.0], [0.5, 0, 0, 0]], "float32").reshape(2, 1, 1, 4, 1)
    dice_lesion = 1 - (2 * 1.4 + 1) / (2 + 1.6 + 1)
    dice_empty = 1 - 1 / (0.5 + 1)                    # the per-sample Dice of the empty sample
    focal = [float(binary_focal_loss(y[i:i + 1], p[i:i + 1])) for i in range(2)]
    assert float(segmentation_loss(y, p, dice="positive")) == pytest.approx(
        dice_lesion + (focal[0] + focal[1]) / 2, rel=1e-5)
    assert float(segmentation_loss(y, p)) == pytest.approx(
        (dice_lesion + dice_empty + focal[0] + focal[1]) / 2, rel=1e-5)
    # Label mask [0, 1]: the one labelled sample has no lesion, so only its voxel term is left.
    assert float(segmentation_loss(y, p, np.array([0.0, 1.0]), dice="positive")) == pytest.approx(
        focal[1], rel=1e-5)
    assert float(SegmentationLoss(dice="positive")(y, p)) == pytest.approx(
        dice_lesion + (focal[0] + focal[1]) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="dice must be one of"):
        segmentation_loss(y, p, dice="batch")


def test_centernet_hand_computed():
    y, p = volume([1.0, 0.5, 0.0, 0.0]), volume([0.8, 0.5, 0.1, 0.0])
    positive = (1 - 0.8) ** 2 * math.log(0.8)
    negative = (1 - 0.5) ** 4 * 0.5 ** 2 * math.log(0.5) + 0.1 ** 2 * math.log(0.9)
    got = centernet_focal_loss(y, p, alpha=2.0, beta=4.0)
    assert float(got) == pytest.approx(-(positive + negative), rel=1e-5)
    # Two peaks: the sum is divided by 2.
    y2, p2 = volume([1.0, 1.0, 0.0]), volume([0.8, 0.8, 0.1])
    expected = -(2 * positive + 0.1 ** 2 * math.log(0.9)) / 2
    assert float(centernet_focal_loss(y2, p2)) == pytest.approx(expected, rel=1e-5)


def test_centernet_without_peaks_is_the_background_term():
    y, p = volume([0.5, 0.0, 0.0]), volume([0.5, 0.1, 0.0])
    negative = (1 - 0.5) ** 4 * 0.5 ** 2 * math.log(0.5) + 0.1 ** 2 * math.log(0.9)
    assert float(centernet_focal_loss(y, p)) == pytest.approx(-negative, rel=1e-5)
    zeros = volume([0.0, 0.0, 0.0])
    assert float(centernet_focal_loss(zeros, zeros)) == pytest.approx(0.0, abs=1e-12)


def test_weighted_mse_hand_computed():
    y, p = volume([1.0, 0.0]), volume([0.5, 0.2])
    expected = (101 * 0.25 + 1 * 0.04) / 102
    assert float(weighted_mse_loss(y, p, foreground_weight=100.0)) == pytest.approx(expected)


def test_coral_loss_hand_computed():
    assert float(coral_loss(np.array([2]), np.zeros((1, 4), "float32"))) == pytest.approx(
        4 * math.log(2), rel=1e-6)
    logits = np.array([[2.0, 1.0, -1.0, -2.0]], "float32")
    # Levels [1, 1, 0, 0]: -log s(2) - log s(1) - log(1 - s(-1)) - log(1 - s(-2)).
    expected = 2 * (softplus(-2.0) + softplus(-1.0))
    assert float(coral_loss(np.array([2]), logits)) == pytest.approx(expected, rel=1e-6)
    levels = np.array([[1, 1, 0, 0]], "float32")
    assert float(coral_loss(levels, logits)) == pytest.approx(expected, rel=1e-6)


def test_ordinal_targets_hand_computed():
    got = ordinal_targets(np.array([0, 2, 4, 3]), 5)
    np.testing.assert_array_equal(got, [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]])


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_ordinal_decode_hand_computed():
    logits = np.array([[_logit(p) for p in (0.9, 0.6, 0.3, 0.1)],
                       [_logit(p) for p in (0.3, 0.6, 0.2, 0.1)]], "float32")
    classes, probabilities = ordinal_decode(logits)
    np.testing.assert_array_equal(classes, [2, 1])
    np.testing.assert_allclose(probabilities[0], [0.1, 0.3, 0.3, 0.2, 0.1], atol=1e-6)
    # Not rank-consistent: P(y=1) = 0.3 - 0.6 < 0 is clipped, the rest renormalised by 1.3.
    np.testing.assert_allclose(probabilities[1], np.array([0.7, 0, 0.4, 0.1, 0.1]) / 1.3, atol=1e-6)
    assert classes.dtype == tf.int32


# --------------------------------------------------------------------------------------------
# Label masks: every loss, function and class.

rng = np.random.default_rng(0)
DENSE_TRUE = (rng.random((2, 4, 4, 4, 1)) > 0.7).astype("float32")
DENSE_PRED = rng.uniform(0.05, 0.95, (2, 4, 4, 4, 1)).astype("float32")
LOSSES = [  # (plain function, Loss class instance, y_true, y_pred)
    (soft_dice_loss, SoftDiceLoss(), DENSE_TRUE, DENSE_PRED),
    (binary_focal_loss, BinaryFocalLoss(), DENSE_TRUE, DENSE_PRED),
    (segmentation_loss, SegmentationLoss(), DENSE_TRUE, DENSE_PRED),
    (centernet_focal_loss, CenterNetFocalLoss(), DENSE_TRUE, DENSE_PRED),
    (weighted_mse_loss, WeightedMSELoss(), DENSE_TRUE, DENSE_PRED),
    (coral_loss, CoralLoss(), np.array([3.0, 1.0], "float32"),
     rng.normal(size=(2, 4)).astype("float32")),
]
def positive_dice_segmentation_loss(y_true, y_pred, mask=None):
    return segmentation_loss(y_true, y_pred, mask, dice="positive")


LOSSES.insert(3, (positive_dice_segmentation_loss, SegmentationLoss(dice="positive"), DENSE_TRUE,
                  DENSE_PRED))
LOSS_IDS = [fn.__name__ for fn, *_ in LOSSES]


def _value_and_grad(fn, y_true, y_pred, mask):
    y_pred = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = fn(y_true, y_pred, mask)
    return value, tape.gradient(value, y_pred)


@pytest.mark.parametrize("fn, loss, y_true, y_pred", LOSSES, ids=LOSS_IDS)
def test_masked_sample_adds_no_loss_and_no_gradient(fn, loss, y_true, y_pred):
    value, grad = _value_and_grad(fn, y_true, y_pred, np.array([1.0, 0.0], "float32"))
    assert float(value) == pytest.approx(float(fn(y_true[:1], y_pred[:1])), rel=1e-6)
    assert np.all(grad[1].numpy() == 0.0)
    assert np.any(grad[0].numpy() != 0.0)
    class_value, class_grad = _value_and_grad(
        lambda t, p, m: loss(t, p, sample_weight=m), y_true, y_pred, np.array([1.0, 0.0]))
    assert float(class_value) == pytest.approx(float(value), rel=1e-6)
    assert np.all(class_grad[1].numpy() == 0.0)


@pytest.mark.parametrize("fn, loss, y_true, y_pred", LOSSES, ids=LOSS_IDS)
def test_all_labels_missing_gives_zero_not_nan(fn, loss, y_true, y_pred):
    for call in (fn, lambda t, p, m: loss(t, p, sample_weight=m)):
        value, grad = _value_and_grad(call, y_true, y_pred, np.zeros(2, "float32"))
        assert float(value) == 0.0
        assert np.all(grad.numpy() == 0.0)


@pytest.mark.parametrize("fn, loss, y_true, y_pred", LOSSES, ids=LOSS_IDS)
def test_loss_class_matches_function_and_round_trips(fn, loss, y_true, y_pred):
    assert float(loss(y_true, y_pred)) == pytest.approx(float(fn(y_true, y_pred)), rel=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    per_sample = type(loss).from_config({**loss.get_config(), "reduction": "none"})
    assert tuple(per_sample(y_true, y_pred).shape) == (2,)


def test_losses_compute_in_float32_from_bfloat16_predictions():
    value = segmentation_loss(DENSE_TRUE, tf.cast(DENSE_PRED, tf.bfloat16))
    assert value.dtype == tf.float32
    assert float(SegmentationLoss()(DENSE_TRUE, tf.cast(DENSE_PRED, tf.bfloat16))) == \
        pytest.approx(float(value), rel=1e-6)


def test_masked_mean():
    assert float(masked_mean(np.array([1.0, 3.0]))) == 2.0
    assert float(masked_mean(np.array([1.0, 3.0]), np.array([[0.0], [1.0]]))) == 3.0


# --------------------------------------------------------------------------------------------
# Multi-task combination.

def _batch() -> tuple[dict, dict]:
    y_true = {task: DENSE_TRUE for task in ("wmh", "rssi", "lacune", "cmb", "epvs")}
    y_pred = {task: DENSE_PRED for task in y_true}
    y_true["score"] = np.array([3.0, 1.0], "float32")
    y_pred["score"] = LOSSES[-1][3]
    return y_true, y_pred


def test_fixed_weighting_is_the_weighted_sum():
    objective = MultiTaskLoss.from_loss_config(LossConfig(segmentation="dice_bce", heatmap="mse"))
    y_true, y_pred = _batch()
    masks = {"lacune": np.array([0.0, 0.0]), "score": np.array([1.0, 0.0])}
    out = objective(y_true, y_pred, masks=masks)
    assert float(out["lacune"]) == 0.0
    assert float(out["wmh"]) == pytest.approx(float(segmentation_loss(DENSE_TRUE, DENSE_PRED,
                                                                      gamma=0.0)), rel=1e-6)
    assert float(out["cmb"]) == pytest.approx(float(weighted_mse_loss(DENSE_TRUE, DENSE_PRED)),
                                              rel=1e-6)
    weights = LossConfig().task_weights
    expected = sum(weights[t] * float(out[t]) for t in weights)
    assert float(out["total"]) == pytest.approx(expected, rel=1e-6)
    assert not objective.trainable_variables


def test_uncertainty_weighting_trains_one_log_variance_per_task():
    objective = MultiTaskLoss.from_loss_config(LossConfig(weighting="uncertainty"))
    names = sorted(v.name for v in objective.trainable_variables)
    tasks = ("wmh", "rssi", "lacune", "cmb", "epvs", "score")
    assert names == sorted(f"log_var_{t}" for t in tasks)
    y_true, y_pred = _batch()
    with tf.GradientTape() as tape:
        out = objective(y_true, y_pred, masks={"epvs": np.zeros(2)})
    grads = dict(zip([v.name for v in objective.trainable_variables],
                     tape.gradient(out["total"], objective.trainable_variables)))
    # At s = 0: d/ds (exp(-s) L + s) = 1 - L; a task with no label in the batch adds nothing.
    for task in ("wmh", "rssi", "lacune", "cmb", "score"):
        assert float(grads[f"log_var_{task}"]) == pytest.approx(1.0 - float(out[task]), rel=1e-5)
    assert float(grads["log_var_epvs"]) == 0.0
    present = sum(float(out[t]) for t in ("wmh", "rssi", "lacune", "cmb", "score"))
    assert float(out["total"]) == pytest.approx(present, rel=1e-6)


def test_multitask_loss_config_round_trip_and_skips_missing_tasks():
    objective = MultiTaskLoss(task_weights={"wmh": 1.0, "cmb": 2.0, "epvs": 0.0},
                              weighting="uncertainty", heatmap_beta=3.0)
    config = objective.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(objective))
    assert restored.get_config() == config
    assert [v.name for v in restored.trainable_variables] == ["log_var_wmh", "log_var_cmb"]
    assert config == {**config, **{k: v for k, v in dataclasses.asdict(LossConfig()).items()
                                   if k not in ("task_weights", "weighting", "heatmap_beta")}}
    y_true, y_pred = _batch()
    out = restored({"wmh": y_true["wmh"]}, y_pred)
    assert set(out) == {"wmh", "total"}


def test_pos_weight_scales_the_lesion_voxels_term():
    y_true = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
    y_pred = np.array([[0.5, 0.2, 0.2, 0.2]], np.float32)
    # BCE (gamma 0): (10 * -log 0.5 + 3 * -log 0.8) / 4.
    expected = (10 * math.log(2.0) + 3 * -math.log(0.8)) / 4
    value = binary_focal_loss(y_true, y_pred, gamma=0.0, pos_weight=10.0)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def _featureless_optimum(loss: MultiTaskLoss, lesion_voxels: int, voxels: int) -> float:
    """The uniform probability that minimises the lacune loss on a lesion patch."""
    target = np.zeros((1, voxels), np.float32)
    target[0, :lesion_voxels] = 1.0
    grid = np.logspace(-7, -0.5, 131).astype(np.float32)
    values = [float(loss.task_loss("lacune", target, np.full_like(target, p))) for p in grid]
    return float(grid[int(np.argmin(values))])


def test_rare_lesion_loss_has_no_empty_prediction_optimum():
    # A lacune patch: 20 lesion voxels of 64^3. The old recipe (Dice smoothing 1, focal gamma 2)
    # is lowest when the head says "no" everywhere (p at the clip, 1e-7). Tiny smoothing and a
    # lesion-voxel weight w in plain cross-entropy move the featureless optimum to ~w T / N,
    # where a feature that marks a lesion pays off at once.
    t, n = 20, 64 ** 3
    old = MultiTaskLoss(dice="positive")
    assert _featureless_optimum(old, t, n) < 3e-7
    new = MultiTaskLoss(dice="positive", dice_smooth=1e-5, pos_weight={"lacune": 100.0},
                        task_focal_gamma={"lacune": 0.0})
    assert _featureless_optimum(new, t, n) == pytest.approx(100 * t / n, rel=0.35)


def test_loss_config_checks_the_new_keys():
    with pytest.raises(ValueError, match="losses.pos_weight"):
        LossConfig(pos_weight={"cmb": 10.0})
    with pytest.raises(ValueError, match="losses.dice_smooth"):
        LossConfig(dice_smooth=0.0)
    with pytest.raises(ValueError, match="losses.task_focal_gamma"):
        LossConfig(task_focal_gamma={"lacune": -1.0})
    cfg = LossConfig(pos_weight={"lacune": 50.0}, task_focal_gamma={"lacune": 0.0},
                     dice_smooth=1e-4)
    loss = MultiTaskLoss.from_loss_config(cfg)
    assert MultiTaskLoss.from_config(loss.get_config()).pos_weight == {"lacune": 50.0}
