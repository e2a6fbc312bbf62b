"""TensorBoard summaries: scalars of training and validation, overlays of a validation subject.

Two writers, ``logs/train`` and ``logs/validation``, use the same tags (``loss/<task>``), so
TensorBoard draws the training and validation curves of a task in one chart. Validation adds
``metrics/<name>`` and images ``overlay/<sequence>``: an axial slice of FLAIR, SWI and DWI (those
the model reads), ground truth on the left and prediction on the right, each marker in its own
colour, rendered in numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

TASK_COLOURS = {"wmh": (255, 64, 64), "rssi": (255, 220, 0), "lacune": (40, 140, 255),
                "cmb": (0, 230, 120), "epvs": (230, 60, 255)}
"""Overlay colour per dense task (RGB)."""
OVERLAY_SEQUENCES = {"flair": ("wmh", "lacune", "epvs"), "swi": ("cmb",), "dwi": ("rssi",)}
"""Sequences shown and the markers drawn on each (where the marker is seen on MRI)."""
ALPHA = 0.55


def _grey(slice_: np.ndarray) -> np.ndarray:
    """Window a z-scored slice to [0, 1] between its 1st and 99th percentiles."""
    lo, hi = np.percentile(slice_, [1.0, 99.0])
    return np.clip((slice_ - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def overlay(grey: np.ndarray, masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Blend coloured masks onto a grey slice.

    Args:
        grey: ``(H, W)`` intensities in [0, 1].
        masks: Boolean ``(H, W)`` mask per task (coloured by :data:`TASK_COLOURS`).

    Returns:
        uint8 ``(H, W, 3)``.
    """
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for task, mask in masks.items():
        colour = np.asarray(TASK_COLOURS[task], float) / 255.0
        rgb[mask] = (1.0 - ALPHA) * rgb[mask] + ALPHA * colour
    return np.round(rgb * 255.0).astype(np.uint8)


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice of a canonical RAS volume, anterior up and the subject's right on the right."""
    return np.flipud(volume[:, :, z].T)


def overlay_images(image: np.ndarray, channels: Sequence[str], targets: Mapping[str, np.ndarray],
                   outputs: Mapping[str, np.ndarray],
                   thresholds: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Truth | prediction panels of one subject's axial slice for each overlay sequence.

    Each sequence's slice is the one where the prediction of its markers is most wrong (missed
    plus false voxels), else the one with the most ground truth, else the middle slice: the
    panel shows what the network still gets wrong, even a microbleed far from the WMH.

    Args:
        image: ``(X, Y, Z, C)`` working-grid image, channels in ``channels`` order.
        channels: Channel names.
        targets: ``(X, Y, Z, 1)`` targets by task (masks or heatmaps).
        outputs: ``(X, Y, Z, 1)`` predictions by task.
        thresholds: Threshold per task for the predicted masks.

    Returns:
        uint8 ``(Y, 2 X, 3)`` panel per sequence that is an input and has a marker validated.
    """
    shown = {seq: [t for t in tasks if t in targets and t in outputs]
             for seq, tasks in OVERLAY_SEQUENCES.items() if seq in channels}
    shown = {seq: tasks for seq, tasks in shown.items() if tasks}
    truth = {t: targets[t][..., 0] > 0.5 for tasks in shown.values() for t in tasks}
    panels = {}
    predicted = {t: outputs[t][..., 0] >= thresholds[t] for t in truth}
    for seq, tasks in shown.items():
        errors = sum((truth[t] != predicted[t]).sum(axis=(0, 1)) for t in tasks)
        foreground = sum(truth[t].sum(axis=(0, 1)) for t in tasks)
        z = (int(np.argmax(errors)) if errors.any() else
             int(np.argmax(foreground)) if foreground.any() else image.shape[2] // 2)
        grey = _grey(_axial(image[..., channels.index(seq)], z))
        left = overlay(grey, {t: _axial(truth[t], z) for t in tasks})
        right = overlay(grey, {t: _axial(predicted[t], z) for t in tasks})
        panels[seq] = np.concatenate([left, right], axis=1)
    return panels


class Summaries:
    """The run's TensorBoard writers (a no-op on workers other than the chief).

    Args:
        logs: ``<run_dir>/logs``.
        enabled: Write (the chief) or not.
    """

    def __init__(self, logs: Path, enabled: bool = True):
        self.enabled = enabled
        self.writers = {}
        if enabled:
            self.writers = {name: tf.summary.create_file_writer(str(logs / name))
                            for name in ("train", "validation")}

    def scalars(self, writer: str, values: Mapping[str, float], step: int) -> None:
        """Write ``{tag: value}`` to the ``"train"`` or ``"validation"`` writer."""
        if not self.enabled:
            return
        with self.writers[writer].as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, value)

    def images(self, images: Mapping[str, np.ndarray], step: int) -> None:
        """Write uint8 ``(H, W, 3)`` images to the validation writer."""
        if not self.enabled:
            return
        with self.writers["validation"].as_default(step=step):
            for tag, image in images.items():
                tf.summary.image(tag, image[None])

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
