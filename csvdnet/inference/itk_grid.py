"""Volumes with RAS affines to and from SimpleITK images, and the coarse working copy that the
template registrations (:mod:`csvdnet.inference.regions`, :mod:`csvdnet.inference.region_warp`)
run on."""

from __future__ import annotations

import numpy as np

__all__ = ["LPS", "SUBJECT_SPACING_MM", "coarse_copy", "dilate_mm", "from_sitk", "on_grid",
           "sitk_affine", "to_sitk", "voxel_sizes"]

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""RAS <-> LPS (ITK's physical frame); its own inverse."""

SUBJECT_SPACING_MM = 2.0
"""The coarse copy of a subject image has voxels at least this size."""


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along each array axis of a 4x4 voxel -> world affine."""
    return np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))


def to_sitk(data: np.ndarray, affine: np.ndarray, dtype: type = np.float32):
    """A volume in (i, j, k) file order with its RAS affine as a SimpleITK image (LPS frame),
    of ``dtype`` (float32 unless told)."""
    import SimpleITK as sitk

    lps = LPS @ np.asarray(affine, dtype=np.float64)
    sizes = voxel_sizes(lps)
    out = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, dtype=dtype).T))
    out.SetSpacing(sizes.tolist())
    out.SetOrigin(lps[:3, 3].tolist())
    out.SetDirection((lps[:3, :3] / sizes).ravel().tolist())
    return out


def from_sitk(image) -> tuple[np.ndarray, np.ndarray]:
    """A scalar SimpleITK image as ((i, j, k) array, RAS voxel -> world affine)."""
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image).T, sitk_affine(image)


def sitk_affine(image) -> np.ndarray:
    """The RAS voxel -> world affine of a SimpleITK image's grid."""
    spacing = np.array(image.GetSpacing())
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * spacing
    lps[:3, 3] = image.GetOrigin()
    return LPS @ lps


def coarse_copy(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The volume resampled (linearly) to voxels of at least :data:`SUBJECT_SPACING_MM` along
    each of its own axes, over the same field of view; returns (array, affine)."""
    import SimpleITK as sitk

    image = to_sitk(data, affine)
    spacing = np.array(image.GetSpacing())
    coarse = np.maximum(spacing, SUBJECT_SPACING_MM)
    size = np.maximum(1, np.floor(np.array(image.GetSize()) * spacing / coarse)).astype(int)
    # Same field of view: the first voxel centre moves by half the change of voxel size.
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ ((coarse - spacing) / 2)
    out = sitk.Resample(image, [int(n) for n in size], sitk.Transform(), sitk.sitkLinear,
                        origin.tolist(), coarse.tolist(), image.GetDirection(), 0.0,
                        sitk.sitkFloat32)
    return from_sitk(out)


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Voxels within ``radius_mm`` (Euclidean, between centres) of a non-empty ``mask``."""
    from scipy import ndimage

    if not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius_mm


def on_grid(data: np.ndarray, data_affine: np.ndarray, shape: tuple[int, ...],
            affine: np.ndarray, reference_to_image_world: np.ndarray,
            outside: float) -> np.ndarray:
    """``data`` (on an image's world) resampled linearly onto a grid of the reference world
    (``shape``, ``affine``); ``reference_to_image_world`` maps the reference world to the image's;
    ``outside`` fills what the image does not cover. float64."""
    import SimpleITK as sitk

    matrix = LPS @ np.asarray(reference_to_image_world, dtype=np.float64) @ LPS
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    reference = to_sitk(np.zeros(shape, np.float32), affine)
    out = sitk.Resample(to_sitk(data, data_affine), reference, transform, sitk.sitkLinear,
                        outside, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out).T.astype(np.float64)
