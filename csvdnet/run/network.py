"""A run's network: rebuilt from its config, with the weights of ``best/`` or ``last/``."""

from __future__ import annotations

from pathlib import Path

import keras

from csvdnet.config import Config
from csvdnet.errors import CsvdnetInputError
from csvdnet.models import build_model
from csvdnet.run.layout import WEIGHTS_NAME

__all__ = ["load_network"]


def load_network(run_dir: str | Path, cfg: Config, weights: str = "best") -> keras.Model:
    """The run's network (``cfg.model``) with the weights of ``run_dir/<weights>/``.

    Build it under the dtype policy it should run in.

    Raises:
        CsvdnetInputError: ``weights`` is not ``"best"`` / ``"last"``, or the file is missing.
    """
    if weights not in ("best", "last"):
        raise CsvdnetInputError(run_dir, f"weights must be 'best' or 'last', got {weights!r}")
    path = Path(run_dir) / weights / WEIGHTS_NAME
    if not path.is_file():
        raise CsvdnetInputError(path, f"no {weights} weights: has the run validated yet?")
    network = build_model(cfg.model)
    network.load_weights(path)
    return network
