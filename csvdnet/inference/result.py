"""What prediction found in one subject: the record that outputs and reports are written from.

:class:`SubjectResult` is produced by :class:`csvdnet.inference.predictor.Predictor` and read by
the writers (:mod:`csvdnet.inference.outputs`, :mod:`csvdnet.inference.report`). Every array is
on the subject's reference grid (same shape and affine as its reference sequence, default
FLAIR); every coordinate is world (scanner RAS) mm of the reference frame.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["Finding", "ModelInfo", "OrdinalScore", "SubjectResult"]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One lesion (a 26-connected component of a segmentation mask) or one detected point.

    Attributes:
        task: ``wmh``, ``rssi``, ``lacune``, ``cmb`` or ``epvs``.
        index: 1-based number within its task, in order of decreasing confidence.
        world: Centre, world mm (component centroid / heatmap peak).
        voxel: Centre in reference-grid voxel coordinates (float).
        confidence: Highest probability of the component / heatmap value of the peak.
        volume_mm3: Component volume on the reference grid; ``None`` for points.
        region: Region name (:data:`csvdnet.atlas.REGION_CODES`) at the centre.
        side: ``"L"``, ``"R"``, or ``"M"`` (within 2 mm of the midline).
    """

    task: str
    index: int
    world: tuple[float, float, float]
    voxel: tuple[float, float, float]
    confidence: float
    volume_mm3: float | None
    region: str
    side: str


@dataclasses.dataclass(frozen=True)
class OrdinalScore:
    """The ordinal head's total SVD score.

    Attributes:
        total: Predicted class (number of cumulative probabilities above 0.5).
        class_probabilities: Probability of each total score 0..K-1.
        cumulative: ``P(score > k)`` for k = 0..K-2 (monotone non-increasing).
    """

    total: int
    class_probabilities: tuple[float, ...]
    cumulative: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Which model made a prediction.

    Attributes:
        id: Model name: ``<run directory>/<weights>``, or ``NAME/VERSION@<12 hex of
            metadata.json's sha256>`` of an export (``+edited`` before the ``@`` when edited).
        path: Where it was loaded from.
        sha256: Checksum of the weights file (run directory) or of the export's
            ``metadata.json``, which lists the checksum of every other file (SavedModel).
        kind: ``"run"`` (a training run directory) or ``"saved_model"``.
        channels: Input sequences in channel order.
        spacing: Working voxel size in mm.
        thresholds: Probability / heatmap threshold per dense task.
        min_lesion_mm3: Smallest reported component per segmentation task.
        modality_dropout: Whether the model was trained with input channels blanked at random
            (then a missing sequence is flagged instead of refused).
        edited: Why the model is not as exported (its ``metadata.json`` edited: see
            :func:`csvdnet.export.verify.model_identity`), or None.
        peak_neighbourhood: What a heatmap peak is the maximum of, per detection task
            (``"cube"`` where absent: :data:`csvdnet.inference.postprocess.PEAK_NEIGHBOURHOODS`).
        peak_ridge: Per detection task, the fraction of a peak a ridge to a higher peak keeps
            to make it that peak's ridge, not a finding (off where absent:
            :func:`csvdnet.inference.postprocess.on_a_ridge`).
    """

    id: str
    path: str
    sha256: str
    kind: str
    channels: tuple[str, ...]
    spacing: tuple[float, float, float]
    thresholds: dict[str, float]
    min_lesion_mm3: dict[str, float]
    modality_dropout: bool
    edited: str | None = None
    peak_neighbourhood: dict[str, str] = dataclasses.field(default_factory=dict)
    peak_ridge: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(eq=False)  # array fields: element-wise equality has no single truth
class SubjectResult:
    """Everything predicted, measured and rated for one subject.

    Attributes:
        subject: Subject id.
        inputs: Sequence -> input file path (the sequences used).
        reference: Name of the reference sequence.
        reference_path: Its file.
        affine: Reference grid voxel -> world affine.
        shape: Reference grid shape.
        probabilities: Task -> float32 probability / heatmap on the reference grid (brought back
            from the working grid by trilinear interpolation).
        masks: Task -> bool mask on the reference grid: segmentation tasks thresholded with small
            components removed; detection tasks a sphere of the heatmap's extent around each
            detected point (the heatmap above half the threshold, connected to a peak).
        findings: Task -> findings, in order of decreasing confidence.
        regions: uint8 region map on the reference grid (codes of ``csvdnet.atlas``).
        brain_mask: bool brain mask on the reference grid.
        world_to_mni: 4x4 world -> MNI affine that placed the region atlas.
        measurements: The :class:`csvdnet.scoring.Measurements` the rule sets score.
        quantities: Further measured quantities (volumes in ml, counts by region, Fazekas
            features); plain JSON-ready values.
        scores: Rule set name -> :class:`csvdnet.scoring.RuleScore`.
        ordinal: The ordinal head's score.
        agreement: Whether the ordinal head's total equals the Staals total from the rules
            (``None`` when the Staals total could not be computed).
        flags: Human-readable warnings for the report (disagreement, a missing sequence the
            model was trained to do without, a weak registration, ...).
        sequences: Sequence -> float32 image on the reference grid after co-registration and
            normalisation (for montages and QC pictures).
        sequence_transforms: Sequence -> 4x4 rigid reference-world -> sequence-world matrix.
        model: The model that predicted.
        timings: Stage -> seconds (load, preprocess, network, invert, postprocess, regions,
            scoring; the writers add ``outputs`` and ``report``).
        source: Where the inputs came from when csvdnet converted them from a DICOM study
            (``Subject.source``: the series chosen per channel and why); None for NIfTI.
    """

    subject: str
    inputs: dict[str, str]
    reference: str
    reference_path: str
    affine: np.ndarray
    shape: tuple[int, int, int]
    probabilities: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    findings: dict[str, list[Finding]]
    regions: np.ndarray
    brain_mask: np.ndarray
    world_to_mni: np.ndarray
    measurements: Any
    quantities: dict[str, Any]
    scores: dict[str, Any]
    ordinal: OrdinalScore
    agreement: bool | None
    flags: list[str]
    sequences: dict[str, np.ndarray]
    sequence_transforms: dict[str, np.ndarray]
    model: ModelInfo
    timings: dict[str, float]
    source: dict[str, Any] | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Reference voxel size in mm."""
        return tuple(float(s) for s in np.sqrt(np.sum(np.asarray(self.affine)[:3, :3] ** 2,
                                                      axis=0)))
