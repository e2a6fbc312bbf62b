"""csvdnet.models: output contract, serialisation round trips, CORAL head, a tiny over-fit."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from csvdnet.config import ModelConfig
from csvdnet.errors import CsvdnetInputError
from csvdnet.losses import MultiTaskLoss, soft_dice_loss
from csvdnet.models import (DENSE_TASKS, SCORE_TASK, CoralHead, HeadSummary, ResidualBlock,
                            build_model, group_count, level_filters)

TINY = ModelConfig(input_channels=2, base_filters=4, depth=2, blocks_per_level=(1, 1, 1),
                   norm_groups=4, score_classes=5)


def tiny_config(**changes) -> ModelConfig:
    return ModelConfig(**{**TINY.__dict__, **changes})


def _inputs(shape: tuple[int, int, int], batch: int = 2, channels: int = 2) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(batch, *shape, channels)).astype("float32")


@pytest.fixture(scope="module", params=[("shared", "encoder"), ("per_head", "encoder"),
                                        ("shared", "encoder_and_heads")])
def tiny_model(request) -> keras.Model:
    keras.utils.set_random_seed(0)
    decoder, score_inputs = request.param
    return build_model(tiny_config(decoder=decoder, score_inputs=score_inputs))


@pytest.fixture
def bfloat16_policy():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy("float32")


def _assert_contract(outputs: dict, batch: int, shape: tuple[int, int, int], classes: int) -> None:
    assert set(outputs) == {*DENSE_TASKS, SCORE_TASK}
    for task in DENSE_TASKS:
        assert tuple(outputs[task].shape) == (batch, *shape, 1), task
        assert outputs[task].dtype == tf.float32, task
        values = np.asarray(outputs[task])
        assert np.all((values >= 0) & (values <= 1)), task
    assert tuple(outputs[SCORE_TASK].shape) == (batch, classes - 1)
    assert outputs[SCORE_TASK].dtype == tf.float32


@pytest.mark.parametrize("shape", [(16, 16, 16), (8, 16, 24), (4, 4, 4)])
def test_outputs_follow_the_contract_for_any_padded_size(tiny_model, shape):
    _assert_contract(tiny_model(_inputs(shape)), 2, shape, TINY.score_classes)


def test_outputs_are_float32_under_mixed_bfloat16(bfloat16_policy):
    model = build_model(tiny_config(decoder="per_head"))
    assert model.get_layer("enc0_block0").compute_dtype == "bfloat16"
    _assert_contract(model(_inputs((8, 8, 16), batch=1)), 1, (8, 8, 16), TINY.score_classes)


def test_untrained_heads_start_at_the_prior(tiny_model):
    outputs = tiny_model(_inputs((8, 8, 8)))
    for task in DENSE_TASKS:
        bias = tiny_model.get_layer(f"{task}_logits").bias.numpy()
        np.testing.assert_allclose(bias, [math.log(0.01 / 0.99)], rtol=1e-6)
        np.testing.assert_allclose(np.median(outputs[task]), 0.01, atol=0.005)
    np.testing.assert_allclose(tiny_model.get_layer("score").ordered_biases(),
                               [1.5, 0.5, -0.5, -1.5], atol=1e-6)


def test_head_prior_per_task():
    model = build_model(tiny_config(head_prior={"lacune": 1e-4, "rssi": 0.5}))
    for task, prior in (("lacune", 1e-4), ("rssi", 0.5), ("wmh", 0.01)):
        bias = model.get_layer(f"{task}_logits").bias.numpy()
        np.testing.assert_allclose(bias, [math.log(prior / (1 - prior))], rtol=1e-6, atol=1e-9)


def test_config_round_trip_gives_identical_outputs(tiny_model):
    clone = keras.Model.from_config(tiny_model.get_config())
    clone.set_weights(tiny_model.get_weights())
    x = _inputs((8, 8, 16))
    expected, got = tiny_model(x), clone(x)
    for task in expected:
        np.testing.assert_array_equal(got[task], expected[task])


def test_keras_file_round_trip_needs_no_custom_objects(tiny_model, tmp_path):
    path = tmp_path / "model.keras"
    tiny_model.save(path)
    loaded = keras.saving.load_model(path)
    x = _inputs((8, 16, 8))
    expected, got = tiny_model(x), loaded(x)
    for task in expected:
        np.testing.assert_array_equal(got[task], expected[task])


@pytest.mark.parametrize("layer, shape", [
    (ResidualBlock(6, strides=2, kernel_size=3, norm_groups=4, negative_slope=0.1, name="rb"),
     (1, 8, 8, 8, 3)),
    (ResidualBlock(3, norm_groups=-1), (1, 4, 4, 4, 3)),
    (CoralHead(4, kernel_initializer="zeros", name="coral"), (3, 7)),
    (HeadSummary(threshold=0.3, name="summary"), [(2, 4, 4, 4, 1)] * 2),
])
def test_layer_config_round_trip(layer, shape):
    rng = np.random.default_rng(1)
    x = ([rng.uniform(size=one).astype("float32") for one in shape] if isinstance(shape, list)
         else rng.normal(size=shape).astype("float32"))
    expected = layer(x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), expected, rtol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_head_summary_hand_computed():
    lesions = np.zeros((2, 6, 6, 6, 1), "float32")
    lesions[0, 1, 1, 1] = 0.9                          # one peak ...
    lesions[0, 1, 1, 2] = 0.6                          # ... whose neighbour is above but no maximum
    lesions[0, 4, 4, 4] = 0.7                          # a second, separate peak
    lesions[0, 4, 1, 4] = 0.4                          # below the threshold
    points = np.zeros_like(lesions)
    points[1, 2, 2, 2] = 0.55                          # second sample: one point, no lesion
    got = np.asarray(HeadSummary()([lesions, points]))
    expected = [[0.9, math.log1p(3), math.log1p(2), 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.55, math.log1p(1), math.log1p(1)]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        HeadSummary(threshold=1.0)


def test_score_head_reads_the_dense_heads_without_training_them():
    keras.utils.set_random_seed(0)
    model = build_model(tiny_config(score_inputs="encoder_and_heads"))
    assert model.get_layer("score").kernel.shape == (16 + 3 * len(DENSE_TASKS), 1)
    x = tf.constant(_inputs((8, 8, 8)))
    with tf.GradientTape() as tape:
        score = model(x, training=True)[SCORE_TASK]
        loss = tf.reduce_sum(score ** 2)
    head_kernels = [model.get_layer(f"{t}_logits").kernel for t in DENSE_TASKS]
    score_kernel = model.get_layer("score").kernel
    grads = tape.gradient(loss, head_kernels + [score_kernel])
    assert all(g is None or not np.any(g.numpy()) for g in grads[:-1])
    assert np.any(grads[-1].numpy())


def test_residual_block_projects_only_when_needed():
    identity = ResidualBlock(4)
    identity.build((None, None, None, None, 4))
    projected = ResidualBlock(8, strides=2)
    projected.build((None, None, None, None, 4))
    assert identity.shortcut_conv is None
    assert projected.shortcut_conv is not None
    assert tuple(projected(np.zeros((1, 8, 8, 8, 4), "float32")).shape) == (1, 4, 4, 4, 8)


def test_coral_head_is_rank_consistent_for_any_weights():
    head = CoralHead(6)
    x = np.random.default_rng(2).normal(size=(64, 5)).astype("float32")
    head(x)
    rng = np.random.default_rng(3)
    for variable in head.weights:
        variable.assign(rng.normal(scale=3.0, size=variable.shape).astype("float32"))
    cumulative = keras.ops.sigmoid(head(x)).numpy()
    assert cumulative.shape == (64, 5)
    assert np.all(np.diff(cumulative, axis=1) <= 0)


def test_group_count_and_level_filters():
    assert [group_count(c, 8) for c in (4, 8, 12, 16)] == [4, 8, 4, 8]
    assert group_count(32, -1) == 32
    assert level_filters(16, 4, 128) == [16, 32, 64, 128, 128]


@pytest.mark.parametrize("changes, key", [
    ({"score_inputs": "heads"}, "model.score_inputs"),
    ({"blocks_per_level": (1, 1)}, "model.blocks_per_level"),
    ({"blocks_per_level": (1, 0, 1)}, "model.blocks_per_level"),
    ({"decoder": "both"}, "model.decoder"),
    ({"score_classes": 1}, "model.score_classes"),
    ({"norm_groups": 0}, "model.norm_groups"),
    ({"head_prior": {"score": 0.1}}, "model.head_prior"),
    ({"head_prior": {"lacune": 0.0}}, "model.head_prior"),
])
def test_bad_config_names_the_key(changes, key):
    with pytest.raises(CsvdnetInputError, match=key):
        build_model(tiny_config(**changes))


def test_default_config_builds():
    shared = build_model(ModelConfig())
    per_head = build_model(ModelConfig(decoder="per_head"))
    assert 9e6 < shared.count_params() < per_head.count_params() < 14e6


def test_tiny_model_overfits_one_sample():
    keras.utils.set_random_seed(0)
    n = 16
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).astype("float32")
    sphere = (np.linalg.norm(grid - 7.5, axis=-1) <= 4).astype("float32")
    peak = np.array([4, 11, 5])
    heatmap = np.exp(-((grid - peak) ** 2).sum(-1) / 2).astype("float32")
    image = np.random.default_rng(0).normal(0, 0.1, (1, n, n, n, 2)).astype("float32")
    image[0, ..., 0] += sphere
    image[0, ..., 1] += heatmap
    targets = {"wmh": sphere[None, ..., None], "cmb": heatmap[None, ..., None]}

    model = build_model(tiny_config(dropout=0.0))
    objective = MultiTaskLoss(task_weights={"wmh": 1.0, "cmb": 1.0})
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = objective(targets, model(image, training=True))["total"]
        grads = tape.gradient(loss, model.trainable_variables)
        # Heads without a target here (rssi, lacune, epvs, score) get no gradient.
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, model.trainable_variables)
                                   if g is not None])
        return loss

    losses = [float(step()) for _ in range(40)]
    outputs = model(image)
    dice = 1.0 - float(soft_dice_loss(targets["wmh"], tf.cast(outputs["wmh"] > 0.5, tf.float32),
                                      smooth=0.0))
    assert losses[0] / losses[-1] >= 10.0, losses
    assert dice > 0.9
    heat = outputs["cmb"].numpy()[0, ..., 0]
    assert tuple(np.unravel_index(np.argmax(heat), heat.shape)) == tuple(peak)
