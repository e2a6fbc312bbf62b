"""Sliding-window prediction of the dense outputs over a whole volume.

The network trains on patches, and its GroupNormalization layers normalise each sample with the
statistics of what the sample holds. A whole padded volume holds much more background than a
training patch, so a whole-volume pass shifts those statistics and the dense heads see inputs
they were never trained on. Predicting window by window, each window the size the network
trained on, keeps training and inference alike (nnU-Net's reason for the same design). Windows
overlap and are blended with a Gaussian importance map, so a voxel is judged mostly by windows
that see it near their centre, with context on every side.

The score head is not windowed: it was trained on whole brains and reads the whole volume.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from csvdnet.errors import CsvdnetInputError

GAUSSIAN_SIGMA = 1.0 / 8.0
"""Importance map sigma as a fraction of the window (nnU-Net's choice)."""


def window_origins(shape: Sequence[int], window: Sequence[int],
                   overlap: float) -> list[tuple[int, int, int]]:
    """First voxels of windows that tile ``shape`` with at least ``overlap`` between neighbours.

    Per axis, windows are spread evenly from 0 to ``size - window`` (the last one ends at the
    volume's edge); an axis no larger than the window has a single origin 0.

    Raises:
        CsvdnetInputError: ``overlap`` outside [0, 1).
    """
    if not 0.0 <= overlap < 1.0:
        raise CsvdnetInputError("inference.overlap", f"must be in [0, 1), got {overlap}")
    axes = []
    for size, win in zip(shape, window):
        room = int(size) - int(win)
        if room <= 0:
            axes.append([0])
            continue
        step = max(1, int(win * (1.0 - overlap)))
        count = math.ceil(room / step) + 1
        axes.append(sorted({int(round(i * room / (count - 1))) for i in range(count)}))
    return list(itertools.product(*axes))


def gaussian_importance(window: Sequence[int], sigma: float = GAUSSIAN_SIGMA) -> np.ndarray:
    """``(X, Y, Z)`` Gaussian weights centred on the window, peak 1, never below 1e-3."""
    grids = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2.0) / (sigma * n)) ** 2) for n in window]
    weights = grids[0][:, None, None] * grids[1][None, :, None] * grids[2][None, None, :]
    return np.maximum(weights / weights.max(), 1e-3).astype(np.float32)


def sliding_window(predict: Callable[[np.ndarray], Mapping[str, Any]], image: np.ndarray,
                   window: Sequence[int], overlap: float = 0.5, gaussian: bool = True,
                   tasks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Predict the dense outputs of ``image`` window by window and blend them.

    Args:
        predict: ``(1, *window, C) -> {task: (1, *window, K)}`` (inference mode); outputs that
            are not dense volumes (the score logits) are ignored.
        image: ``(X, Y, Z, C)`` volume, each axis a multiple of the network's stride.
        window: Window size in voxels (a multiple of the network's stride); along an axis no
            longer than the window, the window is the whole axis.
        overlap: Fraction of a window shared with its neighbour along each axis.
        gaussian: Blend with a Gaussian importance map (else a plain average).
        tasks: Dense outputs to keep (default: every dense output).

    Returns:
        ``{task: (X, Y, Z, K)}`` float32.
    """
    shape = np.asarray(image.shape[:3])
    window = np.minimum(np.asarray(window, int), shape)  # a short axis is taken whole
    weights = gaussian_importance(window) if gaussian else np.ones(tuple(window), np.float32)
    sums: dict[str, np.ndarray] = {}
    total = np.zeros(tuple(shape), np.float32)
    for origin in window_origins(shape, window, overlap):
        box = tuple(slice(o, o + w) for o, w in zip(origin, window))
        outputs = predict(image[box][None])
        for task, value in outputs.items():
            value = np.asarray(value)
            if value.ndim != 5 or (tasks is not None and task not in tasks):
                continue
            if task not in sums:
                sums[task] = np.zeros(tuple(shape) + value.shape[-1:], np.float32)
            sums[task][box] += value[0] * weights[..., None]
        total[box] += weights
    return {task: value / total[..., None] for task, value in sums.items()}


def windowed_predictor(forward: Callable[[Any], Mapping[str, Any]], window: Sequence[int],
                       overlap: float, gaussian: bool = True
                       ) -> Callable[[Any], dict[str, np.ndarray]]:
    """``image batch -> outputs``: dense outputs by sliding window, the rest from a whole pass.

    Args:
        forward: The network in inference mode, ``(1, X, Y, Z, C) -> {task: tensor}``.
        window: Window size (the training patch size keeps training and inference alike).
        overlap: Overlap between neighbouring windows.
        gaussian: Gaussian blending.

    Returns:
        A predictor of one-volume batches, outputs as numpy arrays with the batch axis.
    """
    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        # A tensor, not a numpy array: a tf.function then traces once per shape.
        outputs = forward(tf.convert_to_tensor(batch))
        return {task: np.asarray(value) for task, value in outputs.items()}

    def predict(batch: Any) -> dict[str, np.ndarray]:
        batch = np.asarray(batch)
        if batch.shape[0] != 1:
            raise ValueError(f"one volume per batch, got {batch.shape[0]}")
        outputs = run(batch)  # the score head reads the whole volume
        dense = sliding_window(run, batch[0], window, overlap, gaussian)
        outputs.update({task: value[None] for task, value in dense.items()})
        return outputs

    return predict
