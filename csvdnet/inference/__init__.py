"""Inference: sliding-window prediction and the post-processing of its outputs.

Importing this package does not import TensorFlow: post-processing, regions, scoring and reports
run without it (a report can be rebuilt on a machine with no TensorFlow). The TensorFlow-using
names of :mod:`~csvdnet.inference.sliding_window` are imported on first use.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from csvdnet.inference.postprocess import (Component, components, find_peaks,
                                           remove_small_components, threshold_mask)

_LAZY = ("gaussian_importance", "sliding_window", "window_origins", "windowed_predictor")

__all__ = ["Component", "components", "find_peaks", "remove_small_components", "threshold_mask",
           *_LAZY]


def _from_sliding_window(name: str) -> Any:
    return getattr(importlib.import_module("csvdnet.inference.sliding_window"), name)


def __getattr__(name: str) -> Any:
    # PEP 562: the sliding-window names load TensorFlow only when someone asks for them.
    if name in _LAZY:
        return _from_sliding_window(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """This package, where ``sliding_window`` always names the function.

    Importing the submodule ``csvdnet.inference.sliding_window`` binds the package attribute of
    the same name to the module; left alone, ``from csvdnet.inference import sliding_window``
    would then give the module or the function depending on what was imported first.
    """

    @property
    def sliding_window(self) -> Any:
        return _from_sliding_window("sliding_window")

    @sliding_window.setter
    def sliding_window(self, value: Any) -> None:
        pass  # the import system binding the submodule: the function keeps the name


sys.modules[__name__].__class__ = _Package
