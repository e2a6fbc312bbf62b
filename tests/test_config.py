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
