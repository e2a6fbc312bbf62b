"""csvdnet.preprocessing.sequence_check: swapped sequences told from their tissue contrasts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from csvdnet.preprocessing.sequence_check import (SIGNATURES_PATH, channel_features,
                                                  check_sequences, fit_signatures,
                                                  load_signatures)

CHANNELS = ("flair", "t1", "t2", "swi", "dwi")
# Tissue intensities (CSF, grey, white matter) and noise of each sequence: the textbook
# contrasts (CSF dark on FLAIR, T1 and DWI, bright on T2 and SWI; white matter above grey on T1
# only), each sequence with its own contrast sizes.
CONTRASTS = {"flair": (0.10, 0.62, 0.45, 0.03), "t1": (0.15, 0.50, 0.80, 0.03),
             "t2": (1.00, 0.50, 0.34, 0.03), "swi": (0.80, 0.62, 0.50, 0.04),
             "dwi": (0.08, 0.50, 0.42, 0.05)}
SHAPE = (40, 40, 40)


def phantom(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A brain-like ball: CSF ventricles and an outer CSF rim, a grey-matter shell, white matter
    inside; every channel z-scored in the brain as the preprocessing does."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(float) - (np.array(SHAPE)[:, None, None, None] - 1) / 2
    radius = np.sqrt((grid ** 2).sum(axis=0))
    brain = radius < 18 + rng.uniform(-1, 1)
    tissue = np.full(SHAPE, 2)  # white matter
    tissue[radius > 13 + rng.uniform(-1, 1)] = 1  # grey matter
    tissue[radius > 16.5] = 0  # CSF around the brain
    tissue[np.abs(grid[0]) + np.abs(grid[1]) / 3 < 3 + rng.uniform(0, 1)] = 0  # ventricles
    channels = []
    for name in CHANNELS:
        *means, noise = CONTRASTS[name]
        means = np.array(means) * (1 + 0.05 * rng.standard_normal(3))
        volume = means[tissue] + noise * rng.standard_normal(SHAPE)
        volume = (volume - volume[brain].mean()) / volume[brain].std()
        channels.append(np.where(brain, volume, 0.0))
    return np.stack(channels, axis=-1).astype(np.float32), brain


@pytest.fixture(scope="module")
def signatures():
    return fit_signatures([phantom(seed) for seed in range(8)], CHANNELS)


def swapped(array: np.ndarray, i: int, j: int) -> np.ndarray:
    order = list(range(array.shape[-1]))
    order[i], order[j] = j, i
    return array[..., order]


def test_signatures_hold_what_was_measured(signatures):
    assert signatures["subjects"] == 8 and signatures["channels"] == list(CHANNELS)
    assert signatures["identity_margin_max"] < signatures["margin"] < \
        signatures["swap_margin_min"]
    # T1 against T2: CSF and white matter reversed, strongly anti-correlated.
    assert signatures["correlation_mean"]["t1|t2"] < -0.5


def test_correct_names_pass_and_every_pairwise_swap_is_named(signatures):
    for seed in range(100, 106):  # subjects the signatures were not measured on
        array, brain = phantom(seed)
        result = check_sequences(array, brain, CHANNELS, signatures)
        assert not result.swapped and result.margin < signatures["margin"]
        assert result.message() is None
        for i, j in itertools.combinations(range(len(CHANNELS)), 2):
            result = check_sequences(swapped(array, i, j), brain, CHANNELS, signatures)
            assert result.looks_like == {CHANNELS[i]: CHANNELS[j], CHANNELS[j]: CHANNELS[i]}


def test_the_message_names_the_channels_and_what_they_look_like(signatures):
    array, brain = phantom(200)

    result = check_sequences(swapped(array, 0, 1), brain, CHANNELS, signatures)

    assert result.message() == (
        "sequence check: the flair image looks like T1, the t1 image looks like FLAIR (tissue "
        "contrasts inside the brain): were the files swapped or misnamed? The ratings are "
        "unreliable until the names are right")


def test_blank_or_unknown_channels_take_no_part_and_too_few_skip(signatures):
    array, brain = phantom(300)
    array[..., 4] = 0.0  # DWI missing: blanked as modality dropout does
    result = check_sequences(swapped(array, 0, 1), brain, CHANNELS, signatures)
    assert result.checked == CHANNELS[:4] and set(result.looks_like) == {"flair", "t1"}

    result = check_sequences(array[..., :2], brain, ("flair", "adc"), signatures)
    assert result.skipped == "fewer than two sequences with a signature" and not result.swapped
    tiny = np.zeros(SHAPE, bool)
    tiny[:5, :5, :5] = True
    assert check_sequences(array, tiny, CHANNELS, signatures).skipped.startswith("too few")


def test_features_do_not_depend_on_the_normalisation(signatures):
    array, brain = phantom(400)
    quantiles, correlations = channel_features(array, brain)
    scaled = channel_features(array * 3.0 + 1.5, brain)
    np.testing.assert_allclose(scaled[0], quantiles, atol=1e-5)
    np.testing.assert_allclose(scaled[1], correlations, atol=1e-6)


def test_installed_signatures_cover_the_five_sequences():
    installed = load_signatures()
    assert installed is not None, f"{SIGNATURES_PATH} is missing"
    assert set(installed["quantile_mean"]) == set(CHANNELS)
    assert installed["identity_margin_max"] < installed["margin"] < installed["swap_margin_min"]
    assert installed["measured_on"]["subjects"] >= 20
