"""The whole configuration: :class:`Config`, one field per section, whose ``validate()`` checks
the sections against each other."""

from __future__ import annotations

import dataclasses

from csvdnet.config.data import DataConfig, PreprocessConfig
from csvdnet.config.model import ModelConfig
from csvdnet.config.serving import ExportConfig, InferenceConfig
from csvdnet.config.training import LossConfig, TrainConfig
from csvdnet.config.values import _check


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole configuration, one section per concern."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    preprocess: PreprocessConfig = dataclasses.field(default_factory=PreprocessConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    losses: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def validate(self, replicas: int = 1, *, model: bool = True) -> Config:
        """Check what no single section can: the sections against each other.

        Every entry point (train, preprocess, predict, export) calls it once the config is
        loaded; each section has already checked its own ranges when it was built.

        Args:
            replicas: Replicas in sync of the training strategy (the global batch is split).
            model: Also check the network against the data (channels, patch, window);
                ``False`` for preprocessing, which builds no network.

        Returns:
            ``self``, so that ``cfg = load_config(path).validate()`` reads naturally.

        Raises:
            ConfigValueError: The first problem found, naming the dotted key.
        """
        _check("", {"preprocess.reference": (
            self.preprocess.reference in self.data.channels,
            f"{self.preprocess.reference!r} is not one of data.channels "
            f"({', '.join(self.data.channels)})")})
        if not model:
            return self
        stride = 2 ** self.model.depth
        _check("", {
            "train.batch_size": (
                self.train.batch_size % replicas == 0,
                f"must be a positive multiple of the {replicas} replicas, "
                f"got {self.train.batch_size}"),
            "model.input_channels": (
                self.model.input_channels == len(self.data.channels),
                f"is {self.model.input_channels} but data.channels names "
                f"{len(self.data.channels)} sequences ({', '.join(self.data.channels)})"),
            "data.patch_size": (
                all(p >= stride and p % stride == 0 for p in self.data.patch_size),
                f"must be multiples of 2 ** model.depth = {stride}, "
                f"got {list(self.data.patch_size)}"),
            "inference.window": (
                all(w >= stride and w % stride == 0 for w in self.inference.window),
                f"must be multiples of 2 ** model.depth = {stride}, "
                f"got {list(self.inference.window)}"),
        })
        return self
