"""NIfTI images: :class:`Image`, :func:`load_nifti` (header and voxel checks), :func:`save_nifti`.

Images stay in file voxel order (no reorientation): the affine carries the geometry, and
:mod:`csvdnet.preprocessing` does all resampling. Every way a file can be unusable ends here as a
:class:`~csvdnet.errors.CsvdnetInputError` naming the file and the reason.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_path
from csvdnet.io.sequences import NIFTI_SUFFIXES, _nifti_suffix, sequence_of_file  # noqa: F401

PathLike = str | os.PathLike
ImageKind = Literal["image", "mask", "labelmap"]

#: Diffusion volumes averaged into the DWI channel: b = 1000 s/mm² give or take scanner rounding.
B1000_RANGE = (800.0, 1200.0)

#: The most voxels a header may claim (all volumes together): 2**30 float32 voxels are 4 GiB,
#: far beyond any MR volume; a corrupt or hostile header claiming more is refused before any
#: memory is allocated.
MAX_VOXELS = 2 ** 30

# nibabel reports a damaged file through any of these, at load or (proxies being lazy) at read.
_NIBABEL_READ_ERRORS = (ImageFileError, HeaderDataError, EOFError, OSError, zlib.error, ValueError)
# Array types NIfTI-1 cannot store, and what they are stored as.
_NIFTI1_SUBSTITUTES = {np.dtype(bool): np.dtype(np.uint8),
                       np.dtype(np.float16): np.dtype(np.float32)}

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
        return tuple(float(s) for s in voxel_sizes(self.affine))


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
    except PermissionError:
        raise CsvdnetInputError(path, "permission denied (the file cannot be read)") from None
    except _NIBABEL_READ_ERRORS as exc:
        raise CsvdnetInputError(
            path, f"image data is truncated or corrupt ({_describe(exc)})") from None
    if volumes is not None:
        data = data[..., volumes].mean(axis=-1, dtype=np.float64).astype(np.float32)
    _check_voxels(data, path, kind)
    return Image(data, affine, path)


def read_grid(path: PathLike) -> tuple[tuple[int, int, int], np.ndarray]:
    """The voxel grid of a NIfTI file from its header alone (no voxel is read).

    Args:
        path: The NIfTI file.

    Returns:
        ``(shape, affine)``: the 3-D shape (a 4-D series' volumes left out) and the affine
        :func:`load_nifti` would give.

    Raises:
        CsvdnetInputError: The problems of :func:`load_nifti` that the header shows.
    """
    path = Path(path)
    img = _open_nifti(path)
    shape = _checked_shape(img, path, "image")
    return (shape[0], shape[1], shape[2]), _header_affine(img.header, path)


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
    except PermissionError:
        raise CsvdnetInputError(path, "permission denied (the file cannot be read)") from None
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
    voxels = int(np.prod(shape, dtype=np.float64))
    if voxels > MAX_VOXELS:
        raise CsvdnetInputError(path, f"the header claims shape {shape} = {voxels:.3g} voxels, "
                                      f"more than the limit of {MAX_VOXELS:.3g} (corrupt header?)")
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
    spacing = voxel_sizes(affine)
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
    named = sequence_of_file(path.name, DEFAULT_SEQUENCES)
    if named is not None and named != "dwi":
        raise CsvdnetInputError(
            path, f"is 4-D ({n_volumes} volumes), but a {named} image must be a 3-D volume (only "
                  "a diffusion series, dwi, may be 4-D): export the single volume")
    bval = _bval_path(path)
    if not bval.is_file():
        raise CsvdnetInputError(
            path, f"is 4-D ({n_volumes} volumes); a 3-D volume is needed, or, for a diffusion "
                  f"series, a .bval file beside it ({bval.name}) to pick the b1000 volumes")
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

