"""Sliding-window prediction: tiling, Gaussian blending, stitching with trivial predictors."""

import numpy as np
import pytest
import tensorflow as tf

from csvdnet.errors import CsvdnetInputError
from csvdnet.inference import (gaussian_importance, sliding_window, window_origins,
                               windowed_predictor)


def test_window_origins_by_hand():
    # 128: room 64, step 32 -> 0, 32, 64. 176: room 112, step 32 -> 5 windows spread evenly
    # (0, 28, 56, 84, 112: overlap 36 >= 32). 48 < 64: one window.
    origins = window_origins((128, 176, 48), (64, 64, 64), 0.5)
    assert sorted({o[0] for o in origins}) == [0, 32, 64]
    assert sorted({o[1] for o in origins}) == [0, 28, 56, 84, 112]
    assert {o[2] for o in origins} == {0}
    assert len(origins) == 15
    assert window_origins((64, 64, 64), (64, 64, 64), 0.0) == [(0, 0, 0)]
    assert sorted({o[0] for o in window_origins((96, 8, 8), (32, 8, 8), 0.0)}) == [0, 32, 64]
    with pytest.raises(CsvdnetInputError, match="inference.overlap"):
        window_origins((64, 64, 64), (32, 32, 32), 1.0)


def test_gaussian_importance_peaks_in_the_centre():
    weights = gaussian_importance((8, 16, 8))
    assert weights.shape == (8, 16, 8) and weights.dtype == np.float32
    assert weights.max() == pytest.approx(1.0, abs=0.05)
    assert weights[3:5, 7:9, 3:5].min() == weights.max()
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1])
    assert weights.min() >= 1e-3 and weights[0, 0, 0] < 0.01


@pytest.mark.parametrize("gaussian", [True, False])
def test_stitching_an_identity_predictor_gives_the_input_back(gaussian):
    image = np.random.default_rng(0).normal(size=(40, 24, 16, 2)).astype("float32")
    calls = []

    def identity(batch):
        calls.append(batch.shape)
        return {"wmh": batch[..., :1], "cmb": 2.0 * batch[..., 1:], "score": np.zeros((1, 4))}

    out = sliding_window(identity, image, (16, 16, 32), overlap=0.5, gaussian=gaussian)
    assert set(out) == {"wmh", "cmb"}  # the (1, 4) score is not a dense output
    np.testing.assert_allclose(out["wmh"], image[..., :1], atol=1e-5)
    np.testing.assert_allclose(out["cmb"], 2.0 * image[..., 1:], atol=1e-5)
    # x: room 24, step 8 -> 4 windows; y: room 8 -> 2; z: the whole 16 (window capped).
    assert len(calls) == 8 and set(calls) == {(1, 16, 16, 16, 2)}


def test_blending_weighs_windows_by_their_centre():
    # Each window predicts a constant: its own origin along x. Voxel x = 10 lies in windows 0
    # (at 10 of 16) and 8 (at 2 of 16): nearer the first one's centre, so it weighs more.
    image = np.zeros((24, 8, 8, 1), "float32")
    origins = iter(o[0] for o in window_origins((24, 8, 8), (16, 8, 8), 0.5))

    def constant(batch):
        return {"wmh": np.full(batch.shape[:-1] + (1,), float(next(origins)), "float32")}

    out = sliding_window(constant, image, (16, 8, 8), overlap=0.5)["wmh"][..., 0]
    assert out[0, 0, 0] == pytest.approx(0.0) and out[23, 0, 0] == pytest.approx(8.0)
    # Gaussian sigma = 16 / 8 = 2 voxels around the window centre 7.5; y, z weights cancel.
    near, far = np.exp(-0.5 * (2.5 / 2) ** 2), np.exp(-0.5 * (5.5 / 2) ** 2)
    assert out[10, 4, 4] == pytest.approx(8.0 * far / (near + far), rel=1e-4)  # ~0.38
    assert np.all(np.diff(out[:, 4, 4]) >= -1e-6)  # blends monotonically from 0 to 8


def test_windowed_predictor_scores_the_whole_volume():
    image = np.random.default_rng(1).normal(size=(1, 32, 16, 16, 1)).astype("float32")

    @tf.function(reduce_retracing=True)
    def forward(x):
        return {"wmh": tf.sigmoid(x), "score": tf.reduce_mean(x, axis=[1, 2, 3])}

    out = windowed_predictor(forward, (16, 16, 16), overlap=0.0)(tf.constant(image))
    np.testing.assert_allclose(out["wmh"], 1 / (1 + np.exp(-image)), rtol=1e-5)
    np.testing.assert_allclose(out["score"], image.mean(axis=(1, 2, 3)), rtol=1e-4)
    with pytest.raises(ValueError, match="one volume"):
        windowed_predictor(forward, (16, 16, 16), 0.0)(np.zeros((2, 16, 16, 16, 1), "float32"))
