"""Automatic brain mask from the co-registered sequences, without learned weights."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

# Sequences that help the automatic brain mask, in order of preference: T2 shows CSF bright
# (filling FLAIR's dark sulci and ventricles), T1 is the next most common whole-brain scan.
_MASK_HELPERS = ("t2", "t1")
_OPEN_RADIUS_MM = 4.0
_CLOSE_RADIUS_MM = 4.0


def _foreground(volume: np.ndarray) -> np.ndarray:
    """Otsu foreground of a volume, its brightest 0.5 % clipped so fat and vessels do not pull
    the threshold up."""
    from skimage.filters import threshold_otsu

    lo, hi = np.percentile(volume, [0.0, 99.5])
    if hi <= lo:
        return np.zeros(volume.shape, dtype=bool)
    return volume > threshold_otsu(np.clip(volume, lo, hi))


def _erode(mask: np.ndarray, radius: float, spacing: np.ndarray) -> np.ndarray:
    if mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(mask, sampling=spacing) > radius


def _dilate(mask: np.ndarray, radius: float, spacing: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == np.argmax(sizes)


def auto_brain_mask(volumes: Sequence[np.ndarray], spacing: Sequence[float]) -> np.ndarray:
    """A brain mask from one or more co-registered volumes, without any learned weights.

    Method: the union of each volume's Otsu foreground (brightest 0.5 % clipped first); an
    erosion by 4 mm, of which the largest connected component is kept and dilated back inside
    the foreground (an opening that cuts the thin bridges between brain and scalp, optic nerves,
    neck); holes filled (ventricles, dark on FLAIR / T1); a 4 mm closing (surface sulci) and a
    last hole filling. Distances are Euclidean in mm, so anisotropic voxels are handled.

    Works on skull-stripped images (the foreground is the brain) and on skull-on images where a
    dark rim (skull, CSF) separates brain from scalp. Limits: it is not a skull stripper. On
    skull-on images it may keep dura, venous sinuses, eye globes or scalp where they touch the
    brain over more than ~8 mm, and it can lose dark brain regions at the surface (large
    cortical infarcts, atrophy with wide sulci) or fail under a strong bias field or when the
    head fills the field of view edge to edge. In this package the mask only sets the crop box
    (with a margin) and the normalisation statistics, both tolerant to such errors; when an
    exact brain mask matters, compute one with a dedicated tool and use ``brain_mask="label"``.

    Args:
        volumes: 3-D arrays on one grid (the first is the reference sequence).
        spacing: Voxel size in mm along each array axis.

    Returns:
        Boolean mask on that grid (empty if nothing stands out from the background).
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    foreground = np.zeros(volumes[0].shape, dtype=bool)
    for volume in volumes:
        foreground |= _foreground(volume)
    if not foreground.any():
        return foreground
    core = _erode(foreground, _OPEN_RADIUS_MM, spacing)
    core = _largest_component(core if core.any() else foreground)
    mask = ndimage.binary_fill_holes(_dilate(core, _OPEN_RADIUS_MM, spacing) & foreground)
    mask = _erode(_dilate(mask, _CLOSE_RADIUS_MM, spacing), _CLOSE_RADIUS_MM, spacing)
    return ndimage.binary_fill_holes(mask)
