"""The pipeline's cache side: region reads, patch origins, subject metadata."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _fake_cache import FakeSubject, ratings, sphere, write_cache
from csvdnet.data.source import CacheSource, read_box, whole_brain_shape
from csvdnet.errors import CsvdnetInputError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    subjects = [
        FakeSubject("a", rng.normal(size=(32, 32, 32, 3)),
                    masks={"wmh": sphere((32, 32, 32), (4, 5, 6), 1)}, points={"cmb": []},
                    ratings=ratings(3)),
        FakeSubject("b", rng.normal(size=(8, 40, 16, 3)), points={"epvs": [[2.0, 30.0, 4.5]]},
                    ratings=ratings(None), spacing=(1.0, 1.0, 2.0)),
    ]
    return write_cache(tmp_path_factory.mktemp("source") / "cache", subjects,
                       ("flair", "t1", "swi"), pad_multiple=16)


def test_read_box_pads_with_zeros_and_selects_channels():
    volume = np.arange(4 * 5 * 6 * 3, dtype=np.float32).reshape(4, 5, 6, 3)
    box = read_box(volume, np.array([-1, 2, 4]), np.array([3, 4, 4]), channels=[2, 0])
    assert box.shape == (3, 4, 4, 2)
    np.testing.assert_array_equal(box[1:, :3, :2], volume[0:2, 2:5, 4:6][..., [2, 0]])
    assert not box[0].any() and not box[:, 3:].any() and not box[:, :, 2:].any()
    assert not read_box(volume, np.array([10, 0, 0]), np.array([2, 2, 2])).any()
    mask = np.ones((4, 5, 6), np.uint8)
    assert read_box(mask, np.array([3, 4, 5]), np.array([2, 2, 2])).dtype == np.uint8


def test_subject_metadata(cache):
    source = CacheSource(cache, ["b", "a"], ("swi", "flair"), ("wmh", "lacune", "cmb", "epvs"))
    assert source.channels == [2, 0]
    assert source.segmentation == ["wmh", "lacune"] and source.detection == ["cmb", "epvs"]
    np.testing.assert_array_equal(source.shapes, [[8, 40, 16], [32, 32, 32]])
    np.testing.assert_array_equal(source.spacing, [[1, 1, 2], [1, 1, 1]])
    np.testing.assert_array_equal(source.present, [[0, 0, 0, 1], [1, 0, 1, 0]])
    assert math.isnan(source.total_score[0]) and source.total_score[1] == 3


def test_read_returns_region_masks_and_points_in_region_coordinates(cache):
    source = CacheSource(cache, ["a", "b"], ("flair", "t1", "swi"), ("wmh", "rssi", "epvs"))
    image, masks, epvs = source.read(np.int64(1), np.array([0, 28, 2]), np.array([4, 4, 4]))
    assert image.dtype == np.float32 and image.shape == (4, 4, 4, 3)
    assert masks.dtype == np.uint8 and masks.shape == (4, 4, 4, 2) and not masks.any()
    np.testing.assert_allclose(epvs, [[2.0, 2.0, 2.5]])
    _, masks, _ = source.read(np.int64(0), np.array([2, 3, 4]), np.array([5, 5, 5]))
    assert masks[2, 2, 2, 0] == 1 and masks[..., 0].sum() == 7  # the 7-voxel ball at (4, 5, 6)


def test_patch_origin_on_a_lesion_and_uniform(cache):
    source = CacheSource(cache, ["a", "b"], ("flair",), ("wmh", "cmb", "epvs"))
    patch = np.array([8, 8, 8])
    for draws in np.random.default_rng(0).uniform(size=(20, 5)):
        origin = source.patch_origin(np.int64(0), np.bool_(True), draws, patch)
        centre = origin + (patch - 1) / 2
        lesion = np.argwhere(sphere((32, 32, 32), (4, 5, 6), 1))
        assert np.any(np.all(np.abs(lesion - centre) <= patch / 4 + 0.5, axis=1))
        uniform = source.patch_origin(np.int64(0), np.bool_(False), draws, patch)
        assert np.all((uniform >= 0) & (uniform <= 32 - 8))
    # Smaller than the patch along x: centred there (zero padding on both sides).
    origin = source.patch_origin(np.int64(1), np.bool_(False), np.full(5, 0.99),
                                 np.array([12, 12, 12]))
    assert origin[0] == -2 and 0 <= origin[1] <= 28 and 0 <= origin[2] <= 4
    # A subject without lesions falls back to uniform sampling.
    no_lesion = CacheSource(cache, ["a"], ("flair",), ("rssi",))
    origin = no_lesion.patch_origin(np.int64(0), np.bool_(True), np.zeros(5), patch)
    np.testing.assert_array_equal(origin, [0, 0, 0])


def test_lesion_task_weights_set_the_odds_of_the_centred_task(cache):
    # Subject "a": a wmh ball at (4, 5, 6); cmb served but without points. Add an epvs point
    # far away by serving subject "b" (epvs at (2, 30, 4.5)) and checking which one is centred.
    patch = np.array([4, 4, 4])
    draws = np.random.default_rng(1).uniform(size=(400, 5))

    def origins(weights, on_lesion=True):
        source = CacheSource(cache, ["b"], ("flair",), ("wmh", "epvs"), weights)
        return np.array([source.patch_origin(np.int64(0), np.bool_(on_lesion), d, patch)
                         for d in draws])

    centre = origins(None) + (patch - 1) / 2            # epvs: the only task with a lesion
    assert np.all(np.abs(centre - [2.0, 30.0, 4.5]) <= patch / 4 + 0.5)
    # Weight 0: never centred on it; the uniform fallback instead.
    np.testing.assert_array_equal(origins({"epvs": 0.0}), origins(None, on_lesion=False))
    wmh_and_cmb = CacheSource(cache, ["a"], ("flair",), ("wmh", "cmb"), {"wmh": 3.0})
    assert [w for w, _ in wmh_and_cmb._lesion_candidates(0)] == [3.0]  # cmb has no points
    # Two tasks with lesions, odds 1 : 3 -> the first is picked for draws[0] < 0.25.
    two = CacheSource(cache, ["a"], ("flair",), ("wmh",))
    two._candidates[0] = [(1.0, np.array([[4.0, 5.0, 6.0]])), (3.0, np.array([[20.0] * 3]))]
    picks = [two.patch_origin(np.int64(0), np.bool_(True), d, patch)[0] < 10 for d in draws]
    assert np.mean(picks) == pytest.approx(np.mean(draws[:, 0] < 0.25))
    assert np.mean(picks) == pytest.approx(0.25, abs=0.06)


def test_whole_brain_shape_is_the_max_extent_rounded_to_pad_multiple(cache):
    assert whole_brain_shape(cache) == (32, 48, 32)


def test_unknown_subject_or_channel_is_an_input_error(cache):
    with pytest.raises(CsvdnetInputError, match="subject 'zz' is not in the cache"):
        CacheSource(cache, ["a", "zz"], ("flair",), ("wmh",))
    with pytest.raises(CsvdnetInputError, match="channel 'dwi' is not in the cache"):
        CacheSource(cache, ["a"], ("flair", "dwi"), ("wmh",))
    with pytest.raises(CsvdnetInputError, match="no subjects"):
        CacheSource(cache, [], ("flair",), ("wmh",))
