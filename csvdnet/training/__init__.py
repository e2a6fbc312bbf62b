"""Training: ``fit(cfg)`` with a distribution strategy, mixed precision, TensorBoard and resume.

Modules: :mod:`~csvdnet.training.fit` (the loop), :mod:`~csvdnet.training.step` (the distributed
optimisation step), :mod:`~csvdnet.training.plan` (config and cache checks, subject split),
:mod:`~csvdnet.training.strategy`, :mod:`~csvdnet.training.checkpoints` (resumable state and
saved weights), :mod:`~csvdnet.training.summaries` (TensorBoard),
:mod:`~csvdnet.training.signals` (graceful stop), and two tools run after training:
:mod:`~csvdnet.training.score_phase` and :mod:`~csvdnet.training.from_export`.

Training writes the run directory through :mod:`csvdnet.run` (layout, records, precision) and
validates with :mod:`csvdnet.evaluation.validation`; everything that reads a run afterwards
(predict, export, calibration, the held-out check) goes through :mod:`csvdnet.run` and
:mod:`csvdnet.evaluation`, and none of it imports this package (docs/architecture.md).
"""

from csvdnet.training.fit import TrainResult, fit

__all__ = ["TrainResult", "fit"]
