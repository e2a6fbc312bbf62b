"""Labels: binary masks on their sequence's grid, and point labels (world-mm CSV or label map)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage

from csvdnet import DETECTION_TASKS, LABEL_NAMES
from csvdnet.errors import CsvdnetInputError
from csvdnet.io.csvtable import (_format_cell, _is_csv, _parse_number, _read_csv,
                                 _require_columns, _write_csv)
from csvdnet.io.nifti import Image, PathLike, _nifti_suffix, load_nifti

#: Every label file name a cohort may hold: the task labels plus the region map and brain mask.
KNOWN_LABELS = LABEL_NAMES + ("regions", "brain_mask")
#: Labels that may be given as a CSV of world coordinates as well as a NIfTI label map.
POINT_LABELS = DETECTION_TASKS

# Beyond these a label and its sequence are on different grids (float32 header round-off is ~1e-6).
_GRID_ORIGIN_TOL_MM = 1e-3
_GRID_AXES_TOL = 1e-4
_COORDINATE_COLUMNS = ("x", "y", "z", "i", "j", "k")

logger = logging.getLogger(__name__)


def load_mask(path: PathLike, like: Image | None = None) -> Image:
    """Read a binary mask, optionally checking it is on ``like``'s grid.

    A mask holds 0 and 1. Values above 1 mean a label map given as a mask (e.g. the WMH
    challenge's label 2, "other pathology"): refused, naming the values, because binarising it
    would silently turn other labels into lesion. Fractions between 0 and 1 (a soft or
    resampled mask) are kept above 0.5 with a warning naming them.

    Args:
        path: The mask NIfTI file; all-zero is a valid, empty mask.
        like: The image the mask was drawn on (same shape, affine equal within 1e-3 mm for
            the origin and 1e-4 for the voxel axes).

    Returns:
        The mask as an Image with float32 values 0 and 1.

    Raises:
        CsvdnetInputError: Any :func:`load_nifti` problem, values outside 0..1, or a grid
            different from ``like``'s (both affines named when only they differ).
    """
    mask = load_nifti(path, kind="mask")
    values = _mask_values(mask.data)
    if values[-1] > 1 or values[0] < 0:
        raise CsvdnetInputError(
            mask.path, f"a mask must hold 0 and 1, this one holds {_shown(values)}: a label map? "
                       "(convert it to 0/1 first, e.g. keep only the lesion label)")
    if np.any((values > 0) & (values < 1)):
        logger.warning("%s: a mask holding fractions (%s) is kept where > 0.5", mask.path,
                       _shown(values))
    mask.data = (mask.data > 0.5).astype(np.float32)
    return mask if like is None else check_on_grid(mask, like)


def check_on_grid(label: Image, like: Image) -> Image:
    """Return ``label`` if it is on the grid of ``like`` (the image it was drawn on).

    Same shape, and affines equal within 1e-3 mm for the origin and 1e-4 for the voxel axes
    (float32 header round-off).

    Raises:
        CsvdnetInputError: Another shape, or (naming both affines) the same shape with another
            affine.
    """
    difference = _grid_difference(label, like)
    if difference:
        source = like.path if like.path is not None else "the image it labels"
        raise CsvdnetInputError(label.path, f"not on the grid of {source}: {difference}")
    return label


def _mask_values(data: np.ndarray, limit: int = 8) -> np.ndarray:
    """The distinct values of ``data`` (sorted), at most ``limit`` of each end once many."""
    values = np.unique(data)
    return values if len(values) <= 2 * limit else np.concatenate([values[:limit],
                                                                   values[-limit:]])


def _shown(values: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _grid_difference(image: Image, like: Image) -> str | None:
    if image.shape != like.shape:
        return f"shape {image.shape} vs {like.shape}"
    diff = np.abs(image.affine - like.affine)
    origin, axes = diff[:3, 3].max(), diff[:3, :3].max()
    if origin > _GRID_ORIGIN_TOL_MM or axes > _GRID_AXES_TOL:
        what = (f"affine origin differs by up to {origin:.4g} mm" if origin > _GRID_ORIGIN_TOL_MM
                else f"affine voxel axes differ by up to {axes:.4g}")
        return (f"same shape, but the {what} (label affine {_affine_text(image.affine)}, image "
                f"affine {_affine_text(like.affine)}; resample it, or fix its header)")
    return None


def _affine_text(affine: np.ndarray) -> str:
    return "[" + "; ".join(" ".join(f"{v:.4g}" for v in row) for row in affine[:3]) + "]"


def read_points(path: PathLike, like: Image | None = None) -> np.ndarray:
    """Read point labels (e.g. microbleed or EPVS centres) as world coordinates.

    A CSV gives them directly in columns ``x, y, z`` (scanner RAS mm; other columns are ignored).
    A NIfTI label map gives one point per object at its centre of mass: a map with a single
    non-zero value (a binary map) has one object per 26-connected component; a map with several
    values has one object per value.

    Args:
        path: A ``.csv`` file or a ``.nii`` / ``.nii.gz`` label map.
        like: If given, every point must lie in this image's field of view (voxel coordinates
            within [-0.5, n - 0.5] on each axis).

    Returns:
        float64 array (N, 3) of world coordinates in mm; (0, 3) when there are none.

    Raises:
        CsvdnetInputError: Unreadable file; missing x/y/z column; a non-numeric or empty
            coordinate; a label map with negative or non-integer values; a point outside ``like``.
    """
    path = Path(path)
    if _is_csv(path):
        points = _points_from_csv(path)
    elif _nifti_suffix(path):
        points = _points_from_labelmap(path)
    else:
        raise CsvdnetInputError(path, "points must be a .csv or a .nii/.nii.gz label map")
    if like is not None:
        _check_in_view(points, like, path)
    return points


def _points_from_csv(path: Path) -> np.ndarray:
    header, rows = _read_csv(path)
    _require_columns(path, header, ("x", "y", "z"))
    points = [[_parse_number(path, row_no, axis, row[axis]) for axis in "xyz"]
              for row_no, row in rows]
    return np.array(points, dtype=np.float64).reshape(-1, 3)


def _points_from_labelmap(path: Path) -> np.ndarray:
    image = load_nifti(path, kind="labelmap")
    data = image.data
    if np.any(data < 0) or np.any(data != np.round(data)):
        raise CsvdnetInputError(path, "a label map must hold non-negative integers")
    values = np.unique(data[data > 0])
    if values.size == 1:
        labels, n = ndimage.label(data > 0, structure=np.ones((3, 3, 3)))
        index = np.arange(1, n + 1)
    else:
        labels, index = data.astype(np.int64), values.astype(np.int64)
    if index.size == 0:
        return np.zeros((0, 3))
    centres = np.array(ndimage.center_of_mass(labels > 0, labels, index), dtype=np.float64)
    return apply_affine(image.affine, centres)


def _check_in_view(points: np.ndarray, like: Image, path: Path) -> None:
    voxels = apply_affine(np.linalg.inv(like.affine), points)
    # The field of view reaches half a voxel beyond the outer centres; 1e-6 absorbs round-off.
    limit = np.array(like.shape) - 0.5
    outside = np.any((voxels < -0.5 - 1e-6) | (voxels > limit + 1e-6), axis=1)
    if np.any(outside):
        i = int(np.flatnonzero(outside)[0])
        where = ", ".join(f"{c:.4g}" for c in points[i])
        source = like.path if like.path is not None else "the image"
        raise CsvdnetInputError(
            path, f"point {i + 1} of {len(points)} at ({where}) mm is outside the field of view "
                  f"of {source} (grid {like.shape})")


def write_points(path: PathLike, world: np.ndarray | Sequence[Sequence[float]], *,
                 affine: np.ndarray | None = None,
                 columns: Mapping[str, Sequence] | None = None) -> Path:
    """Write points to a CSV atomically: ``x, y, z`` in world mm, then optional columns.

    Args:
        path: Destination CSV.
        world: (N, 3) world (scanner RAS, mm) coordinates.
        affine: If given, voxel coordinates ``i, j, k`` through its inverse are added (3 decimals).
        columns: Extra columns (name -> N values), e.g. confidence and region.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: ``world`` is not (N, 3), a column has the wrong length or a reserved name.
    """
    world = np.asarray(world, dtype=np.float64)
    if world.size == 0:
        world = world.reshape(0, 3)
    if world.ndim != 2 or world.shape[1] != 3:
        raise ValueError(f"world coordinates must be (N, 3), got shape {world.shape}")
    table = {axis: [_format_cell(v, 4) for v in world[:, n]] for n, axis in enumerate("xyz")}
    if affine is not None:
        voxels = apply_affine(np.linalg.inv(affine), world)
        table |= {axis: [_format_cell(v, 3) for v in voxels[:, n]] for n, axis in enumerate("ijk")}
    for name, values in (columns or {}).items():
        if name in _COORDINATE_COLUMNS:
            raise ValueError(f"column name {name!r} is reserved for coordinates")
        if len(values) != len(world):
            raise ValueError(f"column {name!r} has {len(values)} values for {len(world)} points")
        table[name] = [_format_cell(v) for v in values]
    return _write_csv(path, list(table), list(zip(*table.values())))
