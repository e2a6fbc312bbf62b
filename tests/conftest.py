"""Shared fixtures: tiny synthetic volumes, made in the tests, no network."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
