"""Inference: sliding-window prediction (:mod:`~csvdnet.inference.sliding_window`)."""

from csvdnet.inference.sliding_window import (gaussian_importance, sliding_window,
                                              window_origins, windowed_predictor)

__all__ = ["gaussian_importance", "sliding_window", "window_origins", "windowed_predictor"]
