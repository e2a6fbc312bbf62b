"""Grid geometry shared by the preprocessing steps: working grid, resampling, boxes, crops.

All transforms are 4x4 homogeneous matrices; points go through :func:`nibabel.affines.apply_affine`
and voxel sizes come from :func:`nibabel.affines.voxel_sizes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine, voxel_sizes
from scipy import ndimage

if TYPE_CHECKING:
    from csvdnet.io import Image

_AFFINE_ATOL = 1e-3  # mm; label grids may come from tools that round the affine to float32


def _ints(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _translation(shift: Iterable[float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = list(shift)
    return out



def _ras_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes of ``affine`` reordered to the world (RAS) axes each voxel axis is closest to."""
    ornt = nib.orientations.io_orientation(affine)
    out = np.empty(3)
    out[ornt[:, 0].astype(int)] = voxel_sizes(affine)
    return out


def _centre_corners(shape: Sequence[int]) -> np.ndarray:
    """The 8 corner voxel centres of a grid, as (8, 3) voxel coordinates."""
    return np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T


def _working_grid(affine: np.ndarray, shape: Sequence[int],
                  spacing: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Canonical RAS grid at ``spacing`` covering the field of view of ``(affine, shape)``.

    The lattice goes through the voxel centre nearest the middle of the field of view (ties
    broken towards lower world coordinates), which is the same world point whatever the storage
    orientation of the image.
    """
    shape = np.asarray(shape[:3])
    centre = (shape - 1) / 2.0
    dominant_sign = np.sign(affine[np.argmax(np.abs(affine[:3, :3]), axis=0), range(3)])
    anchor_index = np.where(dominant_sign > 0, np.floor(centre), np.ceil(centre))
    anchor = apply_affine(affine, anchor_index)
    corners = apply_affine(affine, _centre_corners(shape))
    tol = 1e-3  # voxels: keep float noise from adding a whole plane
    k_min = np.floor((corners.min(axis=0) - anchor) / spacing + tol)
    k_max = np.ceil((corners.max(axis=0) - anchor) / spacing - tol)
    grid = np.diag([*spacing, 1.0])
    grid[:3, 3] = anchor + k_min * spacing
    return grid, _ints(k_max - k_min + 1)


def _resample(data: np.ndarray, out_to_in: np.ndarray, shape: Sequence[int], order: int,
              dtype: Any = np.float32) -> np.ndarray:
    """Sample ``data`` on a grid whose voxel -> input-voxel map is the 4x4 ``out_to_in``.

    Outside the input grid (beyond half a voxel for nearest neighbour) values are 0; within one
    voxel of its edge, linear interpolation blends the edge voxel with that 0 (scipy's
    ``grid-constant`` mode). Linear interpolation into a float array runs in SimpleITK, which
    uses every CPU and takes a third of scipy's single-threaded time; the rest in scipy.
    """
    if order == 1 and np.issubdtype(np.dtype(dtype), np.floating):
        return _resample_linear(np.asarray(data), out_to_in, shape).astype(dtype, copy=False)
    return ndimage.affine_transform(
        np.asarray(data), out_to_in[:3, :3], offset=out_to_in[:3, 3], output_shape=tuple(shape),
        order=order, mode="grid-constant", cval=0.0, output=dtype)


# Reverses the axes: a C-order numpy array (i, j, k) is a SimpleITK image indexed (k, j, i).
_REVERSE_AXES = np.eye(4)[[2, 1, 0, 3]]


def _resample_linear(data: np.ndarray, out_to_in: np.ndarray,
                     shape: Sequence[int]) -> np.ndarray:
    """Trilinear :func:`_resample` through SimpleITK, in voxel index space, same border rule."""
    import SimpleITK as sitk

    # One layer of zeros around the input: ITK clamps at the buffer's edge, so with the layer it
    # blends the edge voxel with 0 exactly as scipy's grid-constant mode does.
    padded = np.pad(np.asarray(data, dtype=np.float32), 1)
    shift = np.eye(4)
    shift[:3, 3] = 1.0
    matrix = _REVERSE_AXES @ shift @ out_to_in @ _REVERSE_AXES
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    out = sitk.Resample(sitk.GetImageFromArray(padded), [int(n) for n in shape][::-1], transform,
                        sitk.sitkLinear, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                        np.eye(3).ravel().tolist(), 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and stop (exclusive) voxel indices of the non-zero part of ``mask``."""
    idx = np.nonzero(mask)
    return (np.array([i.min() for i in idx]), np.array([i.max() + 1 for i in idx]))


def _crop(volume: np.ndarray, start: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The ``shape`` block of ``volume`` beginning at ``start`` (may extend outside: zeros)."""
    out = np.zeros(tuple(shape), dtype=volume.dtype)
    src_lo = np.maximum(start, 0)
    src_hi = np.minimum(start + np.asarray(shape), volume.shape)
    if np.all(src_hi > src_lo):
        dst_lo = src_lo - start
        dst_hi = src_hi - start
        out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = \
            volume[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
    return out


def _to_native(native_affine: np.ndarray, transform: np.ndarray,
               working_affine: np.ndarray) -> np.ndarray:
    """The 4x4 map working voxel -> reference world -> (rigid) sequence world -> native voxel."""
    return np.linalg.inv(native_affine) @ transform @ working_affine


def _same_grid(a: Image, shape: Sequence[int], affine: np.ndarray) -> bool:
    return tuple(a.shape[:3]) == tuple(shape[:3]) and np.allclose(a.affine, affine,
                                                                  atol=_AFFINE_ATOL)


def _inside(voxels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Which (N, 3) voxel coordinates lie inside a grid (its voxels' extent, half a voxel out)."""
    return np.all((voxels >= -0.5) & (voxels <= np.asarray(shape[:3]) - 0.5), axis=1)


def _location(images: Mapping[str, Image]) -> str:
    """Where a subject's images live, for errors that concern the subject rather than a file."""
    folders = {str(Path(img.path).parent) for img in images.values() if img.path is not None}
    return folders.pop() if len(folders) == 1 else "<subject>"
