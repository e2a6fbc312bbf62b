"""Configuration: one frozen dataclass per concern, read from and written to YAML.

A config file is a YAML mapping whose top-level keys are the sections of :class:`Config`
(``data``, ``preprocess``, ``model``, ``losses``, ``train``, ``inference``, ``export``). Every
key is checked before any compute: an unknown key or a value of the wrong type raises
:class:`~csvdnet.errors.CsvdnetInputError` naming the file and the dotted key.

Overrides from the command line use the same dotted keys: ``train.epochs=3``.

Modules: the sections, each checking its own ranges, in :mod:`csvdnet.config.data` (preprocess,
data), :mod:`csvdnet.config.model`, :mod:`csvdnet.config.training` (losses, train) and
:mod:`csvdnet.config.serving` (inference, export), with their shared types and check in
:mod:`csvdnet.config.values`; :mod:`csvdnet.config.schema` (:class:`Config`, which checks the
sections against each other) and :mod:`csvdnet.config.loading` (YAML, conversion, overrides).
Every public name is re-exported here: ``from csvdnet.config import load_config`` is the way to
import.
"""

from csvdnet.config.data import DataConfig, PreprocessConfig
from csvdnet.config.loading import (apply_overrides, dump_config, from_dict, load_config,
                                    to_dict)
from csvdnet.config.model import ModelConfig
from csvdnet.config.schema import Config
from csvdnet.config.serving import ExportConfig, InferenceConfig, RuleSetName
from csvdnet.config.training import LossConfig, TrainConfig
from csvdnet.config.values import ConfigValueError, IntTriple, Triple

__all__ = ["Config", "ConfigValueError", "DataConfig", "ExportConfig", "InferenceConfig",
           "IntTriple", "LossConfig", "ModelConfig", "PreprocessConfig", "RuleSetName",
           "TrainConfig", "Triple", "apply_overrides", "dump_config", "from_dict",
           "load_config", "to_dict"]
