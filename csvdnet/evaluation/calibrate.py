"""Thresholds and smallest lesion sizes calibrated on a run's validation subjects, kept with it.

``calibrate_run(run_dir)`` predicts every validation subject of the run once (working grid, the
run's sliding window, its ``best/`` weights), then searches, per dense task:

- ``wmh``: the probability threshold that maximises the pooled Dice;
- ``rssi``, ``lacune``: the threshold *and* the smallest component kept (mm^3) that maximise the
  pooled lesion-wise F1 (26-connected; ties to the higher Dice);
- ``cmb``, ``epvs``: the heatmap peak threshold that maximises the pooled detection F1
  (:func:`csvdnet.evaluation.detection.match_points`); ties to fewer false positives. For
  ``epvs`` also the ridge fraction (:data:`RIDGES`; ``inference.peak_ridge``): peaks on a higher
  peak's ridge dropped outside the basal ganglia of the cache's region map, as predict drops
  them outside the subject's (:func:`csvdnet.inference.postprocess.on_a_ridge`).

and writes ``<run>/calibration.json``. :func:`csvdnet.run.record.run_config` applies it on top
of the run's ``inference`` section, so ``csvdnet predict``, ``csvdnet export`` and the held-out
check use the calibrated values. A task with fewer than :data:`MIN_LESIONS` lesions in the
validation subjects, or found at no threshold, keeps its configured values, and the file says
why. The search sees only
validation subjects: thresholds fitted on the subjects they are then measured on would flatter
the model.

The values are chosen on the working grid (1.5 mm for the demo); prediction thresholds the
probabilities after interpolating them to each subject's own grid, where a component's volume in
mm^3 is the same to within partial-volume effects.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.errors import CsvdnetInputError
from csvdnet.evaluation.detection import match_points
from csvdnet.evaluation.metrics import CONNECTIVITY, LesionCounts, dice_from_counts
from csvdnet.fsutil import write_text_atomic
from csvdnet.atlas import REGION_CODES
from csvdnet.inference.postprocess import (PEAK_MIN_DISTANCE_MM, RIDGE_EXEMPT_REGIONS,
                                           SMALLEST_LESION_MM3, find_peaks, on_a_ridge)
from csvdnet.run.calibration import CALIBRATION_FILE, CALIBRATION_FORMAT

logger = logging.getLogger(__name__)

THRESHOLDS = tuple(round(float(v), 2) for v in np.arange(0.05, 0.951, 0.05))
"""Candidate probability / heatmap thresholds."""
MIN_LESION_MM3 = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0)
"""Candidate smallest kept components (mm^3) of the small-lesion tasks."""
SIZE_CALIBRATED = ("rssi", "lacune")
"""Segmentation tasks whose smallest kept component is calibrated with their threshold."""
SMALLEST_LACUNE_MM3 = SMALLEST_LESION_MM3["lacune"]
"""A lacune is 3-15 mm across (STRIVE): the smallest is a 3 mm sphere, ~14.1 mm^3."""
RIDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""Candidate ridge fractions of the EPVS peaks (0: off; :func:`on_a_ridge`)."""
RIDGE_TASKS = ("epvs",)
"""Detection tasks whose ridge fraction is calibrated: tubes, whose heatmaps ridge."""
MIN_LESIONS = 5
"""Fewest validation lesions (or points) a task needs to be calibrated: with one lesion any
threshold that finds it scores F1 1 and the search would fit noise."""


@dataclasses.dataclass
class TaskCalibration:
    """What the search chose for one task, and what it measured.

    Attributes:
        threshold: Chosen threshold.
        min_lesion_mm3: Chosen smallest component (segmentation tasks; None for detection).
        metric: Name of the metric maximised.
        value: Its pooled value at the choice.
        configured: The metric at the run's configured threshold and size.
        lesions: True lesions / points in the validation subjects.
        details: Counts at the choice (lesion counts, or tp / fp / fn and fp per subject).
        ridge: Chosen ridge fraction (detection tasks; 0 = off), or None.
    """

    threshold: float
    min_lesion_mm3: float | None
    metric: str
    value: float
    configured: float
    lesions: int
    details: dict[str, float]
    ridge: float | None = None


def _component_sizes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, count = ndimage.label(mask, structure=CONNECTIVITY)
    return labels, np.bincount(labels.ravel(), minlength=count + 1)


def _lesion_stats(truth: np.ndarray, true_labels: np.ndarray, n_true: int,
                  probability: np.ndarray, threshold: float,
                  min_voxels: Sequence[float]) -> list[tuple[LesionCounts, float, float]]:
    """For each smallest size: lesion counts, intersection and |P| + |T| of one subject
    (``true_labels``, ``n_true``: the truth's 26-connected components, labelled once)."""
    labels, sizes = _component_sizes(probability >= threshold)
    out = []
    for smallest in min_voxels:
        keep = sizes >= smallest
        keep[0] = False
        kept = keep[labels]
        detected = np.count_nonzero(np.unique(true_labels[kept]))
        hit_labels = np.unique(labels[truth & kept])
        counts = LesionCounts(n_true, int(detected), int(np.count_nonzero(keep)),
                              int(np.count_nonzero(hit_labels)))
        out.append((counts, float(np.sum(kept & truth)), float(np.sum(kept) + np.sum(truth))))
    return out


def _crop(truth: np.ndarray, probability: np.ndarray, lowest: float) -> tuple[np.ndarray, ...]:
    """Both arrays cut to the box around the truth and every voxel at or above ``lowest``
    (plus one voxel), so that labelling small-lesion maps costs little."""
    where = np.argwhere(truth | (probability >= lowest))
    if not len(where):
        return truth[:1, :1, :1], probability[:1, :1, :1]
    lo = np.maximum(where.min(axis=0) - 1, 0)
    hi = where.max(axis=0) + 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    return truth[box], probability[box]


def calibrate_segmentation(task: str, subjects: Iterable[tuple[np.ndarray, np.ndarray, float]],
                           configured: tuple[float, float],
                           thresholds: Sequence[float] = THRESHOLDS,
                           sizes_mm3: Sequence[float] = MIN_LESION_MM3) -> TaskCalibration:
    """Best threshold (and, for RSSI / lacunes, smallest size) of a segmentation task.

    Args:
        task: ``wmh``, ``rssi`` or ``lacune``.
        subjects: ``(truth bool (X, Y, Z), probability (X, Y, Z), voxel volume mm^3)``.
        configured: The run's ``(threshold, min_lesion_mm3)``.
        thresholds: Candidate thresholds.
        sizes_mm3: Candidate smallest sizes (used for :data:`SIZE_CALIBRATED` tasks, those
            above the task's smallest lesion,
            :data:`csvdnet.inference.postprocess.SMALLEST_LESION_MM3`, left out).
    """
    limit = SMALLEST_LESION_MM3.get(task, np.inf)
    sizes = (tuple(s for s in sizes_mm3 if s <= limit) or (0.0,)) if task in SIZE_CALIBRATED \
        else (configured[1],)
    candidates = sorted({*thresholds, configured[0]})
    grid_sizes = sorted({*sizes, configured[1]})
    totals: dict[tuple[float, float], list[Any]] = {}
    lesions = 0
    for truth, probability, voxel_mm3 in subjects:
        truth, probability = _crop(truth, probability, min(candidates))
        true_labels, n_true = ndimage.label(truth, structure=CONNECTIVITY)
        lesions += n_true
        for threshold in candidates:
            stats = _lesion_stats(truth, true_labels, n_true, probability, threshold,
                                  [s / voxel_mm3 for s in grid_sizes])
            for size, (counts, overlap, total) in zip(grid_sizes, stats):
                entry = totals.setdefault((threshold, size), [LesionCounts(), 0.0, 0.0])
                entry[0] = entry[0] + counts
                entry[1] += overlap
                entry[2] += total

    def metrics(key: tuple[float, float]) -> tuple[float, float]:
        counts, overlap, total = totals[key]
        dice = dice_from_counts(overlap, total)
        return (counts.f1, dice) if task in SIZE_CALIBRATED else (dice, counts.f1)

    allowed = [k for k in totals if k[1] in sizes]
    best = max(allowed, key=lambda k: (*metrics(k), -abs(k[0] - configured[0])))
    counts, overlap, total = totals[best]
    return TaskCalibration(
        threshold=best[0], min_lesion_mm3=best[1],
        metric="lesion_f1" if task in SIZE_CALIBRATED else "dice", value=metrics(best)[0],
        configured=metrics((configured[0], configured[1]))[0], lesions=lesions,
        details={"dice": dice_from_counts(overlap, total), "lesion_f1": counts.f1,
                 "lesions_true": counts.true, "lesions_detected": counts.detected,
                 "lesions_predicted": counts.predicted, "lesions_hit": counts.hits})


def calibrate_detection(subjects: Sequence[tuple[np.ndarray, np.ndarray, Sequence[float]]],
                        configured: float,
                        thresholds: Sequence[float] = THRESHOLDS,
                        neighbourhood: str = "cube",
                        ridges: Sequence[float] = (0.0,),
                        configured_ridge: float = 0.0,
                        exempt: Sequence[np.ndarray | None] | None = None) -> TaskCalibration:
    """Best heatmap peak threshold (and ridge fraction) of a detection task.

    Args:
        subjects: ``(true points (M, 3) voxels, heatmap (X, Y, Z), spacing mm)``.
        configured: The run's threshold.
        thresholds: Candidate thresholds.
        neighbourhood: What a peak is the maximum of (the run's
            ``inference.peak_neighbourhood``, as predict finds them).
        ridges: Candidate ridge fractions (:func:`on_a_ridge`; 0 = off).
        configured_ridge: The run's ridge fraction (wins ties).
        exempt: Per subject, a bool map on the heatmap's grid of where no peak is dropped for
            a ridge (the basal ganglia), or None.
    """
    candidates = sorted({*thresholds, configured})
    # Local maxima do not depend on the threshold: find them once, then filter by value.
    # As predict finds them; suppression keeps the higher of two close peaks, so it commutes
    # with the threshold, and so does the ridge test (only a higher peak is a reference).
    peaks = [find_peaks(heatmap, min(candidates), spacing=spacing, neighbourhood=neighbourhood,
                        min_distance_mm=PEAK_MIN_DISTANCE_MM[neighbourhood])
             for _, heatmap, spacing in subjects]
    exempt = list(exempt) if exempt is not None else [None] * len(subjects)
    counts: dict[tuple[float, float], np.ndarray] = {}
    for ridge in sorted({*ridges, configured_ridge}):
        kept = []
        for (_, heatmap, spacing), (points, values), where in zip(subjects, peaks, exempt):
            if ridge > 0.0 and len(points):
                inside = None
                if where is not None:
                    voxels = np.clip(np.rint(points).astype(int), 0,
                                     np.asarray(where.shape[:3]) - 1)
                    inside = np.asarray(where)[tuple(voxels.T)]
                keep = ~on_a_ridge(heatmap, points, values, ridge, spacing, exempt=inside)
                points, values = points[keep], values[keep]
            kept.append((points, values))
        for threshold in candidates:
            total = np.zeros(3, int)
            for (true, _, spacing), (points, values) in zip(subjects, kept):
                total += match_points(points[values >= threshold], true, spacing)
            counts[(ridge, threshold)] = total

    def f1(key: tuple[float, float]) -> float:
        tp, fp, fn = counts[key]
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0

    best = max(counts, key=lambda k: (f1(k), -counts[k][1], -abs(k[1] - configured),
                                      k[0] == configured_ridge))
    tp, fp, fn = (int(v) for v in counts[best])
    return TaskCalibration(threshold=best[1], min_lesion_mm3=None, metric="f1", value=f1(best),
                           configured=f1((configured_ridge, configured)), lesions=tp + fn,
                           details={"tp": tp, "fp": fp, "fn": fn,
                                    "fp_per_subject": fp / max(len(subjects), 1)},
                           ridge=best[0])


def calibrate_run(run_dir: str | Path, *, weights: str = "best",
                  window: Sequence[int] | None = None, write: bool = True) -> dict[str, Any]:
    """Calibrate a run's thresholds and smallest sizes on its validation subjects.

    Args:
        run_dir: The run directory (``split.json`` names the validation subjects).
        weights: ``"best"`` or ``"last"``.
        window: Sliding window (default: the run's ``inference.window``).
        write: Write ``<run>/calibration.json`` (atomically).

    Returns:
        The calibration record (what ``calibration.json`` holds).

    Raises:
        CsvdnetInputError: Not a run, no weights, or no validation subjects.
    """
    from csvdnet.cache.read import load_cached_subject
    from csvdnet.losses import PEAK_THRESHOLD
    from csvdnet.evaluation.run_on_cache import RunOnCache
    from csvdnet.run.precision import dtype_policy, resolve_policy
    from csvdnet.run.record import run_config

    run_dir = Path(run_dir)
    cfg = run_config(run_dir, calibrated=False)
    split_path = run_dir / "split.json"
    if not split_path.is_file():
        raise CsvdnetInputError(run_dir, "no split.json: not a training run")
    val_ids = json.loads(split_path.read_text(encoding="utf-8"))["validation"]
    if not val_ids:
        raise CsvdnetInputError(split_path, "the run has no validation subjects to calibrate on")
    cache = cfg.train.val_cache or cfg.data.cache
    with dtype_policy(resolve_policy(cfg.train.mixed_precision)):
        setup = RunOnCache(run_dir, cfg, weights, cache, val_ids, window)
        kept: dict[str, list[tuple[Any, ...]]] = {}
        exempt: list[np.ndarray | None] = []  # per subject with EPVS kept, where no ridge drops
        for (image, targets, sample_weights), spacing, subject_id in zip(
                setup.dataset, setup.spacing, setup.ids):
            outputs = setup.predict(image)
            for task in setup.tasks:
                if task not in cfg.inference.thresholds or float(sample_weights[task][0]) <= 0:
                    continue
                truth = np.asarray(targets[task][0, ..., 0])
                probability = np.asarray(outputs[task][0, ..., 0], np.float32)
                if task in SEGMENTATION_TASKS:
                    kept.setdefault(task, []).append((truth > 0.5, probability,
                                                      float(np.prod(spacing))))
                elif task in DETECTION_TASKS:
                    kept.setdefault(task, []).append((np.argwhere(truth >= PEAK_THRESHOLD),
                                                      probability, spacing))
                    if task in RIDGE_TASKS:
                        exempt.append(_ridge_exempt(load_cached_subject(cache, subject_id),
                                                    probability.shape))
    thresholds = dict(cfg.inference.thresholds)
    sizes = dict(cfg.inference.min_lesion_mm3)
    ridges = dict(cfg.inference.peak_ridge)
    tasks: dict[str, Any] = {}
    for task, subjects in kept.items():
        if task in SEGMENTATION_TASKS:
            found = calibrate_segmentation(task, subjects,
                                           (thresholds[task], sizes.get(task, 0.0)))
        else:
            ridged = task in RIDGE_TASKS
            found = calibrate_detection(
                subjects, thresholds[task],
                neighbourhood=cfg.inference.peak_neighbourhood.get(task, "cube"),
                ridges=RIDGES if ridged else (0.0,),
                configured_ridge=cfg.inference.peak_ridge.get(task, 0.0),
                exempt=exempt if ridged else None)
        if found.lesions < MIN_LESIONS:
            tasks[task] = {"calibrated": False,
                           "reason": f"{found.lesions} lesions in the validation subjects, "
                                     f"fewer than {MIN_LESIONS}"}
            continue
        if found.value <= 0.0:
            tasks[task] = {"calibrated": False,
                           "reason": f"nothing found at any threshold ({found.metric} 0)"}
            continue
        thresholds[task] = found.threshold
        if found.min_lesion_mm3 is not None:
            sizes[task] = found.min_lesion_mm3
        if found.ridge is not None and task in RIDGE_TASKS:
            ridges[task] = found.ridge
        tasks[task] = {"calibrated": True, **dataclasses.asdict(found)}
        logger.info("%s: threshold %.2f%s%s, %s %.3f (configured %.3f) on %d lesions", task,
                    found.threshold, "" if found.min_lesion_mm3 is None
                    else f", smallest {found.min_lesion_mm3:g} mm3",
                    f", ridge {found.ridge:g}" if task in RIDGE_TASKS else "", found.metric,
                    found.value, found.configured, found.lesions)
    record = {"format": CALIBRATION_FORMAT, "version": 1, "weights": weights,
              "subjects": list(setup.ids),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds"),
              "thresholds": thresholds, "min_lesion_mm3": sizes, "peak_ridge": ridges,
              "tasks": tasks}
    if write:
        write_text_atomic(run_dir / CALIBRATION_FILE, json.dumps(record, indent=1) + "\n")
    return record


def _ridge_exempt(subject: Any, shape: Sequence[int]) -> np.ndarray | None:
    """Where no EPVS peak is dropped for a ridge on a cached subject's working grid (its
    region map's :data:`RIDGE_EXEMPT_REGIONS`), or None when the cache has no region map."""
    regions = subject.masks.get("regions")
    if regions is None:
        return None
    codes = [REGION_CODES[name] for name in RIDGE_EXEMPT_REGIONS]
    where = np.zeros(tuple(shape[:3]), bool)
    common = tuple(slice(0, min(a, b)) for a, b in zip(shape[:3], regions.shape[:3]))
    where[common] = np.isin(np.asarray(regions)[common], codes)
    return where
