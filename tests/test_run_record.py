"""The run directory's preprocessing record (csvdnet.run.record, csvdnet.cache)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from _fake_cache import FakeSubject, write_cache
from csvdnet.cache import preprocess_record
from csvdnet.config import Config, DataConfig, PreprocessConfig, dump_config
from csvdnet.errors import CsvdnetInputError
from csvdnet.run.record import (PreprocessRecord, load_preprocess_record, run_config,
                                     write_preprocess_record)

CACHE_CHANNELS = ("flair", "t1", "swi")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    subject = FakeSubject("s0", np.zeros((8, 8, 8, 3), np.float32), masks={}, points={},
                          ratings=None)
    return write_cache(tmp_path_factory.mktemp("record") / "cache", [subject], CACHE_CHANNELS,
                       pad_multiple=8)


def test_preprocess_record_of_a_cache(cache):
    record = preprocess_record(cache, ["swi", "flair"])
    assert record["format"] == "csvdnet-preprocess" and record["version"] == 1
    assert record["channels"] == ["swi", "flair"]  # the network's order, not the cache's
    assert record["cache_channels"] == list(CACHE_CHANNELS)
    assert record["pad_multiple"] == 8 == record["preprocess"]["pad_multiple"]
    assert record["preprocess"]["spacing"] == [1.0, 1.0, 1.0]
    assert preprocess_record(cache)["channels"] == list(CACHE_CHANNELS)
    with pytest.raises(CsvdnetInputError, match="no channel dwi"):
        preprocess_record(cache, ["flair", "dwi"])


def test_record_round_trip(cache, tmp_path):
    path = write_preprocess_record(tmp_path, cache, ("swi", "flair"))
    assert path == tmp_path / "preprocess.json"
    assert json.loads(path.read_text())["cache"] == str(cache.resolve())
    record = load_preprocess_record(tmp_path)
    assert record == PreprocessRecord(("swi", "flair"), PreprocessConfig(pad_multiple=8), 8)


def test_a_run_without_a_record_falls_back_to_its_config(tmp_path, caplog):
    cfg = Config(data=DataConfig(channels=("t2", "flair")),
                 preprocess=PreprocessConfig(spacing=(2.0, 2.0, 2.0), pad_multiple=4))
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    with caplog.at_level(logging.WARNING):
        record = load_preprocess_record(tmp_path)
    assert record == PreprocessRecord(("t2", "flair"), cfg.preprocess, 4, recorded=False)
    assert "no preprocess.json" in caplog.text


@pytest.mark.parametrize("content, reason", [
    ("{", "not a readable"),
    ('{"format": "csvdnet-cache", "version": 1}', "not a preprocessing record"),
    ('{"format": "csvdnet-preprocess", "version": 2}', "version 2"),
    ('{"format": "csvdnet-preprocess", "version": 1, "channels": [], "preprocess": {}}',
     "channels"),
    ('{"format": "csvdnet-preprocess", "version": 1, "channels": ["flair"], '
     '"preprocess": {"spacing": "big"}}', "preprocess.spacing|spacing"),
])
def test_bad_records_are_input_errors(tmp_path, content, reason):
    (tmp_path / "preprocess.json").write_text(content)
    with pytest.raises(CsvdnetInputError, match=reason):
        load_preprocess_record(tmp_path)


def test_run_config_of_an_older_run(tmp_path, caplog):
    text = dump_config(Config()).replace("  rule_sets:\n  - staals-2014\n  - caa-svd-2016\n",
                                         "  rule_set: staals2014\n")
    assert "rule_set: staals2014" in text
    (tmp_path / "config.yaml").write_text(text)
    with caplog.at_level(logging.WARNING):
        assert run_config(tmp_path) == Config()
    assert "inference.rule_set" in caplog.text
    with pytest.raises(CsvdnetInputError, match="no config.yaml"):
        run_config(tmp_path / "missing")
