"""Shared fixtures: tiny synthetic volumes, made in the tests, no network."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``(cohort manifest, run directory)`` of a tiny model trained end to end (tests/_tiny_run)."""
    from _tiny_run import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("tiny_run"))
