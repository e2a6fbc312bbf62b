"""The run directory: what ``csvdnet train`` writes and every later stage reads, as one concept.

A run directory is to csvdnet what nnU-Net's plans and fold folders are to it: the resolved
config, the preprocessing the network saw, its calibrated thresholds, its weights. Training writes
through this package (:mod:`csvdnet.training` imports it); prediction, export, calibration
(:mod:`csvdnet.evaluation.calibrate`) and the held-out check (:mod:`csvdnet.evaluation.heldout`)
read through it, and none of them imports :mod:`csvdnet.training`. This package imports only
the layers below it (config, cache, models): it runs no network.

- :mod:`~csvdnet.run.layout`: the folder's layout (:class:`RunDir`, :data:`WEIGHTS_NAME`) and
  the checks on starting or resuming a run;
- :mod:`~csvdnet.run.record`: ``config.yaml`` (:func:`run_config`, calibrated) and
  ``preprocess.json`` (:func:`load_preprocess_record`, :func:`write_preprocess_record`);
- :mod:`~csvdnet.run.calibration`: ``calibration.json``'s name, format and reader;
- :mod:`~csvdnet.run.precision`: the Keras dtype policy a network is built and run under;
- :mod:`~csvdnet.run.network`: :func:`load_network`, the network with ``best/`` or ``last/``
  weights (imports Keras: import it by name).

Importing this package imports no TensorFlow.
"""

from csvdnet.run.calibration import CALIBRATION_FILE, CALIBRATION_FORMAT, load_calibration
from csvdnet.run.layout import RESUMABLE_CHANGES, WEIGHTS_NAME, RunDir
from csvdnet.run.record import (PREPROCESS_RECORD, PreprocessRecord, load_preprocess_record,
                                run_config, write_preprocess_record)

__all__ = ["CALIBRATION_FILE", "CALIBRATION_FORMAT", "PREPROCESS_RECORD", "PreprocessRecord",
           "RESUMABLE_CHANGES", "RunDir", "WEIGHTS_NAME", "load_calibration",
           "load_preprocess_record", "run_config", "write_preprocess_record"]
