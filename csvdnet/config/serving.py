"""The sections of a trained model's use: :class:`InferenceConfig` (sliding-window prediction,
post-processing, the rule sets scored) and :class:`ExportConfig` (the SavedModel export)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from csvdnet import DETECTION_TASKS
from csvdnet.config.values import IntTriple, _check, _positive
from csvdnet.scoring import RULE_SETS

# Built from the rule sets themselves, so a config names only rule sets that exist and a wrong
# name is reported with the file and the dotted key like any other bad value.
RuleSetName = Literal[tuple(RULE_SETS)]  # type: ignore[valid-type]


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """Sliding-window prediction and post-processing.

    Attributes:
        window: Sliding-window size in voxels (multiple of 2 ** depth).
        overlap: Fractional overlap between windows.
        gaussian_blend: Blend windows with a Gaussian importance map.
        mirror: Test-time mirroring along the left-right axis.
        thresholds: Probability / heatmap thresholds per task.
        min_lesion_mm3: Components smaller than this are dropped, per segmentation task.
        rule_sets: Scoring rule sets reported, by name (keys of
            :data:`csvdnet.scoring.RULE_SETS`: ``"staals-2014"``, ``"caa-svd-2016"``).
        peak_neighbourhood: What a heatmap peak is the maximum of, per detection task:
            ``"cube"`` (3x3x3) or ``"faces"`` (six neighbours: resolves findings whose nearest
            voxels touch diagonally, for a network whose peaks look like its Gaussian targets;
            :data:`csvdnet.inference.postprocess.PEAK_NEIGHBOURHOODS`).
        peak_ridge: ``{"epvs": fraction}``: drop an EPVS peak outside the basal ganglia joined
            to a higher one by a ridge that stays at or above this fraction of it (0 or absent:
            off; :func:`csvdnet.inference.postprocess.on_a_ridge`). ``csvdnet calibrate``
            chooses it with the threshold.
    """

    window: IntTriple = (128, 128, 128)
    overlap: float = 0.25
    gaussian_blend: bool = True
    mirror: bool = False
    thresholds: dict[str, float] = dataclasses.field(default_factory=lambda: {
        "wmh": 0.5, "rssi": 0.5, "lacune": 0.5, "cmb": 0.3, "epvs": 0.3})
    min_lesion_mm3: dict[str, float] = dataclasses.field(default_factory=lambda: {
        "wmh": 3.0, "rssi": 10.0, "lacune": 10.0})
    rule_sets: tuple[RuleSetName, ...] = ("staals-2014", "caa-svd-2016")
    peak_neighbourhood: dict[str, str] = dataclasses.field(default_factory=lambda: {
        task: "cube" for task in DETECTION_TASKS})
    peak_ridge: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check("inference", {
            "window": (_positive(self.window), f"must be positive, got {list(self.window)}"),
            "overlap": (0.0 <= self.overlap < 1.0, f"must be in [0, 1), got {self.overlap}"),
            "thresholds": (all(0.0 < v < 1.0 for v in self.thresholds.values()),
                           f"must be probabilities in (0, 1), got {self.thresholds}"),
            "min_lesion_mm3": (all(v >= 0 for v in self.min_lesion_mm3.values()),
                               f"must be >= 0, got {self.min_lesion_mm3}"),
            "peak_neighbourhood": (
                all(k in DETECTION_TASKS and v in ("cube", "faces")
                    for k, v in self.peak_neighbourhood.items()),
                f"must map cmb / epvs to cube or faces, got {self.peak_neighbourhood}"),
            "peak_ridge": (
                all(k == "epvs" and 0.0 <= v < 1.0 for k, v in self.peak_ridge.items()),
                f"must map epvs to a fraction in [0, 1), got {self.peak_ridge}"),
            "rule_sets": (all(name in RULE_SETS for name in self.rule_sets),
                          f"must name rule sets of {', '.join(RULE_SETS)}, "
                          f"got {list(self.rule_sets)}"),
        })


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """SavedModel export.

    Attributes:
        name: Model name (the TF Serving model directory).
        version: Model version (the numbered sub-directory).
        description: Training data description written into metadata.json.
    """

    name: str = "csvdnet"
    version: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        _check("export", {
            "name": (bool(self.name) and "/" not in self.name and not self.name.startswith("."),
                     f"must be a folder name, got {self.name!r}"),
            "version": (self.version >= 1, f"must be >= 1, got {self.version}"),
        })
