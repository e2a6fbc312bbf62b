"""Export: the SavedModel reproduces the Keras model, carries its metadata, and is verified on load.

The tiny run (tests/_tiny_run.py) is exported once per session by ``csvdnet export``
(conftest ``exported_model``); tests that alter an export work on a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from csvdnet.errors import CsvdnetInputError
from csvdnet.export.verify import (FIELDS_DIGEST_KEY, METADATA_NAME, MODEL_FORMAT_VERSION,
                                   SHIPPED_METADATA_SHA256, SIGNATURES, fields_sha256,
                                   file_sha256, find_version_dir, model_identity, verify_model)

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def loaded(exported_model):
    import tensorflow as tf

    return tf.saved_model.load(str(exported_model))


@pytest.fixture(scope="module")
def keras_model(tiny_run):
    from csvdnet.run.network import load_network
    from csvdnet.run.precision import dtype_policy
    from csvdnet.run.record import run_config

    run = tiny_run[1]
    with dtype_policy("float32"):
        return load_network(run, run_config(run), "best")


def _copy(exported_model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "tiny" / "1"
    shutil.copytree(exported_model, target)
    return target


def test_round_trip_matches_the_keras_model_on_a_size_off_the_stride(loaded, keras_model,
                                                                      exported_model):
    import tensorflow as tf

    from csvdnet.scoring import ordinal_probabilities

    metadata = json.loads((exported_model / METADATA_NAME).read_text())
    stride = metadata["stride"]
    assert stride == 4
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, 18, 21, 13, 5)).astype(np.float32)  # no axis a multiple of 4
    out = {k: v.numpy() for k, v in loaded.signatures["serving_default"](
        image=tf.constant(image)).items()}
    # The reference: pad with zeros at the high end by hand, run Keras, crop back.
    padded = np.pad(image, [(0, 0), (0, 2), (0, 3), (0, 3), (0, 0)])
    expected = {k: np.asarray(v) for k, v in keras_model(padded, training=False).items()}
    for task in ("wmh", "rssi", "lacune", "cmb", "epvs"):
        assert out[task].shape == (2, 18, 21, 13, 1)
        np.testing.assert_allclose(out[task], expected[task][:, :18, :21, :13], atol=TOLERANCE)
    np.testing.assert_allclose(out["score_logits"], expected["score"], atol=TOLERANCE)
    np.testing.assert_allclose(out["score_probs"],
                               ordinal_probabilities(expected["score"])[0], atol=TOLERANCE)

    score = loaded.signatures["score"](image=tf.constant(image))
    assert sorted(score) == ["score_logits", "score_probs"]
    np.testing.assert_allclose(score["score_logits"].numpy(), out["score_logits"], atol=1e-6)

    raw = loaded.signatures["serve_bytes"](image_bytes=tf.constant(image.tobytes()),
                                           shape=tf.constant(image.shape, tf.int32))
    for name, value in out.items():
        np.testing.assert_array_equal(raw[name].numpy(), value)


def test_layout_metadata_and_card(exported_model, tiny_run):
    assert exported_model.name == "1" and exported_model.parent.name == "tiny"
    assert (exported_model / "saved_model.pb").is_file()
    assert (exported_model / "variables" / "variables.index").is_file()
    metadata = json.loads((exported_model / METADATA_NAME).read_text())
    record = json.loads((tiny_run[1] / "preprocess.json").read_text())
    assert metadata["format_version"] == MODEL_FORMAT_VERSION
    assert (metadata["name"], metadata["version"]) == ("tiny", 1)
    assert metadata["channels"] == record["channels"]
    assert metadata["spacing"] == record["preprocess"]["spacing"] == [4.0, 4.0, 4.0]
    assert metadata["preprocess"] == record["preprocess"]
    assert metadata["window"] == [16, 16, 16] and metadata["overlap"] == 0.25
    assert metadata["precision"] == "float32"
    assert metadata["modality_dropout"] == pytest.approx(0.1)
    assert metadata["training"]["description"] == "tiny synthetic run"
    assert set(metadata["versions"]) >= {"csvdnet", "tensorflow", "keras"}
    assert set(metadata["signatures"]) == set(SIGNATURES)
    assert "--description" in metadata["command"]
    files = sorted(p.relative_to(exported_model).as_posix()
                   for p in exported_model.rglob("*") if p.is_file())
    assert sorted(metadata["files"]) == [f for f in files if f != METADATA_NAME]
    for name, digest in metadata["files"].items():
        assert file_sha256(exported_model / name) == digest
    card = (exported_model / "MODEL_CARD.md").read_text()
    assert "not for clinical use" in card and "tiny synthetic run" in card
    assert "flair, t1, t2, swi, dwi" in card


def test_an_existing_version_is_never_overwritten(exported_model, tiny_run):
    from csvdnet.export.archive import _next_version, export_run

    with pytest.raises(CsvdnetInputError, match="already exists"):
        export_run(tiny_run[1], exported_model.parent, version=1)
    assert _next_version(exported_model.parent) == 2
    with pytest.raises(CsvdnetInputError, match="precision"):
        export_run(tiny_run[1], exported_model.parent, precision="float8")


def test_a_killed_exports_part_folder_is_removed_a_live_ones_kept(exported_model, tiny_run,
                                                                    tmp_path):
    from csvdnet.export import export_run

    copy = _copy(exported_model, tmp_path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = copy.parent / f".2.{int(finished.stdout)}.0badc0de.part"  # a kill -9'd export
    (dead / "variables").mkdir(parents=True)
    (dead / "saved_model.pb").write_bytes(b"half")
    live = copy.parent / f".3.{os.getpid()}.c0ffee00.part"  # an export still writing
    live.mkdir()

    with pytest.raises(CsvdnetInputError, match="already exists"):
        export_run(tiny_run[1], copy.parent, version=1)

    assert not dead.exists() and live.is_dir()
    assert sorted(p.name for p in copy.parent.iterdir()) == [live.name, "1"]


def test_name_folder_resolves_to_its_highest_version(exported_model, tmp_path):
    copy = _copy(exported_model, tmp_path)
    shutil.copytree(copy, copy.parent / "10")
    assert find_version_dir(copy.parent) == copy.parent / "10"  # numeric, not string, order
    assert verify_model(copy.parent)[0] == copy.parent / "10"


@pytest.mark.parametrize("damage, message", [
    ("tamper", r"variables\.index: sha256 differs .* altered"),
    ("missing", r"fingerprint\.pb: missing"),
    ("foreign", r"extra\.py: not part of the exported model .* foreign"),
    ("future", rf"metadata\.json: format_version {MODEL_FORMAT_VERSION + 1} is newer"),
    ("not_ours", r"metadata\.json: not a csvdnet model"),
    ("escape", r"metadata\.json: files: '\.\./x' is not a plain path"),
    ("link", r"link\.pb: is a symbolic link"),
])
def test_damaged_exports_are_refused_naming_the_file(exported_model, tmp_path, damage,
                                                      message):
    copy = _copy(exported_model, tmp_path)
    meta_path = copy / METADATA_NAME
    metadata = json.loads(meta_path.read_text())
    if damage == "tamper":
        with open(copy / "variables" / "variables.index", "ab") as handle:
            handle.write(b"\0")
    elif damage == "missing":
        (copy / "fingerprint.pb").unlink()
    elif damage == "foreign":
        (copy / "variables" / "extra.py").write_text("import os\n")
    elif damage == "link":
        os.symlink(copy / "saved_model.pb", copy / "link.pb")
    else:
        if damage == "future":
            metadata["format_version"] = MODEL_FORMAT_VERSION + 1
        elif damage == "not_ours":
            metadata["format"] = "someone-elses-model"
        else:
            metadata["files"]["../x"] = "0" * 64
        meta_path.write_text(json.dumps(metadata))
    with pytest.raises(CsvdnetInputError, match=message) as caught:
        verify_model(copy)
    assert "\n" not in str(caught.value)


def test_predictor_refuses_a_tampered_export_before_loading_it(exported_model, tmp_path):
    from csvdnet.inference.predictor import Predictor

    copy = _copy(exported_model, tmp_path)
    with open(copy / "saved_model.pb", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(CsvdnetInputError, match=r"saved_model\.pb: sha256 differs"):
        Predictor.from_dir(copy)
    (copy / METADATA_NAME).unlink()
    with pytest.raises(CsvdnetInputError, match=r"metadata\.json: missing"):
        Predictor.from_dir(copy)


def test_predictor_loads_an_export_as_its_run(exported_model, tiny_run):
    from csvdnet.inference.predictor import Predictor

    exported = Predictor.from_dir(exported_model.parent)  # NAME folder: highest version
    run = Predictor.from_dir(tiny_run[1])
    digest = file_sha256(exported_model / METADATA_NAME)
    assert exported.info.kind == "saved_model" and exported.info.id == f"tiny/1@{digest[:12]}"
    assert exported.info.sha256 == digest and exported.info.edited is None
    assert exported.info.channels == run.info.channels
    assert exported.info.thresholds == run.info.thresholds
    assert exported.preprocess_cfg == run.preprocess_cfg
    assert (exported.window, exported.overlap, exported.rule_sets) == \
        (run.window, run.overlap, run.rule_sets)


def test_an_export_records_the_digest_of_its_metadata_fields(exported_model):
    metadata = json.loads((exported_model / METADATA_NAME).read_text())

    assert metadata[FIELDS_DIGEST_KEY] == fields_sha256(metadata)
    model_id, digest, edited = model_identity(exported_model, metadata)
    assert (model_id, edited) == (f"tiny/1@{digest[:12]}", None)


def _edit_thresholds(version_dir: Path) -> dict:
    """Edit metadata.json as a user would (thresholds lowered): every checksum still holds."""
    meta_path = version_dir / METADATA_NAME
    metadata = json.loads(meta_path.read_text())
    metadata["thresholds"] = {task: 0.01 for task in metadata["thresholds"]}
    meta_path.write_text(json.dumps(metadata, indent=1) + "\n")
    return metadata


def test_edited_metadata_is_named_edited_wherever_the_model_is_named(exported_model, tmp_path):
    from csvdnet.inference.predictor import Predictor

    copy = _copy(exported_model, tmp_path)
    original = model_identity(exported_model, json.loads(
        (exported_model / METADATA_NAME).read_text()))
    metadata = _edit_thresholds(copy)
    verify_model(copy)  # an edit on purpose is allowed ...

    model_id, digest, edited = model_identity(copy, metadata)

    # ... but never looks like the original
    assert model_id == f"tiny/1+edited@{digest[:12]}" and model_id != original[0]
    assert edited.startswith("metadata.json was edited after export (its fields no longer "
                             "match fields_sha256)")
    predictor = Predictor.from_dir(copy)
    assert predictor.info.id == model_id and predictor.info.edited == edited
    assert predictor.info.thresholds["wmh"] == 0.01


def test_a_copy_of_the_shipped_model_with_other_metadata_is_edited(exported_model, tmp_path):
    name, pinned = next(iter(SHIPPED_METADATA_SHA256.items()))
    copy = _copy(exported_model, tmp_path)
    meta_path = copy / METADATA_NAME
    metadata = json.loads(meta_path.read_text())
    # As the shipped model's metadata (exported before fields_sha256): only the pin can tell.
    metadata["name"], metadata["version"] = name.split("/")[0], int(name.split("/")[1])
    del metadata[FIELDS_DIGEST_KEY]
    meta_path.write_text(json.dumps(metadata))

    model_id, digest, edited = model_identity(copy, metadata)

    assert digest != pinned and model_id == f"{name}+edited@{digest[:12]}"
    assert edited.startswith(f"metadata.json differs from the shipped {name} (sha256 "
                             f"{pinned[:12]}")


def test_the_shipped_model_matches_its_pinned_digest():
    from csvdnet.demo import SHIPPED_MODEL

    if not SHIPPED_MODEL.is_dir():
        pytest.skip("this checkout has no shipped model")
    for version_dir in sorted(p for p in SHIPPED_MODEL.iterdir() if p.name.isdigit()):
        metadata = json.loads((version_dir / METADATA_NAME).read_text())
        name = f"{metadata['name']}/{metadata['version']}"
        assert SHIPPED_METADATA_SHA256.get(name) == file_sha256(version_dir / METADATA_NAME), (
            f"{version_dir}: pin its metadata.json sha256 in export_verify.SHIPPED_METADATA_SHA256")
        model_id, _, edited = model_identity(version_dir, metadata)
        assert edited is None and "+edited" not in model_id


@pytest.mark.slow
def test_saved_model_cli_lists_the_three_signatures(exported_model):
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run([str(cli), "show", "--dir", str(exported_model), "--all"],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert shown.returncode == 0, shown.stderr
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in shown.stdout
    for name in ("image", "image_bytes", "shape", "wmh", "epvs", "score_logits", "score_probs"):
        assert f"['{name}']" in shown.stdout


@pytest.mark.slow
def test_plain_tensorflow_runs_the_export_without_csvdnet(exported_model):
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](image=tf.zeros([1, 9, 10, 11, 5]))\n"
        "assert 'csvdnet' not in sys.modules, 'csvdnet was imported'\n"
        "print(sorted(out), out['wmh'].shape)\n")
    ran = subprocess.run([sys.executable, "-c", script, str(exported_model)], cwd="/",
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ("['cmb', 'epvs', 'lacune', 'rssi', 'score_logits', 'score_probs', 'wmh'] "
            "(1, 9, 10, 11, 1)") in ran.stdout


@pytest.mark.slow
def test_mixed_precision_export_keeps_float32_signatures(tiny_run, tmp_path, loaded):
    import tensorflow as tf

    from csvdnet.export import export_run

    result = export_run(tiny_run[1], tmp_path / "tiny16", precision="mixed_float16")
    assert result.metadata["precision"] == "mixed_float16" and result.path.name == "1"
    half = tf.saved_model.load(str(result.path))
    image = tf.constant(np.random.default_rng(0).normal(size=(1, 16, 16, 16, 5)), tf.float32)
    low = half.signatures["serving_default"](image=image)
    full = loaded.signatures["serving_default"](image=image)
    assert low["wmh"].dtype == tf.float32
    np.testing.assert_allclose(low["wmh"].numpy(), full["wmh"].numpy(), atol=0.05)


def test_model_card_reports_a_heldout_summary_and_refuses_another_file(exported_model,
                                                                        tmp_path):
    from csvdnet.export.archive import _native_summary
    from csvdnet.export.card import model_card

    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"subjects": {"evaluated": 24}, "total_score": {
        "rule": {"accuracy": 0.5, "within_one": 0.875, "kappa_quadratic": 0.41},
        "ordinal": {"accuracy": 0.25, "within_one": 0.75, "kappa_quadratic": None}}}))
    metadata = json.loads((exported_model / METADATA_NAME).read_text())
    metadata["evaluation_native"] = _native_summary(summary)
    card = model_card(metadata, notes="csvdnet synth --seed 7")
    assert "| rule | 0.500 | 0.875 | 0.410 |" in card
    assert "| ordinal | 0.250 | 0.750 | n/a |" in card
    assert "24 subjects" in card and card.rstrip().endswith("csvdnet synth --seed 7")
    summary.write_text(json.dumps({"metrics": {}}))
    with pytest.raises(CsvdnetInputError, match="summary.json: not a summary.json of `csvdnet "
                                                "evaluate`"):
        _native_summary(summary)
