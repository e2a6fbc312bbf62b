"""Shared fixtures: tiny synthetic volumes, made in the tests, no network."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Derived data (the region atlas) cached for this test session only, not in the user's home.
os.environ["CSVDNET_CACHE"] = tempfile.mkdtemp(prefix="csvdnet-test-cache-")
atexit.register(shutil.rmtree, os.environ["CSVDNET_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``(cohort manifest, run directory)`` of a tiny model trained end to end (tests/_tiny_run)."""
    from _tiny_run import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("tiny_run"))


@pytest.fixture(scope="session")
def exported_model(tiny_run, tmp_path_factory):
    """``<tmp>/saved_models/tiny/1``: the tiny run exported once with ``csvdnet export``.

    Read-only for tests: a test that alters an export works on a copy.
    """
    from click.testing import CliRunner

    from csvdnet.cli import cli

    out = tmp_path_factory.mktemp("saved_models") / "tiny"
    result = CliRunner().invoke(cli, ["export", str(tiny_run[1]), "--out", str(out),
                                      "--version", "1", "--description", "tiny synthetic run"])
    assert result.exit_code == 0, result.output
    return out / "1"
