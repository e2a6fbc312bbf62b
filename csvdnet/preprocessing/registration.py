"""Rigid co-registration of a subject's sequences to its reference (SimpleITK, Mattes MI).

What makes it fast (benchmarks/RESULTS.md has each idea's measured trade-off): the reference side
(its 2 and 4 mm copies, head mask, sampling domain) is prepared once per subject; both images are
block-averaged to ~2 mm (and that to ~4 mm) before anything else, so no stage touches a
full-resolution image or rebuilds a Gaussian pyramid; the mutual information is estimated on a
few thousand random points (3,000 at 4 mm, 15,000 at 2 mm, of ~150,000 head voxels) with linear
interpolation; Powell's method runs few, short line searches; and the sequences are registered
in parallel threads (SimpleITK releases the GIL). What keeps it accurate: each 2 mm copy is
divided by a smooth bias field (quadratic in log intensity) fitted to its own head, because a
multiplicative bias that differs between two sequences shifts the optimum of mutual
information: on a synthetic clinical DWI the optimum of the all-voxel metric lay 0.5-0.7 degrees
from the planted motion, and the registration error fell from 0.77 to 0.08 degrees with the
correction.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Mapping

import numpy as np
from nibabel.affines import apply_affine, voxel_sizes
from scipy import ndimage

from csvdnet.errors import CsvdnetInputError
from csvdnet.preprocessing.brain_mask import _foreground

if TYPE_CHECKING:
    import SimpleITK as sitk

    from csvdnet.io import Image

# The isotropic virtual grid every stage samples.
_REGISTRATION_SPACING_MM = 2.0
_REGISTRATION_SEED = 20140101
# Powell's method (derivative-free line searches along each parameter): gradient descent, tried
# first at a third of the cost, settles the translations and stops before the weaker rotations
# converge (1.2 degrees left of a 3 degree phantom rotation; benchmarks/RESULTS.md).
_POWELL = dict(numberOfIterations=10, maximumLineIterations=10, stepLength=1.0,
               stepTolerance=0.02, valueTolerance=1e-6)
# (coarsening of the 2 mm grid, random samples, optimizer settings) per stage, each starting
# where the previous one ended. The coarse images are block averages of the 2 mm copies, made
# once (the reference's once per subject), not a Gaussian pyramid that SimpleITK would rebuild
# for every registration. 15,000 samples at 2 mm: 10,000 let one clinical
# T1 drift to 0.69 mm; 30,000 took 1.5x the time for no better worst case.
_REGISTRATION_STAGES = (
    (2, 3_000, _POWELL),
    (1, 15_000, _POWELL),
)

# The metric runs over the reference's head (Otsu foreground) grown by this margin: the scalp
# edge is the strongest feature of every sequence, far background only adds noise.
_REGISTRATION_MASK_MM = 8.0
# Polynomial order of the log bias field removed from each 2 mm copy (10 terms for order 2;
# order 3 was no more accurate and 1.5x slower) and the number of head voxels it is fitted to.
_BIAS_ORDER = 2
_BIAS_FIT_VOXELS = 20_000
_BIAS_FIELD_POWERS = [(i, j, k) for i in range(_BIAS_ORDER + 1)
                      for j in range(_BIAS_ORDER + 1 - i) for k in range(_BIAS_ORDER + 1 - i - j)]

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (ITK's physical frame), its own inverse


def _to_sitk(image: Image) -> sitk.Image:
    """The image as a SimpleITK float image in ITK's LPS frame."""
    import SimpleITK as sitk

    affine = _LPS @ np.asarray(image.affine, dtype=np.float64)
    sizes = voxel_sizes(affine)
    out = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(image.data, np.float32).T))
    out.SetSpacing(sizes.tolist())
    out.SetOrigin(affine[:3, 3].tolist())
    out.SetDirection((affine[:3, :3] / sizes).ravel().tolist())
    return out


def _bias_field(volume: np.ndarray, head: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """exp of a polynomial of order :data:`_BIAS_ORDER` fitted to log intensity in ``head``,
    normalised to mean 1 there: the smooth multiplicative bias of one sequence."""
    points = np.argwhere(head)
    if len(points) > _BIAS_FIT_VOXELS:  # a regular subsample: deterministic and plenty
        points = points[:: len(points) // _BIAS_FIT_VOXELS]
    centre = (np.asarray(volume.shape) - 1) / 2.0
    half = np.maximum(centre * spacing, 1e-6)
    axes = [(np.arange(n) - c) * s / h for n, c, s, h in zip(volume.shape, centre, spacing, half)]
    powers = _BIAS_FIELD_POWERS
    design = np.stack([axes[0][points[:, 0]] ** i * axes[1][points[:, 1]] ** j
                       * axes[2][points[:, 2]] ** k for i, j, k in powers], axis=1)
    values = np.log(np.maximum(volume[tuple(points.T)], 1e-6))
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    field = np.zeros(volume.shape, dtype=np.float64)
    for c, (i, j, k) in zip(coef, powers):
        field += c * (axes[0][:, None, None] ** i * axes[1][None, :, None] ** j
                      * axes[2][None, None, :] ** k)
    field -= field[head].mean()
    return np.exp(field)


def _registration_copy(image: Image) -> tuple[sitk.Image, np.ndarray]:
    """The image block-averaged to voxels of about the registration spacing and divided by its
    smooth bias field, and its foreground (on the copy's grid, in SimpleITK's z, y, x order)."""
    import SimpleITK as sitk

    factors = np.maximum(1, np.rint(_REGISTRATION_SPACING_MM / voxel_sizes(image.affine)))
    small = sitk.BinShrink(_to_sitk(image), [int(f) for f in factors])
    volume = sitk.GetArrayFromImage(small).astype(np.float64)
    spacing = np.array(small.GetSpacing())[::-1]
    head = _foreground(volume)
    if head.sum() > 10 * len(_BIAS_FIELD_POWERS):
        volume /= _bias_field(volume, head, spacing)
    out = sitk.GetImageFromArray(volume.astype(np.float32))
    out.CopyInformation(small)
    return out, head


class _Reference:
    """The fixed side, prepared once per subject: its 2 mm copy, the metric mask (head + margin)
    and the virtual domain (an axis-aligned 2 mm box around the head, LPS)."""

    def __init__(self, image: Image) -> None:
        import SimpleITK as sitk

        self.image = image
        self.copy, foreground = _registration_copy(image)
        spacing = np.array(self.copy.GetSpacing())[::-1]
        head = (foreground if not foreground.any() else
                ndimage.distance_transform_edt(~foreground, sampling=spacing)
                <= _REGISTRATION_MASK_MM)
        self.mask = sitk.GetImageFromArray(head.astype(np.uint8))
        self.mask.CopyInformation(self.copy)
        index = np.argwhere(head)[:, ::-1]  # x, y, z as SimpleITK indexes
        if len(index) == 0:
            raise CsvdnetInputError(image.path, "image has no foreground to register to")
        low, high = index.min(axis=0), index.max(axis=0)
        corners = np.array([np.where(bits, high, low) for bits in np.ndindex(2, 2, 2)], float)
        index_to_lps = np.eye(4)
        direction = np.array(self.copy.GetDirection()).reshape(3, 3)
        index_to_lps[:3, :3] = direction * np.array(self.copy.GetSpacing())
        index_to_lps[:3, 3] = self.copy.GetOrigin()
        world = apply_affine(index_to_lps, corners)
        self.lo, self.hi = world.min(axis=0), world.max(axis=0)
        self.copies = _pyramid(self.copy)


def _pyramid(copy: sitk.Image) -> dict[int, sitk.Image]:
    """The 2 mm copy and its block averages for each stage's coarsening (per axis, so that a
    thick slice is not averaged with its neighbours)."""
    import SimpleITK as sitk

    out = {}
    for factor, _, _ in _REGISTRATION_STAGES:
        spacing = np.array(copy.GetSpacing())
        bins = np.maximum(1, np.rint(factor * _REGISTRATION_SPACING_MM / spacing)).astype(int)
        out[factor] = copy if factor == 1 else sitk.BinShrink(copy, [int(b) for b in bins])
    return out


def _register(reference: _Reference, moving: Image, threads: int) -> np.ndarray:
    """One moving image onto the prepared reference; the 4x4 RAS world -> world matrix."""
    import SimpleITK as sitk

    transform = sitk.Euler3DTransform()
    transform.SetCenter(((reference.lo + reference.hi) / 2).tolist())
    try:
        moving_copies = _pyramid(_registration_copy(moving)[0])
        for factor, samples, powell in _REGISTRATION_STAGES:
            spacing = factor * _REGISTRATION_SPACING_MM
            size = [int(n) for n in np.ceil((reference.hi - reference.lo) / spacing) + 1]
            reg = sitk.ImageRegistrationMethod()
            reg.SetNumberOfThreads(threads)
            # One work unit: ITK sums the metric's per-unit parts in the order they finish, and
            # the default number of units follows the machine's threads, so the matrices (and
            # every prediction after them) differed between machines (0.015 in a matrix element
            # with ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 against the default, on 2 cores).
            reg.SetNumberOfWorkUnits(1)
            reg.SetVirtualDomain(size, reference.lo.tolist(), [spacing] * 3,
                                 np.eye(3).ravel().tolist())
            reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
            reg.SetMetricFixedMask(reference.mask)
            reg.SetMetricSamplingStrategy(reg.RANDOM)
            reg.SetMetricSamplingPercentage(min(1.0, samples / float(np.prod(size))),
                                            _REGISTRATION_SEED)
            reg.SetInterpolator(sitk.sitkLinear)
            reg.SetOptimizerAsPowell(**powell)
            reg.SetOptimizerScalesFromPhysicalShift()
            reg.SetInitialTransform(transform, inPlace=True)
            reg.Execute(reference.copies[factor], moving_copies[factor])
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise CsvdnetInputError(moving.path, f"rigid registration to {reference.image.path} "
                                             f"failed ({reason})") from None
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    centre = np.array(transform.GetCenter())
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = np.array(transform.GetTranslation()) + centre - matrix @ centre
    return _LPS @ lps @ _LPS


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which containers and schedulers set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def register_sequences(fixed: Image, moving: Mapping[str, Image],
                       workers: int | None = None) -> dict[str, np.ndarray]:
    """Rigidly co-register several images of one session to ``fixed``, in parallel threads.

    SimpleITK, Mattes mutual information (32 bins) over the fixed image's head (its Otsu
    foreground grown by 8 mm) on 3,000 then 15,000 random points (fixed seed), an Euler 3-D
    transform about the head's centre starting at identity (sequences of one session share
    scanner coordinates), Powell's method with scales from physical shift, two stages (on
    isotropic 4 then 2 mm virtual grids over the head, images block-averaged to match), linear
    interpolation, both images block-averaged to ~2 mm and freed of a smooth bias field first
    (see the module docstring). Meant for the few degrees / millimetres patients move between
    sequences, not for images from different sessions. When the header alignment is already
    right, the first line searches find nothing to gain and Powell stops after one iteration.

    Args:
        fixed: The reference image.
        moving: Name -> image to align.
        workers: Parallel registrations (default: one per available CPU, at most one per
            image); the CPUs are shared out between them.

    Returns:
        Name -> 4x4 rigid matrix mapping a world point (RAS mm) of ``fixed``'s scanner frame to
        the same anatomy in that image's.

    Raises:
        CsvdnetInputError: Registration failed (e.g. too little overlap), naming the image.
    """
    if not moving:
        return {}
    reference = _Reference(fixed)
    cpus = available_cpus()
    workers = max(1, min(len(moving), workers or cpus))
    threads = max(1, cpus // workers)
    if workers == 1:
        return {name: _register(reference, image, threads) for name, image in moving.items()}
    # Largest images first (they take longest), so that no worker is left with one at the end.
    order = sorted(moving, key=lambda name: -int(np.prod(moving[name].shape)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="register") as pool:
        futures = {name: pool.submit(_register, reference, moving[name], threads)
                   for name in order}
        return {name: futures[name].result() for name in moving}


def register_rigid(fixed: Image, moving: Image) -> np.ndarray:
    """Rigidly co-register one image to ``fixed``; see :func:`register_sequences`.

    Returns:
        4x4 rigid matrix mapping a world point (RAS mm) of ``fixed``'s scanner frame to the same
        anatomy in ``moving``'s.

    Raises:
        CsvdnetInputError: Registration failed (e.g. too little overlap), naming ``moving``.
    """
    return register_sequences(fixed, {"moving": moving}, workers=1)["moving"]
