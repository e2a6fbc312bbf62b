"""Bring a subject's sequences onto one normalised, channels-last working grid, invertibly.

Pipeline of :func:`preprocess_subject`:

1. The **reference grid** is the grid of the reference sequence (``cfg.reference``, default FLAIR).
   The uncropped working grid is canonical RAS (axes along scanner x, y, z, increasing) at
   ``cfg.spacing`` and covers the reference's field of view. Its lattice passes through the
   reference voxel nearest the centre of the field of view, so a reference stored as RAS, LPS or
   any other axis permutation / flip gives the very same working grid, and at working spacing =
   reference spacing every working voxel centre is a reference voxel centre (exact round trips).
2. A **brain region** on that grid (``cfg.brain_mask``): ``"label"`` the given mask, ``"none"``
   the reference's field of view, ``"auto"`` :func:`auto_brain_mask`.
3. Each other sequence must cover at least half of the brain box (:data:`MIN_OVERLAP`), then is
   rigidly **co-registered** to the reference (:func:`register_rigid`; ``cfg.register``). Its
   world->world transform is kept in the meta and applied to every label drawn on it.
4. The grid is **cropped** to the brain box plus ``cfg.crop_margin_mm`` and **padded** (centred)
   to a multiple of ``cfg.pad_multiple``.
5. Every sequence is resampled **once**, from its native grid straight to the final working grid
   (registration, reorientation, spacing and crop composed into one affine map).
6. Each channel is **normalised** with statistics inside the brain mask: clipped to the
   ``cfg.clip_percentiles`` percentiles, then z-scored. Voxels outside the brain keep their
   (clipped, z-scored) intensities; voxels outside a sequence's field of view read as intensity 0
   before normalisation, like air.

The returned :class:`PreprocessMeta` holds everything to map arrays and points back: see
:meth:`PreprocessMeta.invert`, :meth:`PreprocessMeta.world_to_working` and
:meth:`PreprocessMeta.working_to_world`. :func:`preprocess_labels` maps masks and points with it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from csvdnet.config import PreprocessConfig
from csvdnet.config import to_dict as config_to_dict
from csvdnet.errors import CsvdnetInputError

if TYPE_CHECKING:
    import SimpleITK as sitk

    from csvdnet.io import Image

__all__ = [
    "META_VERSION",
    "MIN_OVERLAP",
    "PreprocessMeta",
    "auto_brain_mask",
    "preprocess_labels",
    "preprocess_subject",
    "register_rigid",
]

META_VERSION = 1
"""Version of the :meth:`PreprocessMeta.to_dict` layout."""

MIN_OVERLAP = 0.5
"""Smallest fraction of the reference's brain box a sequence's field of view must cover."""

# Sequences that help the automatic brain mask, in order of preference: T2 shows CSF bright
# (filling FLAIR's dark sulci and ventricles), T1 is the next most common whole-brain scan.
_MASK_HELPERS = ("t2", "t1")
_OPEN_RADIUS_MM = 4.0
_CLOSE_RADIUS_MM = 4.0

# Rigid registration: three resolution levels on an isotropic virtual grid of this spacing,
# over the fixed image's foreground grown by a margin.
_REGISTRATION_SPACING_MM = 2.0
_REGISTRATION_MAX_SAMPLES = 50_000
_REGISTRATION_SEED = 20140101
_REGISTRATION_MASK_MM = 8.0
_REGISTRATION_POWELL = dict(numberOfIterations=20, maximumLineIterations=30, stepLength=1.0,
                            stepTolerance=1e-2, valueTolerance=1e-7)
# (shrink factors, smoothing mm, interpolator, samples, Powell settings) per stage, each stage
# starting where the previous one ended. The coarse levels (8, 4 mm, smoothed) only need to bring
# the optimiser close: linear interpolation there is several times cheaper than cubic B-spline
# and its bias is far below their voxel size; the final 2 mm level uses B-spline (linear
# interpolation biases sub-voxel rotations) with more samples, which steadies the final
# estimate (benchmarks/bench_preprocess.py, demo cohort: ~1.4-1.8x faster than B-spline with
# 50,000 samples at every level, same accuracy against the synthetic true head motion; 50,000
# samples at the finest level too was ~3x faster but let one DWI drift to 1.05 mm).
_REGISTRATION_STAGES = (
    ((4, 2), (4.0, 2.0), "linear", _REGISTRATION_MAX_SAMPLES, _REGISTRATION_POWELL),
    ((1,), (0.0,), "bspline", 2 * _REGISTRATION_MAX_SAMPLES, _REGISTRATION_POWELL),
)

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (ITK's physical frame), its own inverse
_AFFINE_ATOL = 1e-3  # mm; label grids may come from tools that round the affine to float32


# --------------------------------------------------------------------------------------------
# Geometry helpers.

def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 homogeneous matrix to (N, 3) points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def _ints(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _translation(shift: Iterable[float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = list(shift)
    return out


def _voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each voxel axis (column norms of the affine)."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def _ras_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes of ``affine`` reordered to the world (RAS) axes each voxel axis is closest to."""
    ornt = nib.orientations.io_orientation(affine)
    out = np.empty(3)
    out[ornt[:, 0].astype(int)] = _voxel_sizes(affine)
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
    anchor = _apply(affine, anchor_index)[0]
    corners = _apply(affine, _centre_corners(shape))
    tol = 1e-3  # voxels: keep float noise from adding a whole plane
    k_min = np.floor((corners.min(axis=0) - anchor) / spacing + tol)
    k_max = np.ceil((corners.max(axis=0) - anchor) / spacing - tol)
    grid = np.diag([*spacing, 1.0])
    grid[:3, 3] = anchor + k_min * spacing
    return grid, _ints(k_max - k_min + 1)


def _resample(data: np.ndarray, out_to_in: np.ndarray, shape: Sequence[int], order: int,
              dtype: Any = np.float32) -> np.ndarray:
    """Sample ``data`` on a grid whose voxel -> input-voxel map is the 4x4 ``out_to_in``.

    Outside the input grid (beyond half a voxel for nearest neighbour) values are 0.
    """
    return ndimage.affine_transform(
        np.asarray(data), out_to_in[:3, :3], offset=out_to_in[:3, 3], output_shape=tuple(shape),
        order=order, mode="grid-constant", cval=0.0, output=dtype)


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


# --------------------------------------------------------------------------------------------
# The meta record.

@dataclasses.dataclass(eq=False)  # array fields: element-wise equality has no single truth
class PreprocessMeta:
    """Everything needed to map working-grid arrays and points back to the reference grid.

    Attributes:
        reference: Name of the reference sequence.
        channels: Channel order of the preprocessed array.
        reference_shape: Shape of the reference image.
        reference_affine: 4x4 voxel -> world (RAS mm) affine of the reference image.
        working_shape: Shape (X, Y, Z) of the working grid.
        working_affine: 4x4 voxel -> world (RAS mm, reference frame) affine of the working grid:
            diagonal (canonical RAS) at the working spacing.
        brain_box: ``(start, stop)`` working-voxel indices of the brain's bounding box (without
            margin or padding).
        sequence_transforms: Per sequence, the 4x4 rigid world -> world matrix from the
            reference's world to that sequence's world (identity for the reference or when
            registration is off).
        sequence_grids: Per sequence, its native grid: ``{"path", "shape", "affine"}``.
        normalisation: Per channel ``{"clip_low", "clip_high", "mean", "std"}``: the raw
            intensities were clipped to ``[clip_low, clip_high]``, then mapped to
            ``(x - mean) / std``.
        brain_mask: How the brain region was obtained (``"auto"``, ``"label"``, ``"none"``).
        config: The :class:`~csvdnet.config.PreprocessConfig` used, as plain data.
        version: Layout version (:data:`META_VERSION`).
    """

    reference: str
    channels: list[str]
    reference_shape: tuple[int, int, int]
    reference_affine: np.ndarray
    working_shape: tuple[int, int, int]
    working_affine: np.ndarray
    brain_box: tuple[tuple[int, int, int], tuple[int, int, int]]
    sequence_transforms: dict[str, np.ndarray]
    sequence_grids: dict[str, dict[str, Any]]
    normalisation: dict[str, dict[str, float]]
    brain_mask: str
    config: dict[str, Any]
    version: int = META_VERSION

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Working voxel size in mm (x, y, z)."""
        return tuple(float(s) for s in _voxel_sizes(self.working_affine))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (arrays as nested lists)."""
        return {
            "version": self.version,
            "reference": self.reference,
            "channels": list(self.channels),
            "reference_shape": list(self.reference_shape),
            "reference_affine": np.asarray(self.reference_affine).tolist(),
            "working_shape": list(self.working_shape),
            "working_affine": np.asarray(self.working_affine).tolist(),
            "brain_box": [list(self.brain_box[0]), list(self.brain_box[1])],
            "sequence_transforms": {k: np.asarray(v).tolist()
                                    for k, v in self.sequence_transforms.items()},
            "sequence_grids": {k: {"path": g["path"], "shape": list(g["shape"]),
                                   "affine": np.asarray(g["affine"]).tolist()}
                               for k, g in self.sequence_grids.items()},
            "normalisation": {k: dict(v) for k, v in self.normalisation.items()},
            "brain_mask": self.brain_mask,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessMeta:
        """Rebuild a meta from :meth:`to_dict` output.

        Raises:
            ValueError: Unknown layout version. KeyError: a field is missing.
        """
        if data.get("version") != META_VERSION:
            raise ValueError(f"preprocessing meta version {data.get('version')!r} is not "
                             f"{META_VERSION}")
        return cls(
            reference=data["reference"],
            channels=list(data["channels"]),
            reference_shape=_ints(data["reference_shape"]),
            reference_affine=np.array(data["reference_affine"], dtype=np.float64),
            working_shape=_ints(data["working_shape"]),
            working_affine=np.array(data["working_affine"], dtype=np.float64),
            brain_box=(_ints(data["brain_box"][0]), _ints(data["brain_box"][1])),
            sequence_transforms={k: np.array(v, dtype=np.float64)
                                 for k, v in data["sequence_transforms"].items()},
            sequence_grids={k: {"path": g["path"], "shape": _ints(g["shape"]),
                                "affine": np.array(g["affine"], dtype=np.float64)}
                            for k, g in data["sequence_grids"].items()},
            normalisation={k: {n: float(x) for n, x in v.items()}
                           for k, v in data["normalisation"].items()},
            brain_mask=data["brain_mask"],
            config=dict(data["config"]),
        )

    def world_to_working(self, points: np.ndarray, sequence: str | None = None) -> np.ndarray:
        """Map world points (RAS mm) to float working-voxel coordinates.

        Args:
            points: ``(N, 3)`` world coordinates.
            sequence: The sequence whose scanner frame the points are in (its rigid
                co-registration is applied); ``None`` = the reference's.

        Returns:
            ``(N, 3)`` float working-voxel coordinates.
        """
        if sequence is not None:
            points = _apply(np.linalg.inv(self.sequence_transforms[sequence]), points)
        return _apply(np.linalg.inv(self.working_affine), points)

    def working_to_world(self, voxels: np.ndarray, sequence: str | None = None) -> np.ndarray:
        """Map working-voxel coordinates to world points (RAS mm); inverse of
        :meth:`world_to_working`."""
        points = _apply(self.working_affine, voxels)
        if sequence is not None:
            points = _apply(self.sequence_transforms[sequence], points)
        return points

    def invert(self, array: np.ndarray, order: int = 1) -> np.ndarray:
        """Put a working-grid array back onto the reference grid.

        Args:
            array: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` array on the working grid.
            order: Spline order (0 = nearest neighbour, for label maps; 1 = trilinear, for
                probabilities and images).

        Returns:
            Array of the reference image's shape (plus the channel axis if given), 0 outside the
            working grid. Nearest neighbour keeps the dtype; higher orders give floats.
        """
        array = np.asarray(array)
        if array.ndim not in (3, 4) or tuple(array.shape[:3]) != tuple(self.working_shape):
            raise ValueError(f"array of shape {array.shape} is not on the working grid "
                             f"{tuple(self.working_shape)} (optionally with a channel axis)")
        ref_to_work = np.linalg.inv(self.working_affine) @ self.reference_affine
        dtype = array.dtype if order == 0 else np.result_type(array.dtype, np.float32)
        if array.ndim == 3:
            return _resample(array, ref_to_work, self.reference_shape, order, dtype)
        return np.stack([_resample(array[..., c], ref_to_work, self.reference_shape, order, dtype)
                         for c in range(array.shape[-1])], axis=-1)

    def working_to_native(self, sequence: str) -> np.ndarray:
        """The 4x4 map from working voxels to ``sequence``'s native voxels (one resampling)."""
        return _to_native(self.sequence_grids[sequence]["affine"],
                          self.sequence_transforms[sequence], self.working_affine)


# --------------------------------------------------------------------------------------------
# Brain mask.

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


# --------------------------------------------------------------------------------------------
# Rigid co-registration.

def _to_sitk(image: Image, data: np.ndarray | None = None) -> sitk.Image:
    """The image (or ``data`` on its grid) as a SimpleITK float image in ITK's LPS frame."""
    import SimpleITK as sitk

    affine = _LPS @ np.asarray(image.affine, dtype=np.float64)
    sizes = _voxel_sizes(affine)
    voxels = np.asarray(image.data if data is None else data, dtype=np.float32)
    out = sitk.GetImageFromArray(np.ascontiguousarray(voxels.T))
    out.SetSpacing(sizes.tolist())
    out.SetOrigin(affine[:3, 3].tolist())
    out.SetDirection((affine[:3, :3] / sizes).ravel().tolist())
    return out


def _registration_copy(image: Image, data: np.ndarray | None = None) -> sitk.Image:
    """The image (or ``data`` on its grid) block-averaged to voxels of about the registration
    spacing: the metric samples a 2 mm grid, and smaller images make every level cheaper."""
    import SimpleITK as sitk

    factors = np.maximum(1, np.rint(_REGISTRATION_SPACING_MM / _voxel_sizes(image.affine)))
    return sitk.BinShrink(_to_sitk(image, data), [int(f) for f in factors])


def register_rigid(fixed: Image, moving: Image) -> np.ndarray:
    """Rigidly co-register ``moving`` to ``fixed`` (both in one scanner frame, e.g. one session).

    SimpleITK, Mattes mutual information (32 bins) over the fixed image's head (its Otsu
    foreground grown by 8 mm: far background would bias the metric as samples leave the moving
    field of view), at most 50,000 random samples per level (100,000 at the finest) with a
    fixed seed (deterministic), an Euler 3-D transform about the head's centre starting at
    identity (sequences of one session share scanner coordinates), Powell's method with scales
    from physical shift (gradient descent settles the translations and stops before the weaker
    rotations converge), three levels (8, 4, 2 mm) on an isotropic 2 mm virtual grid over the
    head, Gaussian smoothing 4, 2, 0 mm; linear interpolation at the two coarse levels (cheap;
    they only bring the optimiser close), cubic B-spline at the final one (linear interpolation
    biases sub-voxel rotations). Meant for the few degrees / millimetres patients move between sequences, not for
    images from different sessions.

    Args:
        fixed: The reference image.
        moving: The image to align.

    Returns:
        4x4 rigid matrix mapping a world point (RAS mm) of ``fixed``'s scanner frame to the same
        anatomy in ``moving``'s.

    Raises:
        CsvdnetInputError: Registration failed (e.g. too little overlap), naming ``moving``.
    """
    import SimpleITK as sitk

    head = _dilate(_foreground(np.asarray(fixed.data)), _REGISTRATION_MASK_MM,
                   _voxel_sizes(fixed.affine))
    head_mask = sitk.Cast(_registration_copy(fixed, head) > 0, sitk.sitkUInt8)
    start, stop = _bounding_box(head)
    corners = _apply(_LPS @ np.asarray(fixed.affine, dtype=np.float64),
                     start + _centre_corners(stop - start))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    size = [int(n) for n in np.ceil((hi - lo) / _REGISTRATION_SPACING_MM) + 1]

    transform = sitk.Euler3DTransform()
    transform.SetCenter(((lo + hi) / 2).tolist())
    fixed_copy, moving_copy = _registration_copy(fixed), _registration_copy(moving)
    voxels = float(np.prod(size))
    for shrink, smoothing, interpolator, samples, powell in _REGISTRATION_STAGES:
        reg = sitk.ImageRegistrationMethod()
        reg.SetVirtualDomain(size, lo.tolist(), [_REGISTRATION_SPACING_MM] * 3,
                             np.eye(3).ravel().tolist())
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        reg.SetMetricFixedMask(head_mask)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentagePerLevel(
            [min(1.0, samples * f ** 3 / voxels) for f in shrink],
            _REGISTRATION_SEED)
        reg.SetInterpolator({"linear": sitk.sitkLinear,
                             "bspline": sitk.sitkBSpline}[interpolator])
        reg.SetOptimizerAsPowell(**powell)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(list(shrink))
        reg.SetSmoothingSigmasPerLevel(list(smoothing))
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        reg.SetInitialTransform(transform, inPlace=True)
        try:
            reg.Execute(fixed_copy, moving_copy)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise CsvdnetInputError(moving.path, f"rigid registration to {fixed.path} failed "
                                                 f"({reason})") from None
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    centre = np.array(transform.GetCenter())
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = np.array(transform.GetTranslation()) + centre - matrix @ centre
    return _LPS @ lps @ _LPS


# --------------------------------------------------------------------------------------------
# The subject pipeline.

def _check_config(cfg: PreprocessConfig) -> None:
    if cfg.brain_mask not in ("auto", "none", "label"):
        raise CsvdnetInputError("<config>", f"preprocess.brain_mask must be 'auto', 'none' or "
                                            f"'label', got {cfg.brain_mask!r}")
    if cfg.spacing is not None and min(cfg.spacing) <= 0:
        raise CsvdnetInputError("<config>", f"preprocess.spacing must be positive, got "
                                            f"{list(cfg.spacing)}")
    if cfg.pad_multiple < 1:
        raise CsvdnetInputError("<config>", f"preprocess.pad_multiple must be >= 1, got "
                                            f"{cfg.pad_multiple}")
    lo, hi = cfg.clip_percentiles
    if not 0.0 <= lo < hi <= 100.0:
        raise CsvdnetInputError("<config>", f"preprocess.clip_percentiles must satisfy "
                                            f"0 <= low < high <= 100, got {[lo, hi]}")


def _given_brain_region(images: Mapping[str, Image], cfg: PreprocessConfig,
                        brain_mask: Image | None, grid: np.ndarray,
                        shape: tuple[int, int, int]) -> np.ndarray:
    """The brain region on the uncropped grid for ``"label"`` (the mask) and ``"none"`` (the
    reference's field of view)."""
    reference = images[cfg.reference]
    to_ref = np.linalg.inv(reference.affine) @ grid
    if cfg.brain_mask == "none":
        return _resample(np.ones(reference.shape[:3], bool), to_ref, shape, 0, bool)
    if brain_mask is None:
        raise CsvdnetInputError(_location(images), "preprocess.brain_mask is 'label' but no "
                                                   "brain_mask label was given")
    if not _same_grid(brain_mask, reference.shape, reference.affine):
        raise CsvdnetInputError(brain_mask.path, f"brain mask grid {tuple(brain_mask.shape)} "
                                                 f"differs from the reference {cfg.reference} "
                                                 f"({reference.path})")
    region = _resample(np.asarray(brain_mask.data) > 0.5, to_ref, shape, 0, bool)
    if not region.any():
        raise CsvdnetInputError(brain_mask.path, "brain mask is empty (all zero)")
    return region


def _check_overlap(images: Mapping[str, Image], reference: str, region: np.ndarray,
                   grid: np.ndarray) -> None:
    """Raise if a sequence's field of view covers less than :data:`MIN_OVERLAP` of the box."""
    start, stop = _bounding_box(region)
    axes = [np.linspace(a, b - 1, num=min(b - a, 16)) for a, b in zip(start, stop)]
    samples = _apply(grid, np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T)
    for name, image in images.items():
        if name == reference:
            continue
        voxels = _apply(np.linalg.inv(image.affine), samples)
        covered = float(np.mean(_inside(voxels, image.shape)))
        if covered < MIN_OVERLAP:
            raise CsvdnetInputError(
                image.path, f"field of view covers {covered:.0%} of the brain box of the "
                            f"reference {reference} (needs >= {MIN_OVERLAP:.0%}): another "
                            f"session, or a wrong affine?")


def _mask_helper(images: Mapping[str, Image], reference: str) -> str | None:
    return next((n for n in _MASK_HELPERS if n in images and n != reference), None)


def _crop_box(region: np.ndarray, spacing: np.ndarray,
              cfg: PreprocessConfig) -> tuple[np.ndarray, ...]:
    """Start and shape of the working block on the uncropped grid, and the brain box (start,
    stop) in the block.

    The brain box grows by the margin (kept inside the uncropped grid), then symmetrically to
    a multiple of ``cfg.pad_multiple`` (possibly past the field of view).
    """
    box_start, box_stop = _bounding_box(region)
    margin = np.ceil(cfg.crop_margin_mm / spacing - 1e-6).astype(int)
    start = np.maximum(box_start - margin, 0)
    stop = np.minimum(box_stop + margin, region.shape)
    size = stop - start
    padded = -(-size // cfg.pad_multiple) * cfg.pad_multiple
    start = start - (padded - size) // 2
    return start, padded, box_start - start, box_stop - start


def _normalise(volume: np.ndarray, mask: np.ndarray, percentiles: Sequence[float],
               path: Any) -> tuple[np.ndarray, dict[str, float]]:
    """Clip to the in-brain percentiles, z-score with the in-brain mean and std."""
    lo, hi = np.percentile(volume[mask], list(percentiles))
    clipped = np.clip(volume, lo, hi)
    inside = clipped[mask]
    mean, std = float(inside.mean()), float(inside.std())
    if not std > 1e-6 * max(1.0, abs(mean)):
        raise CsvdnetInputError(path, "image is constant inside the brain mask")
    params = {"clip_low": float(lo), "clip_high": float(hi), "mean": mean, "std": std}
    return ((clipped - mean) / std).astype(np.float32), params


def preprocess_subject(images: Mapping[str, Image], cfg: PreprocessConfig,
                       brain_mask: Image | None = None) -> tuple[np.ndarray, PreprocessMeta]:
    """Bring one subject's sequences onto the normalised working grid (see the module doc).

    Args:
        images: Sequence name -> image, in channel order; must include ``cfg.reference``.
        cfg: Preprocessing settings.
        brain_mask: Brain mask on the reference grid, used when ``cfg.brain_mask == "label"``.

    Returns:
        ``(array, meta)``: float32 ``(X, Y, Z, C)`` array in the channel order of ``images``,
        and the :class:`PreprocessMeta` that inverts it.

    Raises:
        CsvdnetInputError: Reference sequence missing; a sequence not covering the brain; a
            brain mask missing, on another grid or empty; a constant image; registration failure.
    """
    _check_config(cfg)
    if cfg.reference not in images:
        raise CsvdnetInputError(_location(images), f"reference sequence {cfg.reference!r} is "
                                                   f"missing (sequences: {', '.join(images)})")
    reference = images[cfg.reference]
    spacing = (_ras_spacing(reference.affine) if cfg.spacing is None
               else np.asarray(cfg.spacing, dtype=np.float64))
    grid, grid_shape = _working_grid(reference.affine, reference.shape, spacing)

    if cfg.brain_mask == "auto":
        # The reference's foreground stands in for the brain until the helper is registered.
        reference_full = _resample(reference.data, np.linalg.inv(reference.affine) @ grid,
                                   grid_shape, 1)
        region = _foreground(reference_full)
        if not region.any():
            raise CsvdnetInputError(reference.path, "image is constant: no brain to find")
    else:
        region = _given_brain_region(images, cfg, brain_mask, grid, grid_shape)
    _check_overlap(images, cfg.reference, region, grid)

    transforms = {name: (register_rigid(reference, image)
                         if cfg.register and name != cfg.reference else np.eye(4))
                  for name, image in images.items()}
    grids = {name: {"path": None if image.path is None else str(image.path),
                    "shape": _ints(image.shape[:3]),
                    "affine": np.asarray(image.affine, dtype=np.float64)}
             for name, image in images.items()}

    def to_native(name: str, working_affine: np.ndarray) -> np.ndarray:
        return _to_native(grids[name]["affine"], transforms[name], working_affine)

    if cfg.brain_mask == "auto":
        helper = _mask_helper(images, cfg.reference)
        volumes = [reference_full] + ([] if helper is None else [
            _resample(images[helper].data, to_native(helper, grid), grid_shape, 1)])
        region = auto_brain_mask(volumes, spacing)
        if not region.any():
            raise CsvdnetInputError(reference.path, "automatic brain mask is empty: no brain "
                                                    "stands out from the background")

    start, shape, box_start, box_stop = _crop_box(region, spacing, cfg)
    working_affine = grid @ _translation(start)
    mask = _crop(region, start, shape)

    channels, normalisation = [], {}
    for name, image in images.items():
        volume = _resample(image.data, to_native(name, working_affine), shape,
                           cfg.interpolation_order)
        volume, normalisation[name] = _normalise(volume, mask, cfg.clip_percentiles, image.path)
        channels.append(volume)

    meta = PreprocessMeta(
        reference=cfg.reference,
        channels=list(images),
        reference_shape=_ints(reference.shape[:3]),
        reference_affine=np.asarray(reference.affine, dtype=np.float64),
        working_shape=_ints(shape),
        working_affine=working_affine,
        brain_box=(_ints(box_start), _ints(box_stop)),
        sequence_transforms=transforms,
        sequence_grids=grids,
        normalisation=normalisation,
        brain_mask=cfg.brain_mask,
        config=config_to_dict(cfg),
    )
    return np.stack(channels, axis=-1), meta


# --------------------------------------------------------------------------------------------
# Labels.

def _footprint(meta: PreprocessMeta, sequence: str) -> np.ndarray:
    """Size, in native voxels along each native axis, of one working voxel of ``meta``."""
    native = meta.sequence_grids[sequence]["affine"][:3, :3]
    directions = native / _voxel_sizes(native)
    extent = np.abs(directions.T) @ np.asarray(meta.spacing)
    return np.maximum(1, np.rint(extent / _voxel_sizes(native))).astype(int)


def _map_mask(meta: PreprocessMeta, mask: Image, sequence: str) -> np.ndarray:
    """One mask onto the working grid as uint8.

    A mask with values in [0, 1] (binary or soft) is nearest-neighbour, or, where a working voxel
    spans several native voxels, kept where the partial volume (box mean, then trilinear) is
    > 0.5. Other masks are label maps of integers 0..255, nearest-neighbour.
    """
    data = np.asarray(mask.data)
    out_to_in = meta.working_to_native(sequence)
    lo, hi = float(data.min()), float(data.max())
    if lo >= 0.0 and hi <= 1.0:
        footprint = _footprint(meta, sequence)
        if np.all(footprint == 1):
            return (_resample(data, out_to_in, meta.working_shape, 0) > 0.5).astype(np.uint8)
        fraction = ndimage.uniform_filter(data.astype(np.float32), size=footprint,
                                          mode="constant")
        # scipy centres an even-sized box half a voxel below the output voxel.
        centred = _translation(0.5 * (footprint % 2 == 0)) @ out_to_in
        return (_resample(fraction, centred, meta.working_shape, 1) > 0.5).astype(np.uint8)
    if lo < 0 or hi > 255 or not np.array_equal(data, np.rint(data)):
        raise CsvdnetInputError(mask.path, f"not a mask or label map: values from {lo:g} to "
                                           f"{hi:g} (expected 0/1 or integers 0-255)")
    return _resample(data.astype(np.uint8), out_to_in, meta.working_shape, 0, np.uint8)


def preprocess_labels(meta: PreprocessMeta, masks: Mapping[str, Image] | None = None,
                      points: Mapping[str, np.ndarray] | None = None, *,
                      label_sequence: Mapping[str, str] | None = None,
                      point_sources: Mapping[str, str | os.PathLike] | None = None,
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Map a subject's label masks and points onto its working grid.

    A label is drawn on the reference sequence unless ``label_sequence`` names another one;
    it then goes through that sequence's rigid co-registration. Points lying inside the drawn
    on image but outside the (cropped) working grid are kept, with coordinates outside
    ``[0, working_shape)``.

    Args:
        meta: The subject's preprocessing meta.
        masks: Task -> mask image on its sequence's grid (binary / soft masks or label maps).
        points: Task -> ``(N, 3)`` world coordinates (RAS mm, scanner frame of their sequence).
        label_sequence: Task -> sequence the label was drawn on (default: the reference).
        point_sources: Task -> file the points came from, named in errors.

    Returns:
        ``(masks, points)``: uint8 ``(X, Y, Z)`` working-grid masks, and ``(N, 3)`` float64
        working-voxel coordinates, keyed by task.

    Raises:
        CsvdnetInputError: A mask grid differs from its sequence's; points outside the image
            they were drawn on; a label drawn on a sequence that was not preprocessed; a mask
            whose values are neither 0..1 nor integer labels 0..255.
    """
    label_sequence = label_sequence or {}
    point_sources = point_sources or {}

    def sequence_of(task: str, source: Any) -> str:
        name = label_sequence.get(task, meta.reference)
        if name not in meta.sequence_grids:
            raise CsvdnetInputError(source, f"{task} is drawn on sequence {name!r}, which was "
                                            f"not preprocessed ({', '.join(meta.channels)})")
        return name

    out_masks = {}
    for task, mask in (masks or {}).items():
        name = sequence_of(task, mask.path)
        grid = meta.sequence_grids[name]
        if not _same_grid(mask, grid["shape"], grid["affine"]):
            raise CsvdnetInputError(mask.path, f"grid (shape {tuple(mask.shape[:3])}) differs "
                                               f"from its sequence {name} ({grid['path']}, "
                                               f"shape {tuple(grid['shape'])})")
        out_masks[task] = _map_mask(meta, mask, name)

    out_points = {}
    for task, world in (points or {}).items():
        source = point_sources.get(task, f"<{task} points>")
        name = sequence_of(task, source)
        world = np.asarray(world, dtype=np.float64).reshape(-1, 3)
        grid = meta.sequence_grids[name]
        outside = ~_inside(_apply(np.linalg.inv(grid["affine"]), world), grid["shape"])
        if outside.any():
            first = ", ".join(f"{c:g}" for c in world[np.argmax(outside)])
            raise CsvdnetInputError(source, f"{int(outside.sum())} of {len(world)} points lie "
                                            f"outside the {name} image (first: {first} mm); "
                                            f"points must be world RAS mm")
        out_points[task] = meta.world_to_working(world, sequence=name)
    return out_masks, out_points
