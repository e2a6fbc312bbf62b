"""Training: config checks, distributed loss, metrics, run directory, resume, signals, TensorBoard.

Everything trains a 4-filter, depth-2 network on 16^3 fake caches (tests/_fake_cache.py). Tests
that need a fresh process (logical CPU devices for MirroredStrategy, real signals) run a small
script with ``subprocess``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from _fake_cache import FakeSubject, ratings, sphere, write_cache
from csvdnet.config import (Config, DataConfig, InferenceConfig, LossConfig, ModelConfig,
                            TrainConfig, dump_config, load_config)
from csvdnet.errors import CsvdnetInputError
from csvdnet.losses import MultiTaskLoss
from csvdnet.models import build_model
from csvdnet.training import fit
from csvdnet.run.layout import WEIGHTS_NAME
from csvdnet.training.checkpoints import ema_weights
from csvdnet.evaluation.heldout import evaluate_run
from csvdnet.training.plan import check_config, split_subjects
from csvdnet.run.precision import cpu_has_bf16, resolve_policy
from csvdnet.training.signals import stop_on_signals
from csvdnet.training.step import replica_objective
from csvdnet.training.strategy import cluster_workers, make_strategy
from csvdnet.training.summaries import TASK_COLOURS, overlay, overlay_images
from csvdnet.evaluation.validation import selection_score, validate

TESTS = Path(__file__).parent
SHAPE = (16, 16, 16)
CHANNELS = ("flair", "swi")
TINY = ModelConfig(input_channels=2, base_filters=4, depth=2, blocks_per_level=(1, 1, 1),
                   dropout=0.0)
WINDOWS = InferenceConfig(window=(8, 8, 8), overlap=0.5)  # validation slides 27 windows


def make_subject(rng: np.random.Generator, name: str, centre: tuple[int, int, int],
                 score: int | None) -> FakeSubject:
    """A WMH ball bright on FLAIR and one microbleed dark on SWI, on noise."""
    wmh = sphere(SHAPE, centre, 3)
    cmb = [float(16 - c) for c in centre]
    image = 0.3 * rng.normal(size=SHAPE + (2,))
    image[..., 0] += 3.0 * wmh
    image[..., 1] -= 3.0 * sphere(SHAPE, cmb, 1)
    return FakeSubject(name, image, masks={"wmh": wmh}, points={"cmb": [cmb]},
                       ratings=ratings(score))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    subjects = [make_subject(rng, f"s{i}", (5 + 2 * i, 8, 7 + i), i % 3) for i in range(4)]
    return write_cache(tmp_path_factory.mktemp("training") / "cache", subjects, CHANNELS)


def make_cfg(cache: Path, run_dir: Path, **train) -> Config:
    """Tiny run: 16^3 patches (the whole volume), whole brains every 3rd batch, 1 val subject,
    validated by 8^3 sliding windows."""
    data = DataConfig(cache=str(cache), channels=CHANNELS, patch_size=SHAPE, whole_brain_every=3,
                      val_fraction=0.25)
    train = {"run_dir": str(run_dir), "epochs": 2, "steps_per_epoch": 3, "batch_size": 2,
             "warmup_steps": 2, "mixed_precision": "float32", **train}
    return Config(data=data, model=TINY, train=TrainConfig(**train), inference=WINDOWS)


def run_script(code: str, tmp_path: Path, *args: Path, wait: bool = True) -> subprocess.Popen:
    """Run ``code`` with ``args`` in a fresh Python that imports csvdnet and the test helpers."""
    script = tmp_path / f"script_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        process.wait(timeout=300)
    return process


def read_events(folder: Path) -> dict[str, list[tuple[int, object]]]:
    """``{tag: [(step, value)]}`` from the event files of ``folder`` (scalars as floats,
    images as their (width, height))."""
    found: dict[str, list[tuple[int, object]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name == "images":
                    item = (int(tensor[0]), int(tensor[1]))
                else:
                    item = float(tensor)
                found.setdefault(value.tag, []).append((event.step, item))
    return found


def checkpoint_values(run_dir: Path) -> dict[str, int]:
    """Step, epoch and optimizer iterations of the latest checkpoint."""
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    names = [n for n, _ in tf.train.list_variables(str(run_dir / "checkpoints"))]
    iterations = next(n for n in names if n.startswith("optimizer/") and "iteration" in n)
    return {"step": int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")),
            "epoch": int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")),
            "iterations": int(reader.get_tensor(iterations))}


# ---------------------------------------------------------------------------------------------
# Bad configs fail before any compute, with the key or file at fault.

@pytest.mark.parametrize("change, match", [
    (lambda c: dataclasses.replace(c, data=dataclasses.replace(c.data, channels=("flair", "dwi"))),
     "dwi, which the cache does not hold"),
    (lambda c: dataclasses.replace(c, model=dataclasses.replace(c.model, input_channels=3)),
     "model.input_channels: is 3 but data.channels names 2"),
    (lambda c: dataclasses.replace(c, data=dataclasses.replace(c.data, cache=None)),
     "data.cache: not set"),
    (lambda c: dataclasses.replace(c, data=dataclasses.replace(c.data, cache="/nonexistent/x")),
     "cache folder not found"),
    (lambda c: dataclasses.replace(c, data=dataclasses.replace(c.data, patch_size=(16, 16, 6))),
     "data.patch_size: must be multiples of 2 \\*\\* model.depth = 4"),
    (lambda c: dataclasses.replace(c, losses=LossConfig(task_weights={"lacune": 1.0})),
     "no training subject has a label for any task"),
    (lambda c: dataclasses.replace(c, inference=InferenceConfig(window=(16, 16, 10))),
     "inference.window: must be multiples of 2 \\*\\* model.depth = 4"),
])
def test_bad_config_fails_before_any_compute(cache, tmp_path, change, match):
    cfg = change(make_cfg(cache, tmp_path / "run"))
    with pytest.raises(CsvdnetInputError, match=match):
        fit(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_caches_that_cannot_train(tmp_path):
    (tmp_path / "notacache").mkdir()
    with pytest.raises(CsvdnetInputError, match="not a csvdnet cache"):
        fit(make_cfg(tmp_path / "notacache", tmp_path / "run"), progress=False)
    subject = make_subject(np.random.default_rng(0), "s", (8, 8, 8), None)
    coarse = write_cache(tmp_path / "coarse", [subject], CHANNELS, pad_multiple=2)
    with pytest.raises(CsvdnetInputError, match="padded to multiples of 2, not of 2 \\*\\* "
                                                "model.depth = 4"):
        fit(make_cfg(coarse, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe", sorted((TESTS.parent / "training" / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_recipes_load_and_pass_the_checks(recipe):
    cfg = load_config(recipe)
    check_config(cfg, replicas=1)
    assert cfg.data.cache and cfg.train.run_dir
    # The CPU demo picks its precision by the hardware (bfloat16 only with bf16 units).
    if recipe.name == "synthetic-demo.yaml":
        assert cfg.train.mixed_precision == "auto"


def test_batch_must_split_over_the_replicas(cache, tmp_path):
    cfg = make_cfg(cache, tmp_path, batch_size=3)
    check_config(cfg, replicas=1)
    with pytest.raises(CsvdnetInputError, match="train.batch_size: must be a positive multiple "
                                                "of the 2 replicas, got 3"):
        check_config(cfg, replicas=2)


def test_split_is_deterministic_and_keeps_both_sides():
    ids = [f"s{i:02d}" for i in range(10)]
    train, val = split_subjects(reversed(ids), 0.2, seed=3)
    assert (train, val) == split_subjects(ids, 0.2, seed=3) and len(val) == 2
    assert sorted(train + val) == ids and split_subjects(ids, 0.2, seed=4)[1] != val
    assert split_subjects(["a"], 0.5, 0) == (["a"], [])
    assert split_subjects(["a", "b"], 0.9, 0)[0] != []


# ---------------------------------------------------------------------------------------------
# Strategy, precision, signals.

def test_strategy_from_name_and_tf_config(monkeypatch):
    assert cluster_workers({}) == 1
    two = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                      "task": {"type": "chief", "index": 0}})
    assert cluster_workers({"TF_CONFIG": two}) == 2
    with pytest.raises(CsvdnetInputError, match="TF_CONFIG"):
        cluster_workers({"TF_CONFIG": "[1, 2]"})
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert make_strategy("auto").num_replicas_in_sync == 1
    with pytest.raises(CsvdnetInputError, match="train.strategy"):
        make_strategy("tpu")


def test_precision_policy(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_bf16(cpuinfo) and not cpu_has_bf16(tmp_path / "missing")
    assert resolve_policy("mixed_float16") == "mixed_float16"
    if not tf.config.list_physical_devices("GPU"):
        assert resolve_policy("auto", cpuinfo) == "mixed_bfloat16"
        cpuinfo.write_text("flags\t\t: fpu avx2\n")
        assert resolve_policy("auto", cpuinfo) == "float32"
    with pytest.raises(CsvdnetInputError, match="train.mixed_precision"):
        resolve_policy("int8")


def test_stop_signal_sets_a_flag_instead_of_raising():
    previous = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == previous


# ---------------------------------------------------------------------------------------------
# The objective, EMA and the validation metrics.

@pytest.mark.parametrize("weighting,dice", [("fixed", "per_sample"), ("uncertainty", "per_sample"),
                                            ("fixed", "positive"), ("uncertainty", "positive")])
def test_replica_objective_on_one_replica_is_the_multitask_loss(weighting, dice):
    rng = np.random.default_rng(1)
    loss = MultiTaskLoss(weighting=weighting, dice=dice)
    if weighting == "uncertainty":
        for i, log_var in enumerate(loss.log_vars.values()):
            log_var.assign(0.1 * i - 0.2)
    targets = {t: (rng.random((4, 8, 8, 8, 1)) > 0.9).astype("float32")
               for t in ("wmh", "rssi", "cmb")}
    targets["wmh"][2] = 0.0  # a lesion-free labelled sample: the "positive" Dice skips it
    targets["score"] = np.array([[1, 1, 0, 0], [0] * 4, [1] * 4, [1, 0, 0, 0]], "float32")
    outputs = {t: rng.uniform(0.05, 0.95, (4, 8, 8, 8, 1)).astype("float32") for t in targets}
    outputs["score"] = rng.normal(size=(4, 4)).astype("float32")
    weights = {"wmh": np.ones(4, "float32"), "rssi": np.array([0, 1, 0, 1], "float32"),
               "cmb": np.zeros(4, "float32"), "score": np.array([1, 0, 0, 1], "float32")}
    counts = loss.term_counts(targets, weights)
    assert [float(c) for c in counts["wmh"]] == ([3.0, 4.0] if dice == "positive" else [4.0])
    expected = loss(targets, outputs, weights)
    shares = replica_objective(loss, targets, outputs, weights, counts, replicas=1)
    assert set(shares) == set(expected)
    for key in expected:
        np.testing.assert_allclose(float(shares[key]), float(expected[key]), rtol=1e-5)


def test_ema_weights_are_swapped_in_and_back():
    variable = keras.Variable(np.zeros(3, "float32"))
    optimizer = keras.optimizers.AdamW(0.1, use_ema=True, ema_momentum=0.5)
    optimizer.build([variable])
    for _ in range(3):
        optimizer.apply([tf.ones(3)], [variable])
    trained = variable.numpy()
    with ema_weights(optimizer, [variable]):
        averaged = variable.numpy()
    assert np.all(averaged > trained) and np.array_equal(variable.numpy(), trained)


def test_selection_score():
    assert selection_score([0.8, 0.4, 0.6]) == pytest.approx(0.6)
    assert np.isnan(selection_score([]))


def test_validation_of_a_perfect_and_of_an_empty_predictor():
    rng = np.random.default_rng(3)
    subjects = []
    for score in (1, 3):
        wmh = sphere((8, 8, 8), rng.integers(2, 6, 3), 2).astype("float32")[None, ..., None]
        cmb = np.zeros((1, 8, 8, 8, 1), "float32")
        cmb[0, 2, 5, 3] = 1.0
        cmb[0, 2, 5, 4] = 0.6
        levels = (np.arange(4) < score).astype("float32")[None]
        targets = {"wmh": wmh, "rssi": np.zeros_like(wmh), "cmb": cmb, "score": levels}
        subjects.append((rng.normal(size=(1, 8, 8, 8, 2)).astype("float32"), targets,
                         {t: np.ones(1, "float32") for t in targets}))
    tasks, spacing = ("wmh", "rssi", "cmb", "score"), [(1.0, 1.0, 1.0)] * 2
    thresholds = {"wmh": 0.5, "rssi": 0.5, "cmb": 0.3}
    truth = {id(s[0]): s[1] for s in subjects}

    def perfect(image):
        return {**truth[id(image)], "score": 20.0 * truth[id(image)]["score"] - 10.0}

    def empty(image):
        return {t: np.zeros_like(v) - (10.0 if t == "score" else 0.0)
                for t, v in truth[id(image)].items()}

    loss = MultiTaskLoss()
    result = validate(perfect, subjects, loss, tasks, spacing, thresholds, num_classes=5)
    assert result.metrics == {"dice_wmh": 1.0, "dice_rssi": 1.0, "lesion_f1_wmh": 1.0,
                              "lesion_f1_rssi": 1.0, "f1_cmb": 1.0, "score_accuracy": 1.0,
                              "score_kappa": 1.0, "selection": 1.0}
    assert set(result.losses) == set(tasks)
    np.testing.assert_array_equal(result.example[0], subjects[0][0][0])
    # The hardest subject is the image summaries' example: the second, predicted empty.
    mixed = validate(lambda image: perfect(image) if image is subjects[0][0] else empty(image),
                     subjects, loss, tasks, spacing, thresholds, num_classes=5)
    assert mixed.example_index == 1
    np.testing.assert_array_equal(mixed.example[0], subjects[1][0][0])
    result = validate(empty, subjects, loss, tasks, spacing, thresholds, num_classes=5)
    # RSSI is absent from every reference: its Dice (1, nothing predicted) is not selected.
    assert result.metrics == {"dice_wmh": 0.0, "dice_rssi": 1.0, "lesion_f1_wmh": 0.0,
                              "lesion_f1_rssi": 1.0, "f1_cmb": 0.0, "score_accuracy": 0.0,
                              "score_kappa": 0.0, "selection": 0.0}


def test_validation_drops_small_components_and_selects_lesion_f1_for_small_lesions():
    # One subject, 2 mm voxels (8 mm3 each): a true lacune of 2 voxels, predicted exactly, plus a
    # 1-voxel false positive far away; WMH: a 3-voxel line predicted as its first 2 voxels.
    lacune = np.zeros((1, 10, 10, 10, 1), "float32")
    lacune[0, 2, 2, 2:4] = 1.0
    wmh = np.zeros_like(lacune)
    wmh[0, 6, 6, 5:8] = 1.0
    predicted_lacune = lacune.copy()
    predicted_lacune[0, 8, 8, 8] = 0.9
    predicted_wmh = wmh.copy()
    predicted_wmh[0, 6, 6, 7] = 0.0
    targets = {"wmh": wmh, "lacune": lacune}
    outputs = {"wmh": predicted_wmh, "lacune": predicted_lacune}
    subject = (np.zeros((1, 10, 10, 10, 1), "float32"), targets,
               {t: np.ones(1, "float32") for t in targets})
    args = (lambda image: outputs, [subject], MultiTaskLoss(), ("wmh", "lacune"),
            [(2.0, 2.0, 2.0)], {"wmh": 0.5, "lacune": 0.5})
    kept = validate(*args, num_classes=5, per_subject=True)
    # Lacune: Dice 2*2/(3+2) = 0.8; lesions 1 true (found), 2 predicted (1 hit): p 0.5, r 1.
    assert kept.metrics["dice_lacune"] == pytest.approx(0.8)
    assert kept.metrics["lesion_f1_lacune"] == pytest.approx(2 / 3)
    # WMH: Dice 2*2/(2+3) = 0.8; selection = mean(WMH Dice, lacune lesion F1).
    assert kept.metrics["dice_wmh"] == pytest.approx(0.8)
    assert kept.metrics["selection"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert kept.subjects == [{"dice_wmh": pytest.approx(0.8), "volume_voxels_wmh": 3.0,
                              "lesions_true_wmh": 1, "lesions_detected_wmh": 1,
                              "lesions_predicted_wmh": 1, "lesions_hit_wmh": 1,
                              "dice_lacune": pytest.approx(0.8), "volume_voxels_lacune": 2.0,
                              "lesions_true_lacune": 1, "lesions_detected_lacune": 1,
                              "lesions_predicted_lacune": 2, "lesions_hit_lacune": 1}]
    # 10 mm3 drops the 8 mm3 false positive but keeps the 16 mm3 lacune.
    dropped = validate(*args, num_classes=5, min_lesion_mm3={"lacune": 10.0})
    assert dropped.metrics["dice_lacune"] == 1.0 and dropped.metrics["lesion_f1_lacune"] == 1.0
    assert dropped.subjects == []


def test_overlay_colours_masks_and_picks_the_lesion_slice():
    grey = np.full((4, 5), 0.5)
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True
    rgb = overlay(grey, {"wmh": mask})
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (128, 128, 128) and rgb[1, 2, 0] > rgb[1, 2, 1]
    image = np.random.default_rng(0).normal(size=(8, 6, 10, 2)).astype("float32")
    truth = np.zeros((8, 6, 10, 1), "float32")
    truth[3, 2, 7] = 1.0
    panels = overlay_images(image, CHANNELS, {"wmh": truth}, {"wmh": truth}, {"wmh": 0.5})
    assert set(panels) == {"flair"} and panels["flair"].shape == (6, 16, 3)
    # Slice z = 7 was picked: the lesion shows in both halves in the WMH colour.
    for half in (panels["flair"][:, :8], panels["flair"][:, 8:]):
        pixel = half[6 - 1 - 2, 3]
        assert pixel[0] > pixel[1] and pixel[0] >= 0.55 * TASK_COLOURS["wmh"][0]
    # With errors, the slice where the prediction is most wrong: 3 false voxels at z = 2.
    wrong = truth.copy()
    wrong[1, 1:4, 2] = 1.0
    panels = overlay_images(image, CHANNELS, {"wmh": truth}, {"wmh": wrong}, {"wmh": 0.5})
    truth_half, predicted_half = panels["flair"][:, :8], panels["flair"][:, 8:]
    rows = [6 - 1 - y for y in (1, 2, 3)]
    assert all(predicted_half[r, 1, 0] > predicted_half[r, 1, 1] for r in rows)
    assert not any(truth_half[r, 1, 0] > truth_half[r, 1, 1] for r in rows)


# ---------------------------------------------------------------------------------------------
# Runs.

@pytest.fixture(scope="module")
def one_epoch(cache, tmp_path_factory):
    """A finished 1-epoch run with EMA: its directory and result (tests copy it to change it)."""
    run_dir = tmp_path_factory.mktemp("one_epoch") / "run"
    return run_dir, fit(make_cfg(cache, run_dir, epochs=1, ema=True), progress=False)


def test_run_directory_tensorboard_and_weights(cache, one_epoch):
    run_dir, result = one_epoch
    assert (result.step, result.epoch, result.interrupted) == (3, 1, False)
    assert result.policy == "float32" and result.replicas == 1
    assert (run_dir / "config.yaml").read_text() == dump_config(make_cfg(cache, run_dir,
                                                                         epochs=1, ema=True))
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["validation"]) == 1 and len(split["train"]) == 3
    record = json.loads((run_dir / "preprocess.json").read_text())  # the cache's, copied
    assert record["channels"] == list(CHANNELS) and record["pad_multiple"] == 8
    assert record["preprocess"] == json.loads((cache / "index.json").read_text())["preprocess"]
    for folder in ("best", "last"):
        assert (run_dir / folder / WEIGHTS_NAME).is_file()
    assert json.loads((run_dir / "best" / "metrics.json").read_text())["step"] == 3
    train = read_events(run_dir / "logs" / "train")
    for tag in ("loss/total", "loss/wmh", "loss/cmb", "loss/score", "learning_rate"):
        assert [s for s, _ in train[tag]] == [3], tag
    assert train["loss/total"][0][1] == pytest.approx(result.history[0]["loss/total"])
    validation = read_events(run_dir / "logs" / "validation")
    for tag in ("loss/wmh", "metrics/dice_wmh", "metrics/f1_cmb", "metrics/score_accuracy",
                "metrics/score_kappa", "metrics/selection"):
        assert [s for s, _ in validation[tag]] == [3], tag
    # Truth | prediction panels of the 16^3 validation subject: 32 wide, 16 high.
    assert validation["overlay/flair"] == [(3, (32, 16))]
    assert validation["overlay/swi"] == [(3, (32, 16))]
    build_model(TINY).load_weights(run_dir / "best" / WEIGHTS_NAME)
    with pytest.raises(CsvdnetInputError, match="already holds a training run"):
        fit(make_cfg(cache, run_dir, epochs=1, ema=True), progress=False)


def test_heldout_evaluation_repeats_the_runs_validation(cache, one_epoch, tmp_path):
    run_dir, _ = one_epoch
    split = json.loads((run_dir / "split.json").read_text())
    best = json.loads((run_dir / "best" / "metrics.json").read_text())
    # On the validation subject alone, the best (EMA) weights give what validation logged.
    held = evaluate_run(run_dir, cache, subjects=split["validation"])
    assert held.metrics == pytest.approx(best["metrics"])
    assert held.losses == pytest.approx({k.split("/")[1]: v for k, v in
                                         one_epoch[1].history[0].items() if "val_loss" in k})
    # Validation slid the run's 8^3 windows: one whole 16^3 window predicts otherwise.
    whole = evaluate_run(run_dir, cache, subjects=split["validation"], window=(16, 16, 16))
    assert whole.losses["wmh"] != pytest.approx(held.losses["wmh"], rel=1e-3)
    assert held.subjects == tuple(split["validation"]) and held.policy == "float32"
    assert set(held.tasks) == {"wmh", "cmb", "score"}
    everyone = evaluate_run(run_dir, cache, weights="last")
    assert everyone.subjects == ("s0", "s1", "s2", "s3") and len(everyone.per_subject) == 4
    row = everyone.per_subject[0]
    assert row["lesions_true_wmh"] == 1 and row["tp_cmb"] + row["fn_cmb"] == 1
    assert row["score_true"] == 0
    assert json.loads(json.dumps(everyone.to_dict()))["per_subject"]["s3"]["score_true"] == 0
    with pytest.raises(CsvdnetInputError, match="not a training run"):
        evaluate_run(tmp_path, cache)
    with pytest.raises(CsvdnetInputError, match="no last weights"):
        shutil.copytree(run_dir, tmp_path / "copy")
        shutil.rmtree(tmp_path / "copy" / "last")
        evaluate_run(tmp_path / "copy", cache, weights="last")
    with pytest.raises(CsvdnetInputError, match="not a csvdnet cache"):
        evaluate_run(run_dir, tmp_path)


def test_calibration_agrees_with_the_held_out_check(cache, one_epoch, tmp_path, monkeypatch):
    # The calibrated value of a task is what evaluate_run measures on the same validation
    # subjects at the chosen threshold (one path for the metric, not two).
    from csvdnet.evaluation import calibrate as calibration

    monkeypatch.setattr(calibration, "MIN_LESIONS", 1)  # the fake validation subject has one
    run_dir = tmp_path / "run"
    shutil.copytree(one_epoch[0], run_dir)
    validation = json.loads((run_dir / "split.json").read_text())["validation"]
    record = calibration.calibrate_run(run_dir)
    assert set(record["tasks"]) == {"wmh", "cmb"}  # the dense tasks with lesions in validation
    held = evaluate_run(run_dir, cache, subjects=validation)  # now with calibration.json
    for task, metric in (("wmh", "dice_wmh"), ("cmb", "f1_cmb")):
        found = record["tasks"][task]
        if found["calibrated"]:
            assert found["value"] == pytest.approx(held.metrics[metric], abs=1e-6)
        else:  # found at no threshold by a one-epoch network
            assert found["reason"].startswith("nothing found") and held.metrics[metric] == 0.0
    assert record["thresholds"]["rssi"] == 0.5 and record["thresholds"]["epvs"] == 0.3  # kept


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(cache, one_epoch, tmp_path):
    # The 1-epoch run's schedule (2 warm-up steps, then the peak) is also the first epoch of a
    # 2-epoch run's, so resuming it for a second epoch must reproduce the 2-epoch run.
    run_dir = tmp_path / "resumed"
    shutil.copytree(one_epoch[0], run_dir)
    straight = fit(make_cfg(cache, tmp_path / "straight", epochs=2, ema=True), progress=False)
    with pytest.raises(CsvdnetInputError, match="cannot resume with train.learning_rate"):
        fit(make_cfg(cache, run_dir, epochs=2, ema=True, learning_rate=0.1), resume=True,
            progress=False)
    resumed = fit(make_cfg(cache, run_dir, epochs=2, ema=True), resume=True, progress=False)
    assert (resumed.step, resumed.epoch) == (6, 2) and [h["epoch"] for h in resumed.history] == [2]
    assert checkpoint_values(run_dir) == {"step": 6, "epoch": 2, "iterations": 6}
    # Same data position, optimizer moments and EMA: the same numbers as without the stop.
    assert resumed.history[0]["loss/total"] == pytest.approx(straight.history[1]["loss/total"],
                                                             rel=1e-4)
    reader_a = tf.train.load_checkpoint(str(tmp_path / "straight" / "checkpoints"))
    reader_b = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    for name, _ in tf.train.list_variables(str(tmp_path / "straight" / "checkpoints")):
        if name.startswith(("network/", "optimizer/")):
            np.testing.assert_allclose(reader_a.get_tensor(name), reader_b.get_tensor(name),
                                       rtol=1e-4, atol=1e-6, err_msg=name)


MIRRORED = """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from test_training import make_cfg
    from csvdnet.losses import MultiTaskLoss
    from csvdnet.training import fit
    from csvdnet.training.step import _skip_together, replica_objective
    from csvdnet.training.strategy import make_strategy

    result = fit(make_cfg(sys.argv[1], sys.argv[2], epochs=1, strategy="mirrored", ema=True),
                 progress=False)

    strategy = make_strategy("mirrored")  # the one fit used: a second would break collectives
    # Labels spread unevenly over the two replicas: the shares still add up to the global loss.
    rng = np.random.default_rng(0)
    targets = {"wmh": (rng.random((4, 8, 8, 8, 1)) > 0.8).astype("float32"),
               "score": np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0] * 4, [1] * 4], "float32")}
    targets["wmh"][1] = 0.0  # replica 0: one lesion sample of two labelled; replica 1: one of one
    outputs = {"wmh": rng.uniform(0.1, 0.9, (4, 8, 8, 8, 1)).astype("float32"),
               "score": rng.normal(size=(4, 4)).astype("float32")}
    weights = {"wmh": np.array([1, 1, 0, 1], "float32"),
               "score": np.array([1, 0, 0, 0], "float32")}
    with strategy.scope():
        loss = MultiTaskLoss(weighting="uncertainty", dice="positive")

    def shares():
        context = tf.distribute.get_replica_context()
        i = context.replica_id_in_sync_group
        part = lambda d: {k: tf.constant(v)[2 * i:2 * i + 2] for k, v in d.items()}
        counts = context.all_reduce("sum", loss.term_counts(part(targets), part(weights)))
        return replica_objective(loss, part(targets), part(outputs), part(weights), counts, 2)

    def overflow_on_second_replica():
        i = tf.distribute.get_replica_context().replica_id_in_sync_group
        return _skip_together([tf.cast(i, tf.float32) * tf.constant([np.inf, 1.0])])

    per_replica = tf.function(lambda: strategy.run(shares))()
    summed = {k: float(strategy.reduce("sum", v, axis=None)) for k, v in per_replica.items()}
    expected = {k: float(v) for k, v in loss(targets, outputs, weights).items()}
    grads = tf.function(lambda: strategy.run(overflow_on_second_replica))()
    poisoned = [bool(np.all(~np.isfinite(g[0].numpy())))
                for g in strategy.experimental_local_results(grads)]
    print(json.dumps({"summed": summed, "expected": expected, "poisoned": poisoned,
                      "replicas": result.replicas, "step": result.step,
                      "reused": make_strategy("mirrored") is strategy,
                      "loss": result.history[0]["loss/total"]}))
"""


def test_mirrored_strategy_on_two_logical_cpus(cache, tmp_path):
    process = run_script(MIRRORED, tmp_path, cache, tmp_path / "run")
    output = process.stdout.read()
    assert process.returncode == 0, output[-3000:]
    report = json.loads(output.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["step"] == 3 and np.isfinite(report["loss"])
    assert report["summed"] == pytest.approx(report["expected"], rel=1e-5)
    assert report["poisoned"] == [True, True] and report["reused"]
    assert (tmp_path / "run" / "last" / WEIGHTS_NAME).is_file()


SIGNALLED = """
    import json, sys
    from test_training import make_cfg
    from csvdnet.training import fit
    result = fit(make_cfg(sys.argv[1], sys.argv[2], epochs=1000, steps_per_epoch=2),
                 resume=True, progress=False)
    print(json.dumps({"step": result.step, "interrupted": result.interrupted}))
"""


def wait_for_checkpoint(run_dir: Path, after: int, process: subprocess.Popen) -> int:
    """Poll until the run has a checkpoint newer than step ``after``; returns its step."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        if latest and int(latest.rsplit("-", 1)[1]) > after:
            return int(latest.rsplit("-", 1)[1])
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint after step {after}: {process.stdout.read()[-3000:]}")


@pytest.mark.slow
def test_sigterm_saves_and_sigkill_loses_at_most_an_epoch(cache, tmp_path):
    run_dir = tmp_path / "run"
    # SIGTERM: the loop saves at the next step and returns normally.
    process = run_script(SIGNALLED, tmp_path, cache, run_dir, wait=False)
    wait_for_checkpoint(run_dir, 0, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    report = json.loads(output.strip().splitlines()[-1])
    assert report["interrupted"] and checkpoint_values(run_dir)["step"] == report["step"]
    # SIGKILL after the resumed run's first epoch checkpoint: nothing beyond it is needed.
    process = run_script(SIGNALLED, tmp_path, cache, run_dir, wait=False)
    saved = wait_for_checkpoint(run_dir, report["step"], process)
    process.kill()
    process.wait(timeout=60)
    state = checkpoint_values(run_dir)
    assert state["step"] >= saved and state["step"] == state["iterations"]
    resumed = fit(make_cfg(cache, run_dir, epochs=state["step"] // 2 + 1, steps_per_epoch=2),
                  resume=True, progress=False)
    assert resumed.history[0]["epoch"] == state["step"] // 2 + 1
    assert checkpoint_values(run_dir) == {"step": resumed.step, "epoch": resumed.epoch,
                                          "iterations": resumed.step}


@pytest.mark.slow
def test_tiny_model_overfits_two_subjects(tmp_path):
    rng = np.random.default_rng(2)
    subjects = [make_subject(rng, "a", (5, 8, 8), 1), make_subject(rng, "b", (10, 7, 9), 2)]
    cache = write_cache(tmp_path / "cache", subjects, CHANNELS)
    cfg = make_cfg(cache, tmp_path / "run", epochs=20, steps_per_epoch=10, warmup_steps=10,
                   learning_rate=5e-3, val_cache=str(cache), validate_every=5)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, augment=False, modality_dropout=0.0,
                                      whole_brain_every=0),
        losses=LossConfig(task_weights={"wmh": 1.0}),
        # Validate with the training patch (the whole 16^3 volume): 8^3 windows would show the
        # network other GroupNorm statistics than it trained on (Dice 0.53 instead of > 0.9).
        inference=InferenceConfig(window=SHAPE))
    result = fit(cfg, progress=False)
    first, last = result.history[0]["loss/wmh"], result.history[-1]["loss/wmh"]
    assert last < first / 10, (first, last)
    assert result.history[-1]["val/dice_wmh"] > 0.9
    assert result.best["metrics"]["dice_wmh"] > 0.9


def test_epoch_line_gives_eta_and_each_tasks_selected_metric():
    from csvdnet.training.fit import epoch_line

    record = {"epoch": 5, "step": 500, "loss/total": 3.21234, "val/dice_wmh": 0.71,
              "val/lesion_f1_wmh": 0.2, "val/lesion_f1_lacune": 0.125, "val/f1_cmb": 0.3,
              "val/score_kappa": 0.4, "val/selection": 0.45}
    assert epoch_line(record, 30, 1.25, 3725.0) == (
        "epoch 5/30 step 500 (1.25 s/step, ETA 1 h 02 min): loss 3.212 | val wmh dice 0.710, "
        "lacune lesion f1 0.125, cmb f1 0.300, score kappa 0.400, selection 0.450")
    assert epoch_line({"epoch": 1, "step": 100, "loss/total": 2.0}, 30, 0.5, 90.0) == (
        "epoch 1/30 step 100 (0.50 s/step, ETA 2 min): loss 2")
