"""Reading and writing what csvdnet exchanges with users: NIfTI images, labels, ratings, cohorts.

Everything a user hands csvdnet enters through this module, so every way a file can be unusable
ends here as a :class:`~csvdnet.errors.CsvdnetInputError` naming the file and the reason. Images
stay in file voxel order (no reorientation): the affine carries the geometry, and
:mod:`csvdnet.preprocessing` does all resampling.

CSV conventions: UTF-8 (a spreadsheet's byte-order mark is accepted), a header row, cells stripped
of surrounding spaces, blank lines skipped, an empty cell = absent. Rows are numbered as a
spreadsheet shows them: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import zlib
from pathlib import Path
from typing import Iterable, Iterator, Literal, Mapping, Sequence

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from scipy import ndimage

from csvdnet import DEFAULT_SEQUENCES, DETECTION_TASKS, LABEL_NAMES
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_path

PathLike = str | os.PathLike
ImageKind = Literal["image", "mask", "labelmap"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Every label file name a cohort may hold: the task labels plus the region map and brain mask.
KNOWN_LABELS = LABEL_NAMES + ("regions", "brain_mask")
#: Labels that may be given as a CSV of world coordinates as well as a NIfTI label map.
POINT_LABELS = DETECTION_TASKS
#: Diffusion volumes averaged into the DWI channel: b = 1000 s/mm² give or take scanner rounding.
B1000_RANGE = (800.0, 1200.0)

# Beyond these a label and its sequence are on different grids (float32 header round-off is ~1e-6).
_GRID_ORIGIN_TOL_MM = 1e-3
_GRID_AXES_TOL = 1e-4
# nibabel reports a damaged file through any of these, at load or (proxies being lazy) at read.
_NIBABEL_READ_ERRORS = (ImageFileError, HeaderDataError, EOFError, OSError, zlib.error, ValueError)
# Array types NIfTI-1 cannot store, and what they are stored as.
_NIFTI1_SUBSTITUTES = {np.dtype(bool): np.dtype(np.uint8),
                       np.dtype(np.float16): np.dtype(np.float32)}
_COORDINATE_COLUMNS = ("x", "y", "z", "i", "j", "k")


# --------------------------------------------------------------------------------------------
# Images

@dataclasses.dataclass(eq=False)  # element-wise array equality has no single truth value
class Image:
    """A 3-D image in file voxel order with its voxel -> world transform.

    Attributes:
        data: float32 3-D array, indexed (i, j, k) as stored in the file (not reoriented).
        affine: 4x4 float64 voxel -> world (scanner RAS, mm) transform.
        path: The file it was read from, if any.
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.path is not None:
            self.path = Path(self.path)
        if self.data.ndim != 3:
            raise ValueError(f"Image data must be 3-D, got shape {self.data.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Image affine must be 4x4, got shape {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size in voxels, (i, j, k)."""
        return tuple(int(n) for n in self.data.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (lengths of the affine's columns)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


def load_nifti(path: PathLike, *, kind: ImageKind = "image") -> Image:
    """Read a NIfTI-1 or NIfTI-2 image (``.nii`` / ``.nii.gz``) of any orientation and data type.

    Intensity scaling (``scl_slope`` / ``scl_inter``) is applied and the voxels become float32.
    The affine is the sform if its code is > 0, else the qform if its code is > 0, else
    nibabel's fallback from the voxel sizes. Trailing singleton dimensions are dropped. A 4-D
    ``kind="image"`` is taken as a diffusion series: the volumes whose b-value (from the FSL
    ``.bval`` file beside it, same name) lies in :data:`B1000_RANGE` are averaged.

    Args:
        path: The NIfTI file.
        kind: ``"image"`` for an MR sequence; ``"mask"`` or ``"labelmap"`` for labels, which
            may be empty (all zero) and must be 3-D.

    Returns:
        The image.

    Raises:
        CsvdnetInputError: Missing, not NIfTI, truncated or corrupt; not 3-D (or 4-D with a
            usable ``.bval``); non-real voxel type; NaN or infinite voxels; all-zero or constant
            image (``kind="image"``); non-finite or singular affine, or a zero voxel size.
    """
    if kind not in ("image", "mask", "labelmap"):
        raise ValueError(f"kind must be 'image', 'mask' or 'labelmap', got {kind!r}")
    path = Path(path)
    img = _open_nifti(path)
    shape = _checked_shape(img, path, kind)
    affine = _header_affine(img.header, path)
    volumes = _b1000_volumes(path, shape[3]) if len(shape) == 4 else None
    try:
        data = img.get_fdata(dtype=np.float32).reshape(shape)
    except _NIBABEL_READ_ERRORS as exc:
        raise CsvdnetInputError(
            path, f"image data is truncated or corrupt ({_describe(exc)})") from None
    if volumes is not None:
        data = data[..., volumes].mean(axis=-1, dtype=np.float64).astype(np.float32)
    _check_voxels(data, path, kind)
    return Image(data, affine, path)


def save_nifti(data: np.ndarray, affine: np.ndarray, path: PathLike, *,
               dtype: np.dtype | type | str | None = None) -> Path:
    """Write a NIfTI-1 image atomically; ``.nii.gz`` is compressed, ``.nii`` is not.

    The sform and qform are both set from ``affine`` with code 1 (scanner anatomical) and the
    units are mm / s, so every viewer places the image the same way.

    Args:
        data: Voxel array in the same voxel order as ``affine``.
        affine: 4x4 voxel -> world (scanner RAS, mm) transform.
        path: Destination, ending in ``.nii`` or ``.nii.gz``.
        dtype: On-disk data type. By default the array's own (bool is stored as uint8, float16
            as float32, which NIfTI-1 lacks). Floats cast to an integer type are rounded.

    Returns:
        ``path`` as a Path.

    Raises:
        CsvdnetInputError: ``path`` does not end in ``.nii`` or ``.nii.gz``.
        ValueError: ``affine`` is not a finite, invertible 4x4 matrix.
    """
    path = Path(path)
    suffix = _nifti_suffix(path)
    if suffix is None:
        raise CsvdnetInputError(path, "a NIfTI output must end in .nii or .nii.gz")
    affine = np.asarray(affine, dtype=np.float64)
    problem = "it is not 4x4" if affine.shape != (4, 4) else _affine_problem(affine)
    if problem:
        raise ValueError(f"cannot write {path} with this affine: {problem}")
    array = _disk_array(data, dtype)
    img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return path


def _nifti_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in NIFTI_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(".csv")


def _describe(exc: BaseException) -> str:
    """One-line account of a library exception (nibabel's messages can span lines)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _open_nifti(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise CsvdnetInputError(path, "file not found")
    if not path.is_file():
        raise CsvdnetInputError(path, "not a file")
    if _nifti_suffix(path) is None:
        raise CsvdnetInputError(path, "not a NIfTI file (expected a .nii or .nii.gz name)")
    try:
        # mmap=False: the arrays must not keep the file open or change with it.
        img = nib.load(path, mmap=False)
    except _NIBABEL_READ_ERRORS as exc:
        raise CsvdnetInputError(
            path, f"not a readable NIfTI-1/NIfTI-2 file ({_describe(exc)})") from None
    if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 images subclass it
        raise CsvdnetInputError(path, f"not a NIfTI-1/NIfTI-2 image (read as {type(img).__name__})")
    dtype = img.get_data_dtype()
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise CsvdnetInputError(path, f"unsupported voxel type {dtype} (real numbers are needed)")
    return img


def _checked_shape(img: nib.Nifti1Image, path: Path, kind: ImageKind) -> tuple[int, ...]:
    """The shape to read, trailing singletons beyond the third axis dropped, or an error."""
    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3 or len(shape) > 4:
        raise CsvdnetInputError(
            path, f"is {len(shape)}-D with shape {shape}; a 3-D volume is needed")
    if len(shape) == 4 and kind != "image":
        raise CsvdnetInputError(path, f"is 4-D with shape {shape}; a label must be 3-D")
    if 0 in shape:
        raise CsvdnetInputError(path, f"has an empty dimension (shape {shape})")
    return shape


def _header_affine(header: nib.Nifti1Header, path: Path) -> np.ndarray:
    try:
        if header["sform_code"] > 0:
            source, affine = "sform", header.get_sform()
        elif header["qform_code"] > 0:
            source, affine = "qform", header.get_qform()
        else:
            source, affine = "fallback affine (no sform or qform)", header.get_base_affine()
    except HeaderDataError as exc:
        raise CsvdnetInputError(path, f"invalid header transform ({_describe(exc)})") from None
    problem = _affine_problem(affine)
    if problem:
        raise CsvdnetInputError(path, f"the {source} is unusable: {problem}")
    return np.asarray(affine, dtype=np.float64)


def _affine_problem(affine: np.ndarray) -> str | None:
    """Why ``affine`` cannot map voxels to world, or None when it can."""
    if not np.all(np.isfinite(affine)):
        return "it has NaN or infinite entries"
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    for axis, size in enumerate(spacing):
        if size < 1e-6:
            return f"voxel size 0 along axis {axis}"
    # Relative to the voxel volume so that tiny voxels are not mistaken for a singular matrix.
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6 * np.prod(spacing):
        return "it is singular (determinant ~0: the voxel axes are not independent)"
    return None


def _bval_path(path: Path) -> Path:
    return path.with_name(path.name[:-len(_nifti_suffix(path))] + ".bval")


def _b1000_volumes(path: Path, n_volumes: int) -> np.ndarray:
    """Indices of the b≈1000 volumes of a 4-D diffusion series, from its FSL ``.bval`` file."""
    bval = _bval_path(path)
    if not bval.is_file():
        raise CsvdnetInputError(
            path, f"is 4-D ({n_volumes} volumes); a .bval file beside it ({bval.name}) is needed "
                  "to pick the b1000 volumes")
    try:
        bvals = np.array(bval.read_text(encoding="utf-8").split(), dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CsvdnetInputError(bval, "not an FSL .bval file of whitespace-separated numbers "
                                      f"({_describe(exc)})") from None
    if bvals.size != n_volumes:
        raise CsvdnetInputError(
            bval, f"has {bvals.size} b-values but {path.name} has {n_volumes} volumes")
    lo, hi = B1000_RANGE
    volumes = np.flatnonzero((bvals >= lo) & (bvals <= hi))
    if volumes.size == 0:
        found = ", ".join(f"{b:g}" for b in sorted(set(bvals)))
        raise CsvdnetInputError(
            bval, f"no volume has a b-value within {lo:g}..{hi:g} (b≈1000); b-values: {found}")
    return volumes


def _check_voxels(data: np.ndarray, path: Path, kind: ImageKind) -> None:
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise CsvdnetInputError(path, f"{n_bad} of {data.size} voxels are NaN or infinite")
    # An empty label is a valid "no lesion"; an empty or flat MR image is a failed export.
    if kind == "image":
        lo, hi = data.min(), data.max()
        if lo == hi == 0:
            raise CsvdnetInputError(path, "all voxels are zero (an empty image)")
        if lo == hi:
            raise CsvdnetInputError(
                path, f"all voxels have the same value {hi:g} (a constant image)")


def _disk_array(data: np.ndarray, dtype: np.dtype | type | str | None) -> np.ndarray:
    array = np.asarray(data)
    if dtype is None:
        target = _NIFTI1_SUBSTITUTES.get(array.dtype, array.dtype)
    else:
        target = np.dtype(dtype)
    if np.issubdtype(target, np.integer) and np.issubdtype(array.dtype, np.floating):
        array = np.rint(array)  # a resampled label value of 2.9999 is label 3, not 2
    return array.astype(target, copy=False)


# --------------------------------------------------------------------------------------------
# Labels: masks and points

def load_mask(path: PathLike, like: Image | None = None) -> Image:
    """Read a binary mask (voxels > 0.5 are inside), optionally checking it is on ``like``'s grid.

    Args:
        path: The mask NIfTI file; all-zero is a valid, empty mask.
        like: The image the mask was drawn on (same shape, affine equal within 1e-3 mm for
            the origin and 1e-4 for the voxel axes).

    Returns:
        The mask as an Image with float32 values 0 and 1.

    Raises:
        CsvdnetInputError: Any :func:`load_nifti` problem, or a grid different from ``like``'s.
    """
    mask = load_nifti(path, kind="mask")
    mask.data = (mask.data > 0.5).astype(np.float32)
    if like is not None:
        difference = _grid_difference(mask, like)
        if difference:
            source = like.path if like.path is not None else "the image it labels"
            raise CsvdnetInputError(mask.path, f"not on the grid of {source}: {difference}")
    return mask


def _grid_difference(image: Image, like: Image) -> str | None:
    if image.shape != like.shape:
        return f"shape {image.shape} vs {like.shape}"
    diff = np.abs(image.affine - like.affine)
    origin, axes = diff[:3, 3].max(), diff[:3, :3].max()
    if origin > _GRID_ORIGIN_TOL_MM:
        return f"affine origin differs by up to {origin:.4g} mm"
    if axes > _GRID_AXES_TOL:
        return f"affine voxel axes differ by up to {axes:.4g}"
    return None


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


def _parse_number(path: Path, row_no: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not np.isfinite(value):
        shown = repr(text) if text else "an empty cell"
        raise CsvdnetInputError(
            path, f"row {row_no}, column {column}: {shown} is not a finite number")
    return value


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


def _format_cell(value: object, decimals: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if decimals is None:
            return f"{float(value):.6g}"
        return repr(round(float(value), decimals) + 0.0)  # + 0.0 turns -0.0 into 0.0
    return str(value)


# --------------------------------------------------------------------------------------------
# Ratings

@dataclasses.dataclass(frozen=True)
class Ratings:
    """A neuroradiologist's ratings of one subject; ``None`` = not rated.

    Attributes:
        fazekas_pv: Periventricular Fazekas grade, 0-3.
        fazekas_deep: Deep white matter Fazekas grade, 0-3.
        epvs_bg_grade: Basal ganglia EPVS grade, 0-4.
        cmb_count: Number of cerebral microbleeds, >= 0.
        lacune_count: Number of lacunes, >= 0.
        rssi_count: Number of recent small subcortical infarcts, >= 0.
        total_score: Total SVD score, 0-4.
    """

    fazekas_pv: int | None = None
    fazekas_deep: int | None = None
    epvs_bg_grade: int | None = None
    cmb_count: int | None = None
    lacune_count: int | None = None
    rssi_count: int | None = None
    total_score: int | None = None

    def __post_init__(self) -> None:
        for name in RATING_FIELDS:
            problem = _rating_problem(name, getattr(self, name))
            if problem:
                raise ValueError(f"Ratings.{name}: {problem}")


RATING_FIELDS = tuple(f.name for f in dataclasses.fields(Ratings))
# Inclusive (low, high); None = unbounded.
_RATING_RANGES = {"fazekas_pv": (0, 3), "fazekas_deep": (0, 3), "epvs_bg_grade": (0, 4),
                  "cmb_count": (0, None), "lacune_count": (0, None), "rssi_count": (0, None),
                  "total_score": (0, 4)}


def _rating_problem(name: str, value: int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return f"{value!r} is not an integer"
    lo, hi = _RATING_RANGES[name]
    if value < lo or (hi is not None and value > hi):
        return f"{value} is out of range ({f'{lo}..{hi}' if hi is not None else f'>= {lo}'})"
    return None


def read_ratings(path: PathLike) -> dict[str, Ratings]:
    """Read ``ratings.csv``: a ``subject`` column and any of the :class:`Ratings` fields.

    Integral decimals such as ``2.0`` (as spreadsheets and pandas write them) are accepted; a
    missing column or an empty cell means not rated.

    Args:
        path: The ratings CSV.

    Returns:
        Ratings by subject id, in file order.

    Raises:
        CsvdnetInputError: Missing file or ``subject`` column, unknown column, duplicate or
            invalid subject, a non-integer or out-of-range value (naming the row and column).
    """
    path = Path(path)
    header, rows = _read_csv(path)
    _require_columns(path, header, ("subject",), known=("subject",) + RATING_FIELDS)
    ratings: dict[str, Ratings] = {}
    for row_no, subject, row in _unique_subject_rows(path, rows, "rated"):
        values = {name: _parse_rating(path, row_no, name, row[name])
                  for name in RATING_FIELDS if name in row}
        ratings[subject] = Ratings(**values)
    return ratings


def _parse_rating(path: Path, row_no: int, name: str, text: str) -> int | None:
    if not text:
        return None
    try:
        number = float(text)
        value = int(number) if number.is_integer() else None
    except (ValueError, OverflowError):
        value = None
    problem = f"{text!r} is not an integer" if value is None else _rating_problem(name, value)
    if problem:
        raise CsvdnetInputError(path, f"row {row_no}, column {name}: {problem}")
    return value


def write_ratings(path: PathLike, ratings: Mapping[str, Ratings]) -> Path:
    """Write ratings to a CSV atomically, in the ``ratings.csv`` layout (empty cell = not rated).

    Args:
        path: Destination CSV.
        ratings: Ratings by subject id; written in this order.

    Returns:
        ``path`` as a Path.
    """
    rows = [[subject] + [_format_cell(getattr(r, name)) for name in RATING_FIELDS]
            for subject, r in ratings.items()]
    return _write_csv(path, ["subject", *RATING_FIELDS], rows)


# --------------------------------------------------------------------------------------------
# CSV plumbing shared by points, ratings and manifests

def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (row number, cells by column) of each non-blank row; header = row 1."""
    if not path.is_file():
        raise CsvdnetInputError(path, "file not found" if not path.exists() else "not a file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            rows = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) > len(header):
                    raise CsvdnetInputError(path, f"row {reader.line_num} has {len(cells)} "
                                                  f"cells, the header {len(header)}")
                cells = [cell.strip() for cell in cells] + [""] * (len(header) - len(cells))
                rows.append((reader.line_num, dict(zip(header, cells))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CsvdnetInputError(
            path, f"not a readable UTF-8 CSV file ({_describe(exc)})") from None
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise CsvdnetInputError(
            path, f"column {duplicates[0]!r} appears more than once in the header")
    return header, rows


def _require_columns(path: Path, header: list[str], required: Sequence[str],
                     known: Sequence[str] | None = None) -> None:
    missing = [name for name in required if name not in header]
    if missing:
        raise CsvdnetInputError(
            path, f"missing column(s) {', '.join(missing)} (header: {', '.join(header) or 'none'})")
    unknown = [name for name in header if known is not None and name not in known]
    if unknown:
        raise CsvdnetInputError(
            path, f"unknown column {unknown[0]!r} (known: {', '.join(known)})")


def _write_csv(path: PathLike, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return path


def _subject_id(path: Path, row_no: int, text: str) -> str:
    # Ids become output folder names; folder discovery skips hidden folders.
    if not text or text.startswith(".") or any(c in text for c in "/\\"):
        shown = repr(text) if text else "an empty cell"
        raise CsvdnetInputError(
            path, f"row {row_no}, column subject: {shown} is not a usable subject id "
                  "(it names an output folder: no path separators, no leading dot)")
    return text


def _unique_subject_rows(path: Path, rows: Iterable[tuple[int, dict[str, str]]],
                         verb: str) -> Iterator[tuple[int, str, dict[str, str]]]:
    """Yield ``(row_no, subject_id, row)``, refusing a subject that appears on two rows."""
    first_row: dict[str, int] = {}
    for row_no, row in rows:
        subject = _subject_id(path, row_no, row["subject"])
        if subject in first_row:
            raise CsvdnetInputError(
                path, f"row {row_no}: subject {subject} is {verb} twice (also row "
                      f"{first_row[subject]})")
        first_row[subject] = row_no
        yield row_no, subject, row


# --------------------------------------------------------------------------------------------
# Cohorts

@dataclasses.dataclass
class Subject:
    """One subject's files (located, not loaded).

    Attributes:
        id: Subject id (folder name or manifest ``subject`` cell).
        sequences: Sequence name -> NIfTI file, for the sequences present, in cohort order.
        labels: Label name (see :data:`KNOWN_LABELS`) -> file, for the labels present only.
        label_sequence: Label name -> the sequence it is drawn on, for every label present
            (the reference sequence unless the file / column was named ``<label>@<sequence>``).
        ratings: The subject's row of ``ratings.csv``, if any.
    """

    id: str
    sequences: dict[str, Path]
    labels: dict[str, Path] = dataclasses.field(default_factory=dict)
    label_sequence: dict[str, str] = dataclasses.field(default_factory=dict)
    ratings: Ratings | None = None

    def present_labels(self) -> tuple[str, ...]:
        """Names of the labels this subject has, in :data:`KNOWN_LABELS` order."""
        return tuple(name for name in KNOWN_LABELS if name in self.labels)


@dataclasses.dataclass
class Cohort:
    """Subjects of a cohort folder or manifest.

    Attributes:
        root: The cohort folder (for a manifest, the folder holding it).
        subjects: Subjects in folder-name order (folder) or row order (manifest).
        sequences: Sequence names considered, in channel order.
        reference: The reference sequence, present for every subject.
        manifest: The manifest CSV, when the cohort was read from one.
    """

    root: Path
    subjects: list[Subject]
    sequences: tuple[str, ...]
    reference: str = "flair"
    manifest: Path | None = None

    def __len__(self) -> int:
        return len(self.subjects)

    def __iter__(self) -> Iterator[Subject]:
        return iter(self.subjects)

    def __getitem__(self, subject_id: str) -> Subject:
        for subject in self.subjects:
            if subject.id == subject_id:
                return subject
        raise KeyError(f"no subject {subject_id!r} in the cohort at {self.root}")


def read_cohort(path: PathLike, sequences: Sequence[str] = DEFAULT_SEQUENCES,
                reference: str = "flair") -> Cohort:
    """Locate the files of a cohort given as a folder or a manifest CSV (see docs/contracts.md).

    Folder form: each sub-folder holding at least one ``<sequence>.nii[.gz]`` is a subject;
    its labels are ``labels/<label>[@<sequence>].nii[.gz]`` (and ``.csv`` for point labels).
    Manifest form: a ``subject`` column plus one column per sequence / label (``<label>@<sequence>``
    for a label drawn on another sequence), paths relative to the CSV, empty cell = absent;
    columns of default sequences not in ``sequences`` are ignored. Either way an optional
    ``ratings.csv`` at the cohort root / beside the manifest is attached to the subjects.

    Args:
        path: Cohort folder or manifest CSV.
        sequences: Sequence names to look for, in channel order.
        reference: The sequence every subject must have; labels are drawn on it by default.

    Returns:
        The cohort; nothing is loaded.

    Raises:
        CsvdnetInputError: Missing path, no subjects, a subject without the reference
            sequence, an unknown or duplicate column / label file / subject, a referenced file
            that does not exist, a label drawn on a sequence the subject lacks, or ratings for a
            subject not in the cohort.
    """
    path = Path(os.path.abspath(path))  # subjects' paths are absolute in both forms
    sequences = tuple(sequences)
    if reference not in sequences:
        raise CsvdnetInputError(
            path, f"reference sequence {reference!r} is not one of the sequences "
                  f"({', '.join(sequences)})")
    if path.is_dir():
        root, manifest = path, None
        subjects = _subjects_from_folder(path, sequences, reference)
    elif path.is_file():
        root, manifest = path.parent, path
        subjects = _subjects_from_manifest(path, sequences, reference)
    else:
        raise CsvdnetInputError(path, "cohort folder or manifest not found")
    _attach_ratings(subjects, root / "ratings.csv")
    return Cohort(root=root, subjects=subjects, sequences=sequences, reference=reference,
                  manifest=manifest)


def load_subject(subject: Subject) -> dict[str, Image]:
    """Load a subject's sequences as images, keyed and ordered like ``subject.sequences``.

    Raises:
        CsvdnetInputError: Any :func:`load_nifti` problem with one of the files.
    """
    return {name: load_nifti(path) for name, path in subject.sequences.items()}


def _parse_label_name(name: str, sequences: tuple[str, ...], reference: str,
                      source: Path, where: str) -> tuple[str, str]:
    """Split ``<label>[@<sequence>]`` into (label, sequence drawn on); raise naming ``source``."""
    label, _, sequence = name.partition("@")
    if label not in KNOWN_LABELS:
        raise CsvdnetInputError(
            source, f"{where}unknown label {label!r} (known: {', '.join(KNOWN_LABELS)}; a label "
                    "drawn on another sequence is named <label>@<sequence>)")
    if sequence and sequence not in sequences:
        raise CsvdnetInputError(
            source, f"{where}label {name!r} is drawn on {sequence!r}, which is not one of the "
                    f"sequences ({', '.join(sequences)})")
    return label, sequence or reference


def _format_problem(path: Path, label: str | None = None) -> str | None:
    """Why ``path`` cannot hold a sequence (``label`` None) or label ``label``; None if it can."""
    if _nifti_suffix(path) or (label in POINT_LABELS and _is_csv(path)):
        return None
    what = f"label {label}" if label else "a sequence"
    allowed = ".nii/.nii.gz or .csv" if label in POINT_LABELS else ".nii/.nii.gz"
    return f"{path.name}: {what} must be a {allowed} file"


def _make_subject(subject_id: str, sequences: dict[str, Path],
                  labels: dict[str, tuple[Path, str]], reference: str,
                  source: Path, where: str) -> Subject:
    """Build a Subject after the checks both cohort forms share."""
    if reference not in sequences:
        raise CsvdnetInputError(source, f"{where}no {reference} image (the reference sequence)")
    for label, (path, sequence) in labels.items():
        if sequence not in sequences:
            raise CsvdnetInputError(
                source, f"{where}label {label} ({path.name}) is drawn on {sequence}, but the "
                        f"subject has no {sequence} image")
    return Subject(id=subject_id, sequences=sequences,
                   labels={label: path for label, (path, _) in labels.items()},
                   label_sequence={label: sequence for label, (_, sequence) in labels.items()})


def _subjects_from_folder(root: Path, sequences: tuple[str, ...], reference: str) -> list[Subject]:
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = {name: path for name in sequences
                 if (path := _single_file(folder, [f"{name}{s}" for s in NIFTI_SUFFIXES]))}
        if found:
            labels = _labels_in_folder(folder / "labels", sequences, reference)
            subjects.append(_make_subject(folder.name, found, labels, reference, folder, ""))
    if not subjects:
        raise CsvdnetInputError(
            root, f"no subject folders (sub-folders holding <sequence>.nii[.gz] for a sequence in "
                  f"{', '.join(sequences)})")
    return subjects


def _single_file(folder: Path, names: list[str]) -> Path | None:
    present = [folder / name for name in names if (folder / name).is_file()]
    if len(present) > 1:
        raise CsvdnetInputError(folder, f"both {present[0].name} and {present[1].name}: keep one")
    return present[0] if present else None


def _labels_in_folder(folder: Path, sequences: tuple[str, ...],
                      reference: str) -> dict[str, tuple[Path, str]]:
    labels: dict[str, tuple[Path, str]] = {}
    if not folder.is_dir():
        return labels
    for path in sorted(folder.iterdir()):
        suffix = _nifti_suffix(path) or (".csv" if _is_csv(path) else None)
        if path.name.startswith(".") or not path.is_file() or suffix is None:
            continue  # notes, hidden temporary files of interrupted writes
        label, sequence = _parse_label_name(path.name[:-len(suffix)], sequences, reference,
                                            path, "")
        problem = _format_problem(path, label)
        if problem:
            raise CsvdnetInputError(folder, problem)
        if label in labels:
            raise CsvdnetInputError(
                folder, f"two files for label {label}: {labels[label][0].name} and {path.name}")
        labels[label] = (path, sequence)
    return labels


def _subjects_from_manifest(manifest: Path, sequences: tuple[str, ...],
                            reference: str) -> list[Subject]:
    header, rows = _read_csv(manifest)
    _require_columns(manifest, header, ("subject",))
    sequence_columns, label_columns = _manifest_columns(manifest, header, sequences, reference)
    if not rows:
        raise CsvdnetInputError(manifest, "no subjects (the manifest has no data rows)")
    subjects: dict[str, Subject] = {}
    for row_no, subject_id, row in _unique_subject_rows(manifest, rows, "listed"):
        where = f"row {row_no} (subject {subject_id}): "
        found = {c: _manifest_file(manifest, row[c], f"{where}column {c}: ")
                 for c in sequence_columns if row[c]}
        labels = {label: (_manifest_file(manifest, row[c], f"{where}column {c}: ", label), drawn_on)
                  for c, (label, drawn_on) in label_columns.items() if row[c]}
        subjects[subject_id] = _make_subject(subject_id, found, labels, reference, manifest, where)
    return list(subjects.values())


def _manifest_columns(manifest: Path, header: list[str], sequences: tuple[str, ...],
                      reference: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Sort the manifest's columns into sequences and labels.

    Returns:
        The sequence columns in cohort order, and column -> (label, sequence drawn on).
    """
    label_columns: dict[str, tuple[str, str]] = {}
    for column in header:
        if column in ("subject", *sequences, *DEFAULT_SEQUENCES):
            continue  # columns of default sequences not asked for: a full manifest, fewer channels
        if column.partition("@")[0] in KNOWN_LABELS:
            label_columns[column] = _parse_label_name(column, sequences, reference, manifest,
                                                      f"column {column!r}: ")
        else:
            raise CsvdnetInputError(
                manifest, f"unknown column {column!r} (known: subject, {', '.join(sequences)}, "
                          f"{', '.join(KNOWN_LABELS)}, or <label>@<sequence>)")
    return [name for name in sequences if name in header], label_columns


def _manifest_file(manifest: Path, text: str, where: str, label: str | None = None) -> Path:
    """The existing file a manifest cell names (relative to the manifest), fit for its column."""
    # abspath, not resolve(): keep the user's (possibly symlinked) paths recognisable in messages.
    path = Path(os.path.abspath(manifest.parent / Path(text).expanduser()))
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise CsvdnetInputError(manifest, f"{where}{path} {state}")
    problem = _format_problem(path, label)
    if problem:
        raise CsvdnetInputError(manifest, f"{where}{problem}")
    return path


def _attach_ratings(subjects: list[Subject], ratings_path: Path) -> None:
    if not ratings_path.is_file():
        return
    ratings = read_ratings(ratings_path)
    by_id = {subject.id: subject for subject in subjects}
    strangers = [subject_id for subject_id in ratings if subject_id not in by_id]
    if strangers:
        raise CsvdnetInputError(
            ratings_path, f"subject {strangers[0]} is rated but not in the cohort")
    for subject_id, rating in ratings.items():
        by_id[subject_id].ratings = rating
