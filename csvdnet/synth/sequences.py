"""Imaging the anatomy: each sequence's contrast, native grid, partial volume, bias and noise.

The signal of a fine-grid voxel is the fraction-weighted sum of its tissues' signals
(:data:`CONTRASTS`, relative to the brightest tissue of the sequence), darkened on
T2*-weighted sequences by susceptibility (:data:`SUSCEPTIBILITY_WEIGHTS`: SWI most, T2 and the
EPI of DWI less, FLAIR and T1 barely). The relative contrasts follow routine clinical 1.5-3 T
protocols:

- FLAIR: CSF dark, WM darker than GM, WMH, gliosis and acute infarcts bright, lacune cavities
  and EPVS CSF-dark;
- T1 (MPRAGE): WM > deep GM > GM > CSF, lesions hypointense, fat (diploe, scalp) bright;
- T2 (TSE): CSF, lacunes and EPVS bright, WMH and infarcts bright, iron-rich nuclei dark;
- SWI: veins, microbleeds and iron dark, CSF bright-ish;
- DWI (b = 1000 s/mm^2): the acute infarct very bright, CSF dark, fat suppressed.

Each sequence is then sampled onto its own native grid (its voxel size, orientation and field
of view, :class:`~csvdnet.synth.profiles.SequenceProtocol`) after the head moved a little
(rigid motion), with exact box partial-volume averaging over the native voxel, a smooth
multiplicative bias field and Rician noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from csvdnet.synth.anatomy import TISSUES, Anatomy
from csvdnet.synth.geometry import Grid, SmoothField, axcodes_matrix
from csvdnet.synth.profiles import SequenceProtocol

__all__ = ["CONTRASTS", "SUSCEPTIBILITY_WEIGHTS", "native_grid", "partial_volume", "render"]

CONTRASTS: dict[str, dict[str, float]] = {
    "flair": dict(csf=0.10, gm=0.62, deep_gm=0.56, wm=0.45, wmh=0.95, gliosis=0.90, rssi=0.85,
                  lacune=0.10, bone=0.03, marrow=0.30, scalp=0.55),
    "t1": dict(csf=0.15, gm=0.50, deep_gm=0.60, wm=0.80, wmh=0.55, gliosis=0.50, rssi=0.52,
               lacune=0.15, bone=0.04, marrow=0.85, scalp=0.95),
    "t2": dict(csf=1.00, gm=0.50, deep_gm=0.42, wm=0.34, wmh=0.72, gliosis=0.78, rssi=0.80,
               lacune=1.00, bone=0.04, marrow=0.45, scalp=0.55),
    "swi": dict(csf=0.80, gm=0.62, deep_gm=0.55, wm=0.50, wmh=0.56, gliosis=0.58, rssi=0.58,
                lacune=0.80, bone=0.04, marrow=0.40, scalp=0.55),
    "dwi": dict(csf=0.08, gm=0.50, deep_gm=0.48, wm=0.42, wmh=0.46, gliosis=0.45, rssi=1.00,
                lacune=0.08, bone=0.02, marrow=0.05, scalp=0.04),
}
"""Relative signal of each tissue class per sequence (air is 0)."""

SUSCEPTIBILITY_WEIGHTS: dict[str, float] = {
    "flair": 0.1, "t1": 0.05, "t2": 0.6, "swi": 2.5, "dwi": 0.5}
"""Signal is multiplied by ``exp(-weight * susceptibility)``."""

_CONTRAST_JITTER = 0.04  # per-subject relative variation of each tissue's signal (scanner, age)
_GAIN_RANGE = (600.0, 1600.0)  # arbitrary scanner units of the brightest tissue
_FOV_MARGIN_MM = 10.0
_FOV_JITTER_MM = 6.0


def native_grid(protocol: SequenceProtocol, head_lo: np.ndarray, head_hi: np.ndarray,
                rng: np.random.Generator) -> Grid:
    """A sequence's acquisition grid: its voxel size and orientation, covering the head.

    The in-plane field of view is the protocol's (square), widened to the head box plus a margin
    where the head is larger; the slices cover the head plus a margin; the field of view is
    centred near the head's centre.

    Args:
        protocol: The sequence's protocol.
        head_lo: World corner of the head's bounding box.
        head_hi: Opposite corner.
        rng: Random generator (field-of-view placement).

    Returns:
        The grid (world = this sequence's scanner frame).
    """
    directions = np.abs(axcodes_matrix(protocol.axcodes))
    extent = directions.T @ (np.asarray(head_hi) - np.asarray(head_lo)) + 2 * _FOV_MARGIN_MM
    if protocol.in_plane_fov_mm is not None:
        extent[:2] = np.maximum(extent[:2], protocol.in_plane_fov_mm)
    world_extent = directions @ extent
    centre = (np.asarray(head_lo) + np.asarray(head_hi)) / 2
    centre += rng.uniform(-1, 1, 3) * _FOV_JITTER_MM
    return Grid.covering(centre - world_extent / 2, centre + world_extent / 2, protocol.spacing,
                         protocol.axcodes)


def _box_kernel(extent: float) -> np.ndarray:
    """Weights averaging a box ``extent`` voxels wide centred on a voxel (fractional ends)."""
    half = extent / 2
    reach = int(np.ceil(half - 0.5))
    taps = np.arange(-reach, reach + 1)
    weights = np.clip(np.minimum(taps + 0.5, half) - np.maximum(taps - 0.5, -half), 0, None)
    return weights / weights.sum()


def partial_volume(volume: np.ndarray, fine: Grid, target: Grid,
                   target_to_fine_world: np.ndarray | None = None) -> np.ndarray:
    """Average a fine-grid volume over each (moved) target voxel, sampled at its centre.

    A box filter the size of a target voxel (along the fine axes), then trilinear sampling at
    the target voxel centres: partial volume for grids that may be rotated by head motion.
    For labels on a grid in the fine grid's own world use the exact
    :func:`~csvdnet.synth.geometry.box_average`.

    Args:
        volume: Array on the fine (RAS) grid.
        fine: The fine grid.
        target: The grid to sample onto.
        target_to_fine_world: 4x4 from the target's world to the fine grid's world (the head's
            motion between the two scans); identity if None.

    Returns:
        float32 array on ``target``; 0 outside the fine grid.
    """
    motion = np.eye(4) if target_to_fine_world is None else target_to_fine_world
    target_to_fine = np.linalg.inv(fine.affine) @ motion @ target.affine
    # Footprint of a target voxel along each fine axis, in fine voxels.
    extents = np.abs(target_to_fine[:3, :3]).sum(axis=1)
    smoothed = np.asarray(volume, dtype=np.float32)
    for axis, extent in enumerate(extents):
        if extent > 1.0 + 1e-6:
            smoothed = ndimage.convolve1d(smoothed, _box_kernel(extent), axis=axis, mode="constant")
    return ndimage.affine_transform(smoothed, target_to_fine[:3, :3], target_to_fine[:3, 3],
                                    output_shape=target.shape, order=1, mode="constant", cval=0.0,
                                    output=np.float32)


def render(anat: Anatomy, protocol: SequenceProtocol, grid: Grid, reference_to_sequence: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Acquire one sequence of the subject.

    Args:
        anat: The subject's anatomy with its lesions.
        protocol: The sequence's protocol.
        grid: Its native grid (world = its scanner frame).
        reference_to_sequence: 4x4 rigid motion of the head from the reference scan.
        rng: Random generator (contrast, bias, noise).

    Returns:
        float32 magnitude image on ``grid``, in scanner units.
    """
    contrast = np.array([CONTRASTS[protocol.name][t] for t in TISSUES], dtype=np.float32)
    contrast *= (1 + _CONTRAST_JITTER * rng.standard_normal(len(TISSUES))).astype(np.float32)
    signal = np.tensordot(contrast, anat.fractions, axes=1)
    weight = SUSCEPTIBILITY_WEIGHTS[protocol.name]
    if weight:  # susceptibility is sparse (iron, veins, microbleeds): only where it is non-zero
        where = np.flatnonzero(anat.susceptibility)
        signal.ravel()[where] *= np.exp(-weight * anat.susceptibility.ravel()[where])
    image = partial_volume(signal, anat.grid, grid, np.linalg.inv(reference_to_sequence))

    lo = grid.voxel_to_world(np.zeros((1, 3)))[0]
    hi = grid.voxel_to_world(np.array(grid.shape)[None] - 1)[0]
    bias = SmoothField.random(rng, np.minimum(lo, hi), np.maximum(lo, hi), order=3,
                              rms=protocol.bias_rms).on_grid(grid)[0]
    gain = rng.uniform(*_GAIN_RANGE)
    image *= gain * np.exp(bias)
    sigma = gain * contrast[TISSUES.index("wm")] / protocol.snr
    # Rician magnitude noise: the modulus of a complex signal with Gaussian noise in each channel.
    real = image + rng.standard_normal(grid.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(grid.shape, dtype=np.float32) * np.float32(sigma)
    return np.hypot(real, imaginary)
