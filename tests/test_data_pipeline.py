"""The tf.data pipelines over a tiny fake cache (3 subjects, 2 channels, <= 24^3)."""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from _fake_cache import FakeSubject, ratings, sphere, write_cache
from csvdnet.config import DataConfig
from csvdnet.data import Augmentation, BatchSchedule, make_dataset, make_validation_dataset
from csvdnet.errors import CsvdnetInputError

SEGMENTATION = ("wmh", "rssi", "lacune")
DETECTION = ("cmb", "epvs")
TASKS = SEGMENTATION + DETECTION + ("score",)
CFG = DataConfig(channels=("flair", "t1"), patch_size=(16, 16, 16), whole_brain_every=3)
WHOLE = (24, 24, 24)
# Label sets per subject, as planted below; each subject is recognisable by its label masks.
LABELS = {"s0": {"wmh", "cmb", "epvs"}, "s1": {"lacune", "epvs"}, "s2": {"wmh", "rssi", "cmb"}}
POINTS = {"s0": {"cmb": [[12.0, 12.0, 12.0]], "epvs": []},
          "s1": {"epvs": [[4.4, 5.6, 7.0], [15.5, 16.2, 9.7]]},
          "s2": {"cmb": [[3.6, 20.2, 11.5]]}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    rng = np.random.default_rng(0)
    subjects = [
        FakeSubject("s0", rng.normal(size=(24, 24, 24, 2)),
                    masks={"wmh": sphere((24, 24, 24), (12, 12, 12), 3)},
                    points=POINTS["s0"], ratings=ratings(2)),
        FakeSubject("s1", rng.normal(size=(24, 24, 16, 2)),
                    masks={"lacune": sphere((24, 24, 16), (8, 8, 8), 2)},
                    points=POINTS["s1"], spacing=(1.0, 1.0, 2.0)),
        FakeSubject("s2", rng.normal(size=(16, 24, 24, 2)),
                    masks={"wmh": sphere((16, 24, 24), (8, 8, 8), 3),
                           "rssi": sphere((16, 24, 24), (4, 4, 4), 2)},
                    points=POINTS["s2"], ratings=ratings(0)),
    ]
    return write_cache(tmp_path_factory.mktemp("pipeline") / "cache", subjects, ("flair", "t1"))


def take(dataset: tf.data.Dataset, n: int) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset.take(n)]


def assert_batches_equal(a: list, b: list) -> None:
    tf.nest.map_structure(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def fresh(cache) -> list:
    """The first 7 batches of the default training pipeline (seed 0, whole brain every 3)."""
    return take(make_dataset(cache, ["s0", "s1", "s2"], CFG, batch_size=2), 7)


def test_batch_shapes_dtypes_and_whole_brain_schedule(cache, fresh):
    spec = make_dataset(cache, ["s0", "s1"], CFG, batch_size=2).element_spec
    assert spec[0].shape.as_list() == [2, None, None, None, 2]
    assert set(spec[1]) == set(spec[2]) == set(TASKS)
    for b, (x, y, w) in enumerate(fresh):
        whole = b % 3 == 2
        spatial = WHOLE if whole else CFG.patch_size
        assert x.shape == (2, *spatial, 2) and x.dtype == np.float32
        for task in SEGMENTATION + DETECTION:
            assert y[task].shape == (2, *spatial, 1) and y[task].dtype == np.float32
            assert w[task].shape == (2,) and w[task].dtype == np.float32
        assert y["score"].shape == (2, 4) and w["score"].shape == (2,)
        assert set(np.unique(np.concatenate([y[t].ravel() for t in SEGMENTATION]))) <= {0, 1}
        # Only whole-brain batches carry the score label; they are drawn from rated subjects.
        np.testing.assert_array_equal(w["score"], [1.0, 1.0] if whole else [0.0, 0.0])


def test_label_masks_follow_the_cache_and_missing_targets_are_zero_placeholders(fresh):
    seen = set()
    for x, y, w in fresh:
        for i in range(2):
            present = {t for t in SEGMENTATION + DETECTION if w[t][i] == 1.0}
            assert present in LABELS.values()
            subject = next(s for s, labels in LABELS.items() if labels == present)
            seen.add(subject)
            for task in SEGMENTATION + DETECTION:
                assert w[task][i] in (0.0, 1.0)
                if w[task][i] == 0.0:
                    assert not y[task][i].any(), f"{subject}: fabricated {task} target"
            # The rated scores (2 and 0) are real targets even on patches, where the weight
            # masks them; the unrated subject gets a zero placeholder.
            expected = {"s0": [1, 1, 0, 0], "s1": [0, 0, 0, 0], "s2": [0, 0, 0, 0]}[subject]
            np.testing.assert_array_equal(y["score"][i], expected)
            if subject == "s1":
                assert w["score"][i] == 0.0
    assert seen == set(LABELS)


def test_same_seed_same_batches_and_another_seed_differs(cache, fresh):
    again = take(make_dataset(cache, ["s0", "s1", "s2"], CFG, batch_size=2), 3)
    assert_batches_equal(again, fresh[:3])
    other = take(make_dataset(cache, ["s0", "s1", "s2"], dataclasses.replace(CFG, seed=1),
                              batch_size=2), 2)
    for a, b in zip(other, fresh):
        assert not np.array_equal(a[0], b[0])


def test_start_step_resumes_exactly(cache, fresh):
    # Resumes on a patch batch, then crosses the whole-brain batch 5 and goes back to patches.
    resumed = take(make_dataset(cache, ["s0", "s1", "s2"], CFG, batch_size=2, start_step=4), 3)
    assert_batches_equal(resumed, fresh[4:])


def test_schedule_maps_each_stream_position_to_its_global_batch():
    for every in range(5):
        schedule = BatchSchedule(every)
        kinds = [bool(schedule.is_whole(tf.constant(b, tf.int64))) for b in range(40)]
        for whole in (False, True):
            slots = [b for b, kind in enumerate(kinds) if kind == whole]
            mapped = [int(schedule.global_batch(tf.constant(k, tf.int64), whole))
                      for k in range(len(slots))]
            assert mapped == slots
        assert [schedule.whole_before(b) for b in range(40)] == list(np.cumsum([0] + kinds[:-1]))
    with pytest.raises(CsvdnetInputError):
        BatchSchedule(-1)


def test_validation_whole_volumes_with_planted_targets(cache):
    ids = ["s0", "s1", "s2"]
    batches = take(make_validation_dataset(cache, ids, CFG), 10)
    assert len(batches) == 3
    shapes = {"s0": (24, 24, 24), "s1": (24, 24, 16), "s2": (16, 24, 24)}
    spacing_z = {"s0": 1.0, "s1": 2.0, "s2": 1.0}
    for subject, (x, y, w) in zip(ids, batches):
        assert x.shape == (1, *shapes[subject], 2)
        np.testing.assert_array_equal(x[0], np.load(cache / subject / "image.npy"))
        for task in SEGMENTATION + DETECTION:
            assert w[task][0] == float(task in LABELS[subject])
        for task in SEGMENTATION:
            expected = (np.load(cache / subject / f"{task}.npy") if task in LABELS[subject]
                        else np.zeros(shapes[subject]))
            np.testing.assert_array_equal(y[task][0, ..., 0], expected)
        for task in DETECTION:
            heatmap = y[task][0, ..., 0]
            nearest = np.floor(np.reshape(POINTS[subject].get(task, []), (-1, 3)) + 0.5)
            assert np.count_nonzero(heatmap == 1.0) == len(nearest)
            for i, j, k in nearest.astype(int):  # peak on the point, width from sigma and spacing
                assert heatmap[i, j, k] == 1.0
                sigma_z = CFG.heatmap_sigma_mm / spacing_z[subject]
                assert heatmap[i, j, k - 1] == pytest.approx(math.exp(-0.5 / sigma_z ** 2))
                assert heatmap[i - 1, j, k] == pytest.approx(math.exp(-0.5 / 2.0 ** 2))
        assert w["score"][0] == float(subject != "s1")
    as_training_false = take(make_dataset(cache, ids, CFG, batch_size=4, training=False), 1)
    assert_batches_equal(as_training_false, batches[:1])


@pytest.fixture(scope="module")
def corner_cache(tmp_path_factory):
    """One 40^3 subject whose only lesion is a small ball near a corner."""
    image = np.random.default_rng(1).normal(size=(40, 40, 40, 2)) + 3.0
    subject = FakeSubject("c", image, masks={"lacune": sphere((40, 40, 40), (3, 4, 3), 1)},
                          points={"cmb": [[35.0, 36.0, 34.0]]})
    return write_cache(tmp_path_factory.mktemp("corner") / "cache", [subject], ("flair", "t1"))


def test_lesion_oversampling_centres_patches_on_lesions(corner_cache):
    cfg = dataclasses.replace(CFG, patch_size=(8, 8, 8), lesion_oversample=1.0, whole_brain_every=0,
                              augment=False, modality_dropout=0.0)
    batches = take(make_dataset(corner_cache, ["c"], cfg, batch_size=4), 4)
    hits = [y["lacune"][i].any() or (y["cmb"][i] == 1.0).any()
            for _, y, _ in batches for i in range(4)]
    assert all(hits)
    assert 0 < np.mean([y["lacune"][i].any() for _, y, _ in batches for i in range(4)]) < 1


def test_a_point_inside_a_mask_stays_inside_through_the_pipeline(cache):
    cfg = dataclasses.replace(CFG, lesion_oversample=1.0, whole_brain_every=0)
    dataset = make_dataset(cache, ["s0"], cfg, batch_size=4, tasks=("wmh", "cmb"),
                           augmentation=Augmentation(affine_probability=0.5))
    peaks = 0
    for x, y, w in take(dataset, 4):
        assert set(y) == set(w) == {"wmh", "cmb"}
        for index in np.argwhere(y["cmb"] == 1.0):
            assert y["wmh"][tuple(index)] == 1.0
            peaks += 1
    assert peaks >= 12


def test_modality_dropout_never_blanks_every_channel(corner_cache):
    cfg = dataclasses.replace(CFG, patch_size=(8, 8, 8), whole_brain_every=0, modality_dropout=1.0)
    for x, _, _ in take(make_dataset(corner_cache, ["c"], cfg, batch_size=2), 4):
        kept = np.abs(x).reshape(2, -1, 2).max(axis=1) > 0
        np.testing.assert_array_equal(kept.sum(axis=1), [1, 1])


def test_a_target_is_unlabelled_where_dropout_blanked_its_sequence(tmp_path):
    # Microbleeds are seen on SWI, infarcts on DWI (csvdnet.TASK_EVIDENCE); lacunes on neither.
    image = np.random.default_rng(2).normal(size=(16, 16, 16, 3)) + 3.0
    subject = FakeSubject("d", image, masks={"rssi": sphere((16, 16, 16), (8, 8, 8), 2),
                                             "lacune": sphere((16, 16, 16), (4, 4, 4), 1)},
                          points={"cmb": [[8.0, 8.0, 8.0]]})
    cache = write_cache(tmp_path / "cache", [subject], ("flair", "swi", "dwi"))
    cfg = dataclasses.replace(CFG, channels=("flair", "swi", "dwi"), patch_size=(8, 8, 8),
                              whole_brain_every=0, modality_dropout=0.5)
    seen = set()
    for x, _, w in take(make_dataset(cache, ["d"], cfg, batch_size=4), 6):
        kept = np.abs(x).reshape(4, -1, 3).max(axis=1) > 0
        np.testing.assert_array_equal(w["cmb"], kept[:, 1].astype(np.float32))
        np.testing.assert_array_equal(w["rssi"], kept[:, 2].astype(np.float32))
        np.testing.assert_array_equal(w["lacune"], np.ones(4, np.float32))
        seen |= {(bool(a), bool(b)) for a, b in kept[:, 1:]}
    assert len(seen) >= 3  # both kept, and each blanked at least once


def test_keras_fit_consumes_the_dataset(cache):
    inputs = keras.Input((None, None, None, 2))
    outputs = {t: keras.layers.Conv3D(1, 1, activation="sigmoid", name=t)(inputs)
               for t in SEGMENTATION + DETECTION}
    outputs["score"] = keras.layers.Dense(4, name="score")(
        keras.layers.GlobalAveragePooling3D()(inputs))
    model = keras.Model(inputs, outputs)

    def per_sample_error(y_true, y_pred):
        # Label masks are per sample (B,): losses reduce each sample to one value first.
        axes = tuple(range(1, len(y_pred.shape)))
        return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=axes)

    model.compile(optimizer="sgd", loss={t: per_sample_error for t in TASKS})
    history = model.fit(make_dataset(cache, ["s0", "s1", "s2"], CFG, batch_size=2),
                        steps_per_epoch=3, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_bad_arguments_are_input_errors(cache):
    with pytest.raises(CsvdnetInputError, match="unknown task 'wmhx'"):
        make_dataset(cache, ["s0"], CFG, batch_size=2, tasks=("wmhx",))
    with pytest.raises(CsvdnetInputError, match="batch_size"):
        make_dataset(cache, ["s0"], CFG, batch_size=0)
    with pytest.raises(CsvdnetInputError, match="start_step"):
        make_dataset(cache, ["s0"], CFG, batch_size=1, start_step=-1)
    with pytest.raises(CsvdnetInputError, match="not in the cache"):
        make_validation_dataset(cache, ["nobody"], CFG)
    for weights in ({"lacuna": 2.0}, {"lacune": -1.0}):
        with pytest.raises(CsvdnetInputError, match="data.lesion_task_weights"):
            make_dataset(cache, ["s0"], dataclasses.replace(CFG, lesion_task_weights=weights),
                         batch_size=1)
