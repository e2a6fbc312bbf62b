"""What ``csvdnet evaluate`` reads: a labelled cohort's truth and a ``csvdnet predict`` folder.

Truth (:func:`load_truth`) comes from the cohort (:func:`csvdnet.io.read_cohort`): WMH / RSSI /
lacune label maps with their values kept (label 2 = excluded, WMH challenge), CMB / EPVS points
as :class:`~csvdnet.evaluation.points.TrueObjects` (a CSV's ``length_mm`` and ``dx, dy, dz``
columns give an EPVS its extent; a NIfTI label map gives every object its voxels), the region
map and ``ratings.csv``. Predictions (:func:`load_prediction`) are read from the plain or BIDS
derivatives layout of :mod:`csvdnet.inference.outputs` and ``scores.tsv``. Whatever is missing
is returned as a problem to report, never skipped silently.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.errors import CsvdnetInputError
from csvdnet.evaluation.points import TrueObjects
from csvdnet.inference import outputs
from csvdnet.inference.postprocess import CONNECTIVITY
from csvdnet.io import Image, Subject, load_nifti, read_grid, read_points
from csvdnet.io.nifti import _nifti_suffix

__all__ = ["GRID_TOLERANCE_MM", "Prediction", "Truth", "grid_difference",
           "is_bids_derivatives", "load_prediction", "load_truth", "objects_from_labelmap",
           "read_scores"]

GRID_TOLERANCE_MM = 1e-3
"""Grids whose affines differ by less than this (mm) are the same grid (float32 header
round-off is ~1e-6)."""


@dataclasses.dataclass
class Truth:
    """One subject's reference labels on its reference grid.

    Attributes:
        masks: Segmentation task -> label map (values kept: 1 lesion, 2 excluded).
        objects: Detection task -> true objects.
        affine: The reference grid's affine (of the first label loaded), or None.
        shape: The shape of that label, or None.
        reference_grid: ``(shape, affine)`` of the subject's reference image (its header), or
            None when it was not asked for or cannot be read.
        regions: Region map, or None.
        ratings: The ``ratings.csv`` row as a dict (None values = not rated), or None.
        problems: Label name -> why it is not usable.
    """

    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    objects: dict[str, TrueObjects] = dataclasses.field(default_factory=dict)
    affine: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    reference_grid: tuple[tuple[int, int, int], np.ndarray] | None = None
    regions: np.ndarray | None = None
    ratings: dict[str, int | None] | None = None
    problems: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Prediction:
    """One subject's predictions.

    Attributes:
        masks: Segmentation task -> boolean mask.
        probabilities: Segmentation task -> probability map (when written).
        points: Detection task -> ``(N, 3)`` world mm.
        confidence: Detection task -> ``(N,)`` confidence.
        affine: The grid of the maps.
        shape: The shape of the maps.
        regions: The predicted region map (``regions_dseg``), or None.
        scores: The subject's ``scores.tsv`` row, or None.
        report_html: Path of its report.html, if it exists.
        problems: Output name -> why it is not usable.
    """

    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    probabilities: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    points: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    confidence: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    affine: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    regions: np.ndarray | None = None
    scores: dict[str, str] | None = None
    report_html: Path | None = None
    problems: dict[str, str] = dataclasses.field(default_factory=dict)


def _same_grid(a: Image, affine: np.ndarray | None, shape: tuple[int, ...] | None) -> str | None:
    if affine is None:
        return None
    if a.shape != tuple(shape):
        return f"grid {a.shape} differs from the subject's other labels {tuple(shape)}"
    if np.abs(a.affine - affine).max() > GRID_TOLERANCE_MM:
        return "affine differs from the subject's other labels"
    return None


def grid_difference(shape: tuple[int, ...], affine: np.ndarray, other_shape: tuple[int, ...],
                    other_affine: np.ndarray) -> str | None:
    """How two voxel grids differ (shape, then affine), or None when they are the same grid."""
    if tuple(shape) != tuple(other_shape):
        return f"shape {tuple(shape)} vs {tuple(other_shape)}"
    worst = float(np.abs(np.asarray(affine) - np.asarray(other_affine)).max())
    if worst > GRID_TOLERANCE_MM:
        return f"affines differ by up to {worst:.3g} mm"
    return None


def objects_from_labelmap(data: np.ndarray, affine: np.ndarray) -> TrueObjects:
    """Objects of a point label map, as :func:`csvdnet.io.read_points` counts them (one per
    26-connected component of a binary map, one per value otherwise), with their voxels."""
    values = np.unique(data[data > 0])
    if values.size == 1:
        labels, count = ndimage.label(data > 0, structure=CONNECTIVITY)
        index = np.arange(1, count + 1)
    else:
        labels, index = np.rint(data).astype(np.int64), values.astype(np.int64)
    voxels = tuple(apply_affine(affine, np.argwhere(labels == i).astype(float)) for i in index)
    centres = np.array([v.mean(axis=0) for v in voxels]).reshape(-1, 3)
    return TrueObjects(centres=centres, voxels=voxels)


def _csv_columns(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    return {name.strip(): [row[name] for row in rows] for name in (rows[0] if rows else {})}


def _objects_from_csv(path: Path) -> TrueObjects:
    centres = read_points(path)
    columns = _csv_columns(path)

    def numbers(name: str) -> np.ndarray | None:
        cells = columns.get(name)
        if cells is None or len(cells) != len(centres) or any(not c.strip() for c in cells):
            return None
        try:
            return np.array([float(c) for c in cells])
        except ValueError:
            raise CsvdnetInputError(path, f"column {name} must hold numbers") from None

    length = numbers("length_mm")
    direction = [numbers(n) for n in ("dx", "dy", "dz")]
    if length is not None and all(d is not None for d in direction):
        axis = np.stack(direction, axis=1)
        axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-12)
        half = axis * (length[:, None] / 2)
        return TrueObjects(centres, segments=np.stack([centres - half, centres + half], axis=1))
    if length is not None:
        return TrueObjects(centres, half_length=length / 2)
    return TrueObjects(centres)


def load_truth(subject: Subject, reference: str | None = None) -> Truth:
    """Load a subject's labels and ratings; unusable labels become ``problems``.

    Args:
        subject: The cohort subject.
        reference: Its reference sequence: its grid (read from the header) is the one every
            prediction of this subject must be on.
    """
    truth = Truth()
    shape = None
    if reference is not None and reference in subject.sequences:
        try:
            truth.reference_grid = read_grid(subject.sequences[reference])
        except CsvdnetInputError as exc:
            truth.problems[reference] = str(exc)
    if subject.ratings is not None:
        truth.ratings = dataclasses.asdict(subject.ratings)
    for name in (*SEGMENTATION_TASKS, *DETECTION_TASKS, "regions"):
        path = subject.labels.get(name)
        if path is None:
            continue
        try:
            if name in DETECTION_TASKS and not _nifti_suffix(Path(path)):
                truth.objects[name] = _objects_from_csv(Path(path))
                continue
            image = load_nifti(path, kind="labelmap")
            problem = _same_grid(image, truth.affine, shape)
            if problem:
                truth.problems[name] = problem
                continue
            truth.affine, truth.shape = image.affine, image.shape
            shape = image.shape
            if name in SEGMENTATION_TASKS:
                truth.masks[name] = image.data
            elif name == "regions":
                truth.regions = np.rint(image.data).astype(np.int64)
            else:
                truth.objects[name] = objects_from_labelmap(image.data, image.affine)
        except CsvdnetInputError as exc:
            truth.problems[name] = str(exc)
    return truth


def is_bids_derivatives(pred_dir: Path) -> bool:
    """Whether ``pred_dir`` is a BIDS derivatives dataset (``csvdnet predict`` on BIDS)."""
    return (Path(pred_dir) / "dataset_description.json").is_file()


def read_scores(pred_dir: Path) -> dict[str, dict[str, str]]:
    """``scores.tsv`` rows by subject ({} if there is none)."""
    path = Path(pred_dir) / "scores.tsv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["subject"]: row for row in csv.DictReader(handle, delimiter="\t")
                if row.get("subject")}


def _read_points_tsv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    try:
        world = np.array([[float(r[a]) for a in "xyz"] for r in rows]).reshape(-1, 3)
        confidence = np.array([float(r["confidence"]) if r.get("confidence") not in
                               (None, "", "n/a") else 1.0 for r in rows])
    except (KeyError, ValueError) as exc:
        raise CsvdnetInputError(path, f"not a csvdnet points table ({exc})") from None
    return world, confidence


def _not_measured(report: Path) -> dict[str, str]:
    """Marker -> why predict did not measure it (report.json's ``not_measured``), so that a
    marker without files is reported with its reason (e.g. "not measured: swi missing")."""
    try:
        markers = json.loads(report.read_text(encoding="utf-8")).get("markers", {})
        return {task: str(m["not_measured"]) for task, m in markers.items()
                if isinstance(m, dict) and m.get("not_measured")}
    except (OSError, ValueError, AttributeError):
        return {}  # no readable report: the missing files speak for themselves


def load_prediction(pred_dir: Path, subject_id: str, bids: bool,
                    scores: dict[str, dict[str, str]]) -> Prediction | None:
    """Load a subject's predictions; None when the subject has no prediction folder."""
    folder = outputs.subject_dir(Path(pred_dir), subject_id, bids)
    if not folder.is_dir():
        return None
    prediction = Prediction(scores=scores.get(subject_id))
    if prediction.scores is None:
        prediction.problems["scores"] = "no row in scores.tsv"
    html = outputs.report_path(Path(pred_dir), subject_id, bids, ".html")
    prediction.report_html = html if html.is_file() else None
    unmeasured = _not_measured(outputs.report_path(Path(pred_dir), subject_id, bids))
    name = outputs.output_name  # the one definition of the output file names
    shape = None
    for task in SEGMENTATION_TASKS:
        path = folder / name(subject_id, bids, task, "mask")
        if not path.is_file():
            prediction.problems[task] = unmeasured.get(task) or f"no {path.name}"
            continue
        try:
            mask = load_nifti(path, kind="labelmap")
            problem = _same_grid(mask, prediction.affine, shape)
            if problem:
                prediction.problems[task] = f"{path.name}: {problem}"
                continue
            prediction.affine, prediction.shape = mask.affine, mask.shape
            shape = mask.shape
            prediction.masks[task] = mask.data >= 0.5
            prob = folder / name(subject_id, bids, task, "prob")
            if prob.is_file():
                prediction.probabilities[task] = load_nifti(prob, kind="labelmap").data
        except CsvdnetInputError as exc:
            prediction.problems[task] = str(exc)
    for task in DETECTION_TASKS:
        path = folder / name(subject_id, bids, task, "points")
        if not path.is_file():
            prediction.problems[task] = unmeasured.get(task) or f"no {path.name}"
            continue
        try:
            prediction.points[task], prediction.confidence[task] = _read_points_tsv(path)
        except CsvdnetInputError as exc:
            prediction.problems[task] = str(exc)
    regions = folder / f"{name(subject_id, bids, None, 'regions_dseg')}.nii.gz"
    if regions.is_file():
        try:
            prediction.regions = np.rint(load_nifti(regions, kind="labelmap").data).astype(int)
        except CsvdnetInputError:
            prediction.regions = None  # regions are a fallback only (the cohort's map first)
    return prediction

