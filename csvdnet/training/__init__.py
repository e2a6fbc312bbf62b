"""Training: ``fit(cfg)`` with a distribution strategy, mixed precision, TensorBoard and resume.

Modules: :mod:`~csvdnet.training.fit` (the loop), :mod:`~csvdnet.training.step` (the distributed
optimisation step), :mod:`~csvdnet.training.plan` (config and cache checks, subject split),
:mod:`~csvdnet.training.strategy`, :mod:`~csvdnet.training.precision`,
:mod:`~csvdnet.training.checkpoints` (run directory), :mod:`~csvdnet.training.validation`
(metrics), :mod:`~csvdnet.training.summaries` (TensorBoard) and
:mod:`~csvdnet.training.signals` (graceful stop).
"""

from csvdnet.training.fit import TrainResult, fit

__all__ = ["TrainResult", "fit"]
