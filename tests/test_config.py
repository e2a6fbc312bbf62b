"""Config dataclasses: strict YAML loading, overrides, round trip."""

from __future__ import annotations

import pytest

from csvdnet.config import (Config, PreprocessConfig, dump_config, from_dict, load_config,
                            to_dict)
from csvdnet.errors import CsvdnetInputError


def test_defaults_without_file():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.preprocess.reference == "flair"
    assert cfg.data.channels == ("flair", "t1", "t2", "swi", "dwi")


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["train.epochs=3", "preprocess.spacing=[2, 2, 3]"])
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert again == cfg
    assert again.train.epochs == 3
    assert again.preprocess.spacing == (2.0, 2.0, 3.0)


def test_values_are_converted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preprocess:\n  spacing: 2\n  clip_percentiles: [1, 99]\n"
                    "losses:\n  task_weights: {wmh: 2}\n")
    cfg = load_config(path)
    assert cfg.preprocess.spacing == (2.0, 2.0, 2.0)  # a scalar means isotropic
    assert cfg.preprocess.clip_percentiles == (1.0, 99.0)
    assert cfg.losses.task_weights == {"wmh": 2.0}
    assert isinstance(cfg.losses.task_weights["wmh"], float)


def test_spacing_none_keeps_reference():
    assert from_dict(PreprocessConfig, {"spacing": None}).spacing is None


@pytest.mark.parametrize("text, match", [
    ("train:\n  epochs: 3\n  epoch: 4\n", r"c\.yaml: unknown key train\.epoch "),
    ("tran:\n  epochs: 3\n", r"unknown key tran "),
    ("train:\n  epochs: three\n", r"train\.epochs: expected an integer, got 'three'"),
    ("train:\n  epochs: 2.5\n", r"train\.epochs: expected an integer"),
    ("train:\n  ema: 1\n", r"train\.ema: expected true or false"),
    ("train:\n  mixed_precision: float16\n", r"train\.mixed_precision: expected one of"),
    ("preprocess:\n  spacing: [1, 1]\n", r"preprocess\.spacing: expected"),
    ("train: 3\n", r"train: expected a mapping"),
    ("- a\n- b\n", r"a config must be a YAML mapping"),
    ("train: [unclosed\n", r"not valid YAML"),
])
def test_bad_config_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(CsvdnetInputError, match=match):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(CsvdnetInputError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_override():
    with pytest.raises(CsvdnetInputError, match="not of the form"):
        load_config(None, ["train.epochs"])
    with pytest.raises(CsvdnetInputError, match="unknown key train.epoc "):
        load_config(None, ["train.epoc=3"])


def test_to_dict_is_plain():
    data = to_dict(Config())
    assert isinstance(data["preprocess"]["spacing"], list)
    assert from_dict(Config, data) == Config()


@pytest.mark.parametrize("text, match", [
    ("preprocess:\n  spacing: -1\n", r"c\.yaml: preprocess\.spacing: must be positive"),
    ("preprocess:\n  pad_multiple: 0\n", r"c\.yaml: preprocess\.pad_multiple: must be >= 1"),
    ("preprocess:\n  clip_percentiles: [99, 1]\n", r"preprocess\.clip_percentiles: must satisfy"),
    ("data:\n  val_fraction: 1.0\n", r"c\.yaml: data\.val_fraction: must be in \[0, 1\)"),
    ("inference:\n  peak_neighbourhood:\n    epvs: edges\n",
     r"c\.yaml: inference\.peak_neighbourhood: must map cmb / epvs to cube or faces"),
    ("inference:\n  peak_ridge:\n    cmb: 0.5\n",
     r"c\.yaml: inference\.peak_ridge: must map epvs to a fraction in \[0, 1\)"),
    ("inference:\n  peak_ridge:\n    epvs: 1.5\n", r"inference\.peak_ridge: must map epvs"),
    ("data:\n  channels: [flair, flair]\n", r"data\.channels: must name each sequence once"),
    ("data:\n  lesion_task_weights: {score: 1}\n", r"data\.lesion_task_weights: must map"),
    ("model:\n  depth: 0\n", r"c\.yaml: model\.depth: must be >= 1"),
    ("model:\n  dropout: 1.0\n", r"model\.dropout: must be in \[0, 1\)"),
    ("train:\n  learning_rate: 0\n", r"c\.yaml: train\.learning_rate: must be > 0"),
    ("train:\n  ema_momentum: 1\n", r"train\.ema_momentum: must be in \(0, 1\)"),
    ("inference:\n  overlap: 1\n", r"c\.yaml: inference\.overlap: must be in \[0, 1\)"),
    ("inference:\n  thresholds: {wmh: 1.5}\n", r"inference\.thresholds: must be probabilities"),
    ("export:\n  version: 0\n", r"c\.yaml: export\.version: must be >= 1"),
])
def test_each_section_checks_its_ranges_naming_file_and_key(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(CsvdnetInputError, match=match):
        load_config(path)


def test_sections_check_their_ranges_when_built_in_code():
    with pytest.raises(CsvdnetInputError, match=r"<config>: preprocess\.spacing: must be "
                                                r"positive, got \[1\.0, 0\.0, 1\.0\]"):
        PreprocessConfig(spacing=(1.0, 0.0, 1.0))


@pytest.mark.parametrize("overrides, match", [
    (["model.input_channels=2"], r"model\.input_channels: is 2 but data\.channels names 5"),
    (["data.patch_size=[48, 48, 40]"], r"data\.patch_size: must be multiples of 2 \*\* "
                                       r"model\.depth = 16, got \[48, 48, 40\]"),
    (["inference.window=[8, 16, 16]"], r"inference\.window: must be multiples of 2 \*\* "),
    (["preprocess.reference=t3"], r"preprocess\.reference: 't3' is not one of data\.channels"),
])
def test_validate_checks_the_sections_against_each_other(overrides, match):
    cfg = load_config(None, overrides)  # each section alone is fine
    with pytest.raises(CsvdnetInputError, match=match):
        cfg.validate()


def test_validate_for_preprocessing_leaves_the_network_alone():
    cfg = load_config(None, ["data.channels=[flair, t1]"])
    assert cfg.validate(model=False) is cfg
    with pytest.raises(CsvdnetInputError, match="model.input_channels"):
        cfg.validate()
    with pytest.raises(CsvdnetInputError, match="train.batch_size: must be a positive multiple "
                                                "of the 2 replicas, got 3"):
        load_config(None, ["train.batch_size=3"]).validate(replicas=2)
