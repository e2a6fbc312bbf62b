"""The region atlas placed on a subject's grid through a world -> MNI mapping.

A subject gets the map through a world -> MNI mapping: :func:`regions_in_subject` takes a 4x4
matrix (e.g. from :func:`world_to_mni_from_mask`, or from a registration); the synthetic cohort
samples the same atlas through its own non-linear warp with :meth:`Atlas.sample`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from csvdnet.atlas.template import load_atlas

__all__ = ["regions_in_subject", "world_to_mni_from_mask"]


def regions_in_subject(shape: tuple[int, int, int], affine: np.ndarray,
                       world_to_mni: np.ndarray | None = None, *,
                       resolution_mm: Literal[1, 2] = 2) -> np.ndarray:
    """The region map on a subject's grid, through an affine world -> MNI mapping.

    Args:
        shape: The subject grid's shape.
        affine: Its 4x4 voxel -> world (scanner RAS mm) transform.
        world_to_mni: 4x4 world mm -> MNI mm (e.g. :func:`world_to_mni_from_mask` or an affine
            registration); ``None`` when the subject is already in MNI space.
        resolution_mm: Atlas resolution to sample.

    Returns:
        uint8 array of ``shape`` with codes from :data:`REGION_CODES` (nearest neighbour).
    """
    atlas = load_atlas(resolution_mm)
    world_to_mni = np.eye(4) if world_to_mni is None else np.asarray(world_to_mni, dtype=np.float64)
    affine = np.asarray(affine, dtype=np.float64)
    voxel_to_atlas = np.linalg.inv(atlas.affine) @ world_to_mni @ affine
    return ndimage.affine_transform(atlas.regions, voxel_to_atlas[:3, :3], voxel_to_atlas[:3, 3],
                                    output_shape=tuple(int(n) for n in shape), order=0,
                                    mode="constant", cval=0)


def world_to_mni_from_mask(mask: np.ndarray, affine: np.ndarray, *,
                           resolution_mm: Literal[1, 2] = 2) -> np.ndarray:
    """A coarse world -> MNI affine matching the centre and extent of a brain mask.

    Matches the centroid and the per-axis standard deviation (along world x, y, z) of the
    subject's brain mask to the atlas's: translation plus anisotropic scaling, no rotation.
    Good to a few mm for heads scanned close to the scanner axes; use a registration when a
    head is strongly tilted.

    Args:
        mask: Brain mask (non-zero = brain) on the subject grid.
        affine: The grid's 4x4 voxel -> world transform.
        resolution_mm: Atlas resolution to compare with.

    Returns:
        4x4 world mm -> MNI mm.

    Raises:
        ValueError: An empty mask.
    """
    atlas = load_atlas(resolution_mm)
    affine = np.asarray(affine, dtype=np.float64)
    subject_mean, subject_std = _world_moments(np.asarray(mask) > 0, affine)
    mni_mean, mni_std = _world_moments(atlas.brain, atlas.affine)
    scale = mni_std / subject_std
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag(scale)
    matrix[:3, 3] = mni_mean - scale * subject_mean
    return matrix


def _world_moments(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    voxels = np.argwhere(mask)
    if voxels.size == 0:
        raise ValueError("the brain mask is empty")
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    return world.mean(axis=0), world.std(axis=0)
