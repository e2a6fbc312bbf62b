"""Rigid co-registration of a subject's sequences to its reference (SimpleITK, Mattes MI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from nibabel.affines import apply_affine, voxel_sizes

from csvdnet.errors import CsvdnetInputError
from csvdnet.preprocessing.brain_mask import _dilate, _foreground
from csvdnet.preprocessing.grid import _bounding_box, _centre_corners

if TYPE_CHECKING:
    import SimpleITK as sitk

    from csvdnet.io import Image

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


def _to_sitk(image: Image, data: np.ndarray | None = None) -> sitk.Image:
    """The image (or ``data`` on its grid) as a SimpleITK float image in ITK's LPS frame."""
    import SimpleITK as sitk

    affine = _LPS @ np.asarray(image.affine, dtype=np.float64)
    sizes = voxel_sizes(affine)
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

    factors = np.maximum(1, np.rint(_REGISTRATION_SPACING_MM / voxel_sizes(image.affine)))
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
                   voxel_sizes(fixed.affine))
    head_mask = sitk.Cast(_registration_copy(fixed, head) > 0, sitk.sitkUInt8)
    start, stop = _bounding_box(head)
    corners = apply_affine(_LPS @ np.asarray(fixed.affine, dtype=np.float64),
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
