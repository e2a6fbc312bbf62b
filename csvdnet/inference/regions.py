"""The region atlas on a subject: where each finding lies (ventricles, basal ganglia, lobar, ...).

Where a subject's region map comes from
---------------------------------------
The region atlas is the one :mod:`csvdnet.atlas` derives from the MNI152 2009a template (nilearn,
offline; the same atlas the synthetic cohort samples). It is brought to a subject by a 12-dof
affine registration of the template to one of the subject's images (:func:`template_to_subject`),
then sampled onto the reference grid by nearest neighbour (:func:`subject_regions`):

1. **Subject copy**: the image resampled (linearly) to voxels of at least 2 mm along its own
   axes, over its field of view: every later step runs on ~1 M voxels whatever the input.
2. **Brain mask** (given, else :func:`csvdnet.preprocessing.auto_brain_mask` of that copy).
   The auto mask needs voxels of ~2 mm or finer to cut the brain from the scalp: on a 4 mm
   image it keeps scalp, the start below is then too large and the registration fails (tiny
   synthetic T1s: mean region Dice 0.33-0.50); pass a brain mask for such images.
3. **Initial affine** by moments: :func:`csvdnet.atlas.world_to_mni_from_mask` matches the brain
   mask's centroid and per-axis spread to the template brain's (translation + scaling).
4. **Affine registration** (SimpleITK, 12 dof): the template T1 at 2 mm, cropped to its brain
   grown by 4 mm, is the fixed image and that grown brain the metric mask (the brain's outer edge
   counts); the subject copy cropped to its brain mask grown by 4 mm, zero outside it (a
   skull-stripped template would otherwise be pulled towards the scalp), is the moving image.
   Mattes mutual information (32 bins: works for T1 and FLAIR alike), 6,000 random samples per
   level with a fixed seed, two levels (template shrunk 2x and 1x, Gaussian smoothing 2 and 1
   mm), regular-step gradient descent with scales from physical shift. About 1.4 CPU s.

Accuracy (``benchmarks/bench_regions.py``, RESULTS.md): on synthetic subjects, whose true region
maps come from a smooth non-linear warp an affine cannot follow, the mean region Dice (~0.74)
is above that of the warp's own linear part (~0.68): the registration finds the affine that fits
the warped anatomy best. A real brain differs from the template more than an affine can absorb
(atrophy, ventricle shape): the region map is approximate at region borders, the
periventricular band most of all when the ventricles are enlarged.

Sides are taken in MNI space, as the synthetic cohort does: MNI x < 0 is left, and a point
within :data:`MIDLINE_MM` of the midline is ``"M"``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from csvdnet.atlas import REGION_NAMES, load_atlas, regions_in_subject, world_to_mni_from_mask
from csvdnet.errors import CsvdnetInputError
from csvdnet.io import Image

__all__ = ["MIDLINE_MM", "region_and_side", "subject_regions", "template_to_subject"]

MIDLINE_MM = 2.0
"""Points closer than this to the MNI midline (|x| < 2 mm) have side ``"M"`` (synth's rule)."""

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (ITK's physical frame), its own inverse
_SUBJECT_SPACING_MM = 2.0  # the moving copy is resampled to voxels at least this size
_MASK_MARGIN_MM = 4.0  # brain masks are grown by this much before they bound the metric
_SAMPLES = 6_000  # metric samples per level: enough for 12 parameters, cheap
_SEED = 20140101
_LEVELS = dict(shrink=[2, 1], smoothing_mm=[2.0, 1.0])
_OPTIMIZER = dict(learningRate=2.0, minStep=0.02, numberOfIterations=60,
                  relaxationFactor=0.6, gradientMagnitudeTolerance=1e-5)


def _voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))


def _to_sitk(data: np.ndarray, affine: np.ndarray):
    """A volume in (i, j, k) file order with its RAS affine as a SimpleITK image (LPS frame)."""
    import SimpleITK as sitk

    lps = _LPS @ np.asarray(affine, dtype=np.float64)
    sizes = _voxel_sizes(lps)
    out = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, dtype=np.float32).T))
    out.SetSpacing(sizes.tolist())
    out.SetOrigin(lps[:3, 3].tolist())
    out.SetDirection((lps[:3, :3] / sizes).ravel().tolist())
    return out


def _from_sitk(image) -> tuple[np.ndarray, np.ndarray]:
    """A SimpleITK image as ((i, j, k) array, RAS voxel -> world affine)."""
    import SimpleITK as sitk

    spacing = np.array(image.GetSpacing())
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * spacing
    lps[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).T, _LPS @ lps


def _coarse_copy(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The volume resampled (linearly) to voxels of at least :data:`_SUBJECT_SPACING_MM` along
    each of its own axes, over the same field of view; returns (array, affine)."""
    import SimpleITK as sitk

    image = _to_sitk(data, affine)
    spacing = np.array(image.GetSpacing())
    coarse = np.maximum(spacing, _SUBJECT_SPACING_MM)
    size = np.maximum(1, np.floor(np.array(image.GetSize()) * spacing / coarse)).astype(int)
    # Same field of view: the first voxel centre moves by half the change of voxel size.
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ ((coarse - spacing) / 2)
    out = sitk.Resample(image, [int(n) for n in size], sitk.Transform(), sitk.sitkLinear,
                        origin.tolist(), coarse.tolist(), image.GetDirection(), 0.0,
                        sitk.sitkFloat32)
    return _from_sitk(out)


def _dilate_mm(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    if not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius_mm


@functools.lru_cache(maxsize=1)
def _template() -> tuple[Any, Any, np.ndarray]:
    """The fixed image (template T1 cropped to its brain grown by a margin), its metric mask
    and the template brain's centre (LPS mm), built once per process."""
    import SimpleITK as sitk

    atlas = load_atlas(2)
    spacing = _voxel_sizes(atlas.affine)
    grown = _dilate_mm(atlas.brain, _MASK_MARGIN_MM, spacing)
    where = np.argwhere(grown)
    # Two voxels beyond the mask keep the smoothing at the finest level off the crop's edge.
    lo = np.maximum(where.min(axis=0) - 2, 0)
    hi = np.minimum(where.max(axis=0) + 3, atlas.brain.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    affine = atlas.affine.copy()
    affine[:3, 3] += atlas.affine[:3, :3] @ lo
    fixed = _to_sitk(atlas.t1[box], affine)
    fixed_mask = sitk.Cast(_to_sitk(grown[box].astype(np.float32), affine) > 0.5, sitk.sitkUInt8)
    centre = atlas.affine[:3, :3] @ np.argwhere(atlas.brain).mean(axis=0) + atlas.affine[:3, 3]
    return fixed, fixed_mask, (_LPS[:3, :3] @ centre)


def template_to_subject(image: Image, brain_mask: np.ndarray | None = None) -> np.ndarray:
    """World -> MNI affine of a subject by affine registration of the MNI152 template.

    See the module docstring for the method. The result feeds :func:`subject_regions` and
    :func:`region_and_side` (and :func:`csvdnet.atlas.regions_in_subject`).

    Args:
        image: The subject's T1 (best) or FLAIR, skull-stripped or not.
        brain_mask: Brain mask on ``image``'s grid (non-zero = brain); computed when ``None``.

    Returns:
        4x4 matrix mapping the subject's world (scanner RAS mm) to MNI mm.

    Raises:
        CsvdnetInputError: No brain found in the image, or the registration failed.
    """
    import SimpleITK as sitk

    from csvdnet.preprocessing import auto_brain_mask

    data, affine = _coarse_copy(image.data, image.affine)
    spacing = _voxel_sizes(affine)
    if brain_mask is None:
        mask = auto_brain_mask([data], spacing)
    else:
        mask = _coarse_copy((np.asarray(brain_mask) > 0).astype(np.float32), image.affine)[0] > 0.5
    if not mask.any():
        raise CsvdnetInputError(image.path, "no brain found to register the MNI152 template to")
    initial = world_to_mni_from_mask(mask, affine)

    # Cropped to the grown brain: the pyramid smooths the whole moving image at every level.
    grown = _dilate_mm(mask, _MASK_MARGIN_MM, spacing)
    where = np.argwhere(grown)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop_affine = affine.copy()
    crop_affine[:3, 3] += affine[:3, :3] @ lo
    moving = _to_sitk(np.where(grown, data, 0)[box], crop_affine)
    fixed, fixed_mask, centre = _template()
    # ITK's transform maps fixed (MNI, LPS) points to moving (subject, LPS) points.
    mni_to_world = _LPS @ np.linalg.inv(initial) @ _LPS
    transform = sitk.AffineTransform(3)
    transform.SetCenter(centre.tolist())
    transform.SetMatrix(mni_to_world[:3, :3].ravel().tolist())
    transform.SetTranslation((mni_to_world[:3, :3] @ centre + mni_to_world[:3, 3]
                              - centre).tolist())

    reg = sitk.ImageRegistrationMethod()
    # One thread, one work unit: split over several, ITK sums the metric's per-unit parts in
    # whatever order the threads finish, and the affine (so the region map, the regions of the
    # findings and the Fazekas features) changed from run to run in the 4th decimal. One unit
    # gives the same bytes every run, as csvdnet predict (local or on Beam) promises; the
    # registration is under a second of CPU (2.1 s wall measured at load 6-7 on 2 cores).
    reg.SetNumberOfThreads(1)
    reg.SetNumberOfWorkUnits(1)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    brain_voxels = float(np.count_nonzero(load_atlas(2).brain))
    reg.SetMetricSamplingPercentagePerLevel(
        [min(1.0, _SAMPLES * f ** 3 / brain_voxels) for f in _LEVELS["shrink"]], _SEED)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(**_OPTIMIZER)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(_LEVELS["shrink"])
    reg.SetSmoothingSigmasPerLevel(_LEVELS["smoothing_mm"])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(transform, inPlace=True)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise CsvdnetInputError(image.path, f"MNI152 template registration failed ({reason})") \
            from None
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    result = np.eye(4)
    result[:3, :3] = matrix
    result[:3, 3] = np.array(transform.GetTranslation()) + centre - matrix @ centre
    return np.linalg.inv(_LPS @ result @ _LPS)


def subject_regions(reference_shape: Sequence[int], reference_affine: np.ndarray,
                    world_to_mni: np.ndarray) -> np.ndarray:
    """The region map on the subject's reference grid.

    Args:
        reference_shape: Shape of the reference grid (its first three axes are used).
        reference_affine: Its 4x4 voxel -> world affine.
        world_to_mni: 4x4 world -> MNI mm (:func:`template_to_subject`).

    Returns:
        uint8 region codes (:data:`csvdnet.atlas.REGION_CODES`) on the reference grid.
    """
    shape = tuple(int(n) for n in tuple(reference_shape)[:3])
    return regions_in_subject(shape, reference_affine, world_to_mni, resolution_mm=2)


def region_and_side(world_points: np.ndarray, regions: np.ndarray, affine: np.ndarray,
                    world_to_mni: np.ndarray) -> tuple[list[str], list[str]]:
    """Region name and side of each point.

    Args:
        world_points: (N, 3) world mm (scanner RAS) of the reference frame.
        regions: Region map on the reference grid (:func:`subject_regions`).
        affine: The reference grid's voxel -> world affine.
        world_to_mni: 4x4 world -> MNI mm.

    Returns:
        (region names, one of :data:`csvdnet.atlas.REGION_NAMES` per point, ``"background"``
        outside the grid; sides ``"L"`` / ``"R"`` / ``"M"`` from the MNI x coordinate).
    """
    world = np.asarray(world_points, dtype=np.float64).reshape(-1, 3)
    if len(world) == 0:
        return [], []
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    voxels = np.rint(world @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
    inside = np.all((voxels >= 0) & (voxels < np.asarray(regions.shape[:3])), axis=1)
    codes = np.zeros(len(world), dtype=int)
    codes[inside] = regions[tuple(voxels[inside].T)]
    mni = np.asarray(world_to_mni, dtype=np.float64)
    mni_x = world @ mni[0, :3] + mni[0, 3]
    sides = np.where(np.abs(mni_x) < MIDLINE_MM, "M", np.where(mni_x < 0, "L", "R"))
    return [REGION_NAMES[int(c)] for c in codes], sides.tolist()
