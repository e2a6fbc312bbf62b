"""The Python side of the data pipeline: subject metadata and region reads from the cache.

Everything random is decided in the graph and passed in as numbers, so these functions are
deterministic. Reads copy only the requested region out of the memory-mapped arrays.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Mapping, Sequence

import numpy as np

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.cache import CachedSubject, load_cache, load_cached_subject
from csvdnet.errors import CsvdnetInputError

# Lesion voxels kept per subject and mask for picking patch centres: a strided subsample
# (deterministic) keeps memory bounded for confluent WMH, still spread over every lesion.
MAX_LESION_CANDIDATES = 1024
# Subjects kept open (memory maps); bounded because each map holds a file descriptor.
OPEN_SUBJECTS = 32


def read_box(array: np.ndarray, lo: np.ndarray, size: np.ndarray,
             channels: Sequence[int] | None = None) -> np.ndarray:
    """Copy the box ``[lo, lo + size)`` out of a (memory-mapped) volume, zero outside it.

    Args:
        array: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` array.
        lo: First voxel of the box (may be negative).
        size: Box shape (3 values).
        channels: Channels to keep, in this order (``None`` = all).

    Returns:
        A new array of shape ``size`` (+ channels), same dtype.
    """
    lo = np.asarray(lo, np.int64)
    size = np.asarray(size, np.int64)
    shape = np.asarray(array.shape[:3])
    src_lo = np.clip(lo, 0, shape)
    src_hi = np.clip(lo + size, 0, shape)
    tail = array.shape[3:] if channels is None else (len(channels),)
    out = np.zeros(tuple(size) + tail, array.dtype)
    if np.any(src_hi <= src_lo):
        return out
    src = tuple(slice(a, b) for a, b in zip(src_lo, src_hi))
    dst = tuple(slice(a - l, b - l) for a, b, l in zip(src_lo, src_hi, lo))
    region = array[src]  # still a view of the map: nothing is read yet
    out[dst] = region if channels is None else region[..., list(channels)]
    return out


def whole_brain_shape(cache_dir: str | os.PathLike) -> tuple[int, int, int]:
    """Fixed shape of whole-brain training samples for a cache.

    The largest subject extent along each axis over every subject of the cache (not just a
    training split, so the shape does not change with the split), rounded up to the cache's
    ``pad_multiple`` (the model stride).

    Args:
        cache_dir: The preprocessed cache.

    Returns:
        ``(X, Y, Z)``.
    """
    index, ids = load_cache(cache_dir)
    multiple = int(index["preprocess"]["pad_multiple"])
    extent = np.max([load_cached_subject(cache_dir, s).image.shape[:3] for s in ids], axis=0)
    return tuple(int(math.ceil(e / multiple) * multiple) for e in extent)


class CacheSource:
    """Subjects of a cache as the pipeline sees them.

    Args:
        cache_dir: The preprocessed cache.
        subject_ids: Subjects to draw from, in order.
        channels: Input channels, in order (a subset / reordering of the cache's channels).
        tasks: Label tasks served (segmentation and detection task names; others ignored).
        lesion_task_weights: Relative odds that a lesion-centred patch picks each task (among
            the tasks the subject has lesions of); a task not named weighs 1, 0 never picks it.

    Attributes:
        subject_ids: As given.
        segmentation: Segmentation tasks served, in order (mask channels of :meth:`read`).
        detection: Detection tasks served, in order (point outputs of :meth:`read`).
        shapes: int32 ``(N, 3)`` working-grid shape per subject.
        spacing: float32 ``(N, 3)`` voxel size in mm per subject.
        present: float32 ``(N, len(segmentation + detection))`` 1 where the subject has the label.
        total_score: float32 ``(N,)`` rated total SVD score, NaN where not rated.

    Raises:
        CsvdnetInputError: A subject or channel is not in the cache.
    """

    def __init__(self, cache_dir: str | os.PathLike, subject_ids: Sequence[str],
                 channels: Sequence[str], tasks: Sequence[str],
                 lesion_task_weights: Mapping[str, float] | None = None):
        index, cached = load_cache(cache_dir)
        self.cache_dir = cache_dir
        self.subject_ids = list(subject_ids)
        if not self.subject_ids:
            raise CsvdnetInputError(cache_dir, "no subjects to draw training data from")
        unknown = sorted(set(self.subject_ids) - set(cached))
        if unknown:
            raise CsvdnetInputError(cache_dir, f"subject {unknown[0]!r} is not in the cache")
        cache_channels = list(index["channels"])
        missing = [c for c in channels if c not in cache_channels]
        if missing:
            raise CsvdnetInputError(cache_dir, f"channel {missing[0]!r} is not in the cache "
                                               f"(it has {', '.join(cache_channels)})")
        self.channels = [cache_channels.index(c) for c in channels]
        self.segmentation = [t for t in tasks if t in SEGMENTATION_TASKS]
        self.detection = [t for t in tasks if t in DETECTION_TASKS]
        subjects = [load_cached_subject(cache_dir, s) for s in self.subject_ids]
        self.shapes = np.array([s.image.shape[:3] for s in subjects], np.int32)
        self.spacing = np.array([s.spacing for s in subjects], np.float32)
        self.present = np.array([[t in s.labels for t in self.segmentation + self.detection]
                                 for s in subjects], np.float32).reshape(len(subjects), -1)
        self.total_score = np.array([_total_score(s) for s in subjects], np.float32)
        self._points = [{t: np.asarray(s.points.get(t, np.zeros((0, 3))), np.float32).reshape(-1, 3)
                         for t in self.detection} for s in subjects]
        self.lesion_task_weights = dict(lesion_task_weights or {})
        self._candidates: dict[int, list[tuple[float, np.ndarray]]] = {}
        self._open = functools.lru_cache(maxsize=OPEN_SUBJECTS)(self._load)

    def __len__(self) -> int:
        return len(self.subject_ids)

    def _load(self, subject: int) -> CachedSubject:
        return load_cached_subject(self.cache_dir, self.subject_ids[subject])

    def _lesion_candidates(self, subject: int) -> list[tuple[float, np.ndarray]]:
        """Per served task with lesions and a weight > 0: ``(weight, (n, 3) float voxel
        positions)`` to centre patches on.

        Built on first use (it reads whole masks once) and kept; concurrent first uses build
        the same lists, so no lock is needed.
        """
        if subject not in self._candidates:
            cached = self._open(subject)
            found = [(t, np.argwhere(cached.masks[t]).astype(np.float32))
                     for t in self.segmentation if t in cached.masks]
            found += [(t, self._points[subject][t]) for t in self.detection]
            self._candidates[subject] = [
                (weight, c[::math.ceil(len(c) / MAX_LESION_CANDIDATES)]) for t, c in found
                if len(c) and (weight := float(self.lesion_task_weights.get(t, 1.0))) > 0.0]
        return self._candidates[subject]

    def patch_origin(self, subject: np.integer, on_lesion: np.bool_, draws: np.ndarray,
                     patch: np.ndarray) -> np.ndarray:
        """First voxel of a training patch.

        On a lesion: a random lesion voxel / point of a served task that has lesions, the task
        drawn with the odds of ``lesion_task_weights`` (uniform by default), jittered within the
        central half of the patch so lesions are not always dead centre. Otherwise (or when the
        subject has no lesions of a task with weight > 0) uniform over the positions that keep
        the patch inside the volume, centred where the volume is smaller than the patch.

        Args:
            subject: Subject position in :attr:`subject_ids`.
            on_lesion: Centre the patch on a lesion.
            draws: 5 uniform numbers in [0, 1): task, lesion, and one per axis.
            patch: Patch shape (3 values).

        Returns:
            int32 ``(3,)``.
        """
        patch = np.asarray(patch, np.int64)
        candidates = self._lesion_candidates(int(subject)) if on_lesion else []
        if candidates:
            odds = np.cumsum([weight for weight, _ in candidates])
            pick = min(int(np.searchsorted(odds / odds[-1], draws[0], side="right")),
                       len(candidates) - 1)
            task = candidates[pick][1]
            centre = task[int(draws[1] * len(task))]
            jitter = (draws[2:] - 0.5) * patch / 2
            return np.floor(centre - (patch - 1) / 2 + jitter + 0.5).astype(np.int32)
        room = self.shapes[subject] - patch
        uniform = np.floor(draws[2:] * (room + 1))
        return np.where(room >= 0, uniform, np.floor_divide(room, 2)).astype(np.int32)

    def read(self, subject: np.integer, lo: np.ndarray,
             size: np.ndarray) -> tuple[np.ndarray, ...]:
        """Read a region of one subject.

        Args:
            subject: Subject position in :attr:`subject_ids`.
            lo: First voxel of the region (may lie outside the volume: zeros there).
            size: Region shape.

        Returns:
            ``(image, masks, *points)``: float32 ``(*size, C)`` in the served channel order;
            uint8 ``(*size, len(segmentation))`` masks (zeros for a label the subject lacks:
            placeholders, masked by the label mask); and per detection task float32
            ``(n, 3)`` points in region coordinates (all of them: the graph keeps those whose
            Gaussian reaches the patch).
        """
        cached = self._open(int(subject))
        image = read_box(cached.image, lo, size, self.channels)
        masks = np.zeros(tuple(size) + (len(self.segmentation),), np.uint8)
        for i, task in enumerate(self.segmentation):
            if task in cached.masks:
                masks[..., i] = read_box(cached.masks[task], lo, size)
        points = [self._points[int(subject)][t] - np.asarray(lo, np.float32)
                  for t in self.detection]
        return (image.astype(np.float32, copy=False), masks, *points)


def _total_score(subject: CachedSubject) -> float:
    score = (subject.ratings or {}).get("total_score")
    return math.nan if score is None else float(score)
