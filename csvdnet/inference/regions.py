"""The region atlas on a subject: where each finding lies (ventricles, basal ganglia, lobar, ...).

Where a subject's region map comes from
---------------------------------------
The region atlas is the one :mod:`csvdnet.atlas` derives from the MNI152 2009a template (nilearn,
offline; the same atlas the synthetic cohort samples). :func:`place_regions` (what predict
uses) brings it to the subject's own anatomy in two registrations of the template to one of the
subject's images (T1 best, else FLAIR), then samples the 1 mm region atlas through both onto the
reference grid by nearest neighbour:

1. **Subject copy**: the image resampled (linearly) to voxels of at least 2 mm along its own
   axes, over its field of view: every later step runs on ~1 M voxels whatever the input.
2. **Brain mask** (given, else :func:`csvdnet.preprocessing.auto_brain_mask` of that copy).
   The auto mask needs voxels of ~2 mm or finer to cut the brain from the scalp: on a 4 mm
   image it keeps scalp, the start below is then too large and the registration fails (tiny
   synthetic T1s: mean region Dice 0.33-0.50); pass a brain mask for such images.
3. **Initial affine** by moments: :func:`csvdnet.atlas.world_to_mni_from_mask` matches the brain
   mask's centroid and per-axis spread to the template brain's (translation + scaling).
4. **Affine registration** (:func:`template_to_subject`; SimpleITK, 12 dof): the template T1 at
   2 mm, cropped to its brain grown by 4 mm, is the fixed image and that grown brain the metric
   mask (the brain's outer edge counts); the subject copy cropped to its brain mask grown by
   4 mm, zero outside it (a skull-stripped template would otherwise be pulled towards the
   scalp), is the moving image. Mattes mutual information (32 bins: works for T1 and FLAIR
   alike), 6,000 random samples per level with a fixed seed, two levels (template shrunk 2x and
   1x, Gaussian smoothing 2 and 1 mm), regular-step gradient descent with scales from physical
   shift. About 0.8-1.3 CPU s.
5. **Deformable registration** (:mod:`csvdnet.inference.region_warp`): the template synthesised
   in the subject's contrast from its tissue maps (per-tissue intensities and a smooth bias
   field fitted on the subject), then demons at 4 and 2 mm give a smooth displacement field;
   the 1 mm region atlas is sampled through it and the affine onto the reference grid.
6. **Ventricles redrawn** from the image (:mod:`csvdnet.inference.ventricles`): within 3 mm of
   the registered ventricles, CSF-like voxels connected to them.

The affine alone (:func:`template_to_subject` + :func:`subject_regions`, 2 mm atlas) is kept
for callers that need only a world -> MNI matrix; sides always use the affine.

Accuracy (``benchmarks/bench_regions.py``, RESULTS.md "Subject-specific regions"): synthetic
subjects' true region maps come from the 1 mm atlas through a smooth non-linear warp (pose and
size, a low-order displacement of 2.5 mm rms, ventricles enlarged up to 1.6x). On 12 unseen
subjects per profile, from the T1, median region Dice of the affine map (demo / clinical):
ventricles 0.77 / 0.77, basal ganglia 0.78 / 0.81, thalamus 0.83 / 0.86, periventricular
0.83 / 0.82, deep WM 0.71 / 0.71; of :func:`place_regions`: 0.91 / 0.92, 0.91 / 0.91,
0.91 / 0.94, 0.92 / 0.92, 0.87 / 0.86, and 0.89-0.97 for centrum semiovale, juxtacortical and
infratentorial. From the FLAIR (no T1) 0.79-0.97 (deep WM lowest). Through the exact warp the
2 mm atlas itself caps the ventricles and basal ganglia near 0.87 (one demo subject), hence the
1 mm atlas. Cost: 3.4-3.9 CPU s per subject with a given brain mask, of which the affine ~0.8
(3.2 s wall on 2 busy cores in the benchmark, which also computes an auto mask). What is
left: the largest ventricle enlargements are under-followed near the thalamus (the demons'
smoothing; mean mapping error there 2-2.6 mm against 0.8 mm over the brain). On a real brain
the borders are as good as its contrast with the template's tissue maps allows.

Sides are taken in MNI space, as the synthetic cohort does: MNI x < 0 is left, and a point
within :data:`MIDLINE_MM` of the midline is ``"M"``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from csvdnet.atlas import REGION_NAMES, load_atlas, regions_in_subject, world_to_mni_from_mask
from csvdnet.errors import CsvdnetInputError
from csvdnet.inference.itk_grid import LPS, coarse_copy, dilate_mm, to_sitk, voxel_sizes
from csvdnet.io import Image

__all__ = ["MIDLINE_MM", "place_regions", "region_and_side", "subject_regions",
           "template_to_subject"]

MIDLINE_MM = 2.0
"""Points closer than this to the MNI midline (|x| < 2 mm) have side ``"M"`` (synth's rule)."""

_MASK_MARGIN_MM = 4.0  # brain masks are grown by this much before they bound the metric
_SAMPLES = 6_000  # metric samples per level: enough for 12 parameters, cheap
_SEED = 20140101
_LEVELS = dict(shrink=[2, 1], smoothing_mm=[2.0, 1.0])
_OPTIMIZER = dict(learningRate=2.0, minStep=0.02, numberOfIterations=60,
                  relaxationFactor=0.6, gradientMagnitudeTolerance=1e-5)


@functools.lru_cache(maxsize=1)
def _template() -> tuple[Any, Any, np.ndarray]:
    """The fixed image (template T1 cropped to its brain grown by a margin), its metric mask
    and the template brain's centre (LPS mm), built once per process."""
    import SimpleITK as sitk

    atlas = load_atlas(2)
    spacing = voxel_sizes(atlas.affine)
    grown = dilate_mm(atlas.brain, _MASK_MARGIN_MM, spacing)
    where = np.argwhere(grown)
    # Two voxels beyond the mask keep the smoothing at the finest level off the crop's edge.
    lo = np.maximum(where.min(axis=0) - 2, 0)
    hi = np.minimum(where.max(axis=0) + 3, atlas.brain.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    affine = atlas.affine.copy()
    affine[:3, 3] += atlas.affine[:3, :3] @ lo
    fixed = to_sitk(atlas.t1[box], affine)
    fixed_mask = sitk.Cast(to_sitk(grown[box].astype(np.float32), affine) > 0.5, sitk.sitkUInt8)
    centre = atlas.affine[:3, :3] @ np.argwhere(atlas.brain).mean(axis=0) + atlas.affine[:3, 3]
    return fixed, fixed_mask, (LPS[:3, :3] @ centre)


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
    data, affine, mask = _subject_copy(image, brain_mask)
    return _register_affine(data, affine, mask, image.path)


def _subject_copy(image: Image,
                  brain_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image's coarse copy, its affine and the brain mask on it (steps 1-2)."""
    from csvdnet.preprocessing import auto_brain_mask

    data, affine = coarse_copy(image.data, image.affine)
    if brain_mask is None:
        mask = auto_brain_mask([data], voxel_sizes(affine))
    else:
        mask = coarse_copy((np.asarray(brain_mask) > 0).astype(np.float32), image.affine)[0] > 0.5
    if not mask.any():
        raise CsvdnetInputError(image.path, "no brain found to register the MNI152 template to")
    return data, affine, mask


def _register_affine(data: np.ndarray, affine: np.ndarray, mask: np.ndarray,
                     path: Any) -> np.ndarray:
    """Steps 3-4 on the coarse copy: world -> MNI affine."""
    import SimpleITK as sitk

    spacing = voxel_sizes(affine)
    initial = world_to_mni_from_mask(mask, affine)

    # Cropped to the grown brain: the pyramid smooths the whole moving image at every level.
    grown = dilate_mm(mask, _MASK_MARGIN_MM, spacing)
    where = np.argwhere(grown)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop_affine = affine.copy()
    crop_affine[:3, 3] += affine[:3, :3] @ lo
    moving = to_sitk(np.where(grown, data, 0)[box], crop_affine)
    fixed, fixed_mask, centre = _template()
    # ITK's transform maps fixed (MNI, LPS) points to moving (subject, LPS) points.
    mni_to_world = LPS @ np.linalg.inv(initial) @ LPS
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
        raise CsvdnetInputError(path, f"MNI152 template registration failed ({reason})") \
            from None
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    result = np.eye(4)
    result[:3, :3] = matrix
    result[:3, 3] = np.array(transform.GetTranslation()) + centre - matrix @ centre
    return np.linalg.inv(LPS @ result @ LPS)


def place_regions(image: Image, brain_mask: np.ndarray | None,
                  reference_shape: Sequence[int], reference_affine: np.ndarray,
                  reference_to_image_world: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The region map of this subject's anatomy on its reference grid.

    The template is registered to ``image`` by an affine (:func:`template_to_subject`), then
    deformably (:func:`csvdnet.inference.region_warp.fit_template_warp`); the 1 mm region atlas
    is sampled through both onto the reference grid and its ventricles are redrawn along the
    image's CSF (:func:`csvdnet.inference.ventricles.refine_ventricles`; module docstring).
    The same bytes every run, whatever SimpleITK's thread count.

    Args:
        image: The subject's T1 (best) or FLAIR.
        brain_mask: Brain mask on ``image``'s grid (non-zero = brain); computed when ``None``.
        reference_shape: Shape of the reference grid (first three axes used).
        reference_affine: Its 4x4 voxel -> world affine.
        reference_to_image_world: 4x4 map from the reference world to ``image``'s world (the
            sequences' co-registration); identity when ``None``.

    Returns:
        (uint8 region codes on the reference grid, 4x4 reference world -> MNI affine: the
        affine part, which :func:`region_and_side` uses for sides).

    Raises:
        CsvdnetInputError: No brain found in the image, or the registration failed.
    """
    from csvdnet.inference.region_warp import fit_template_warp
    from csvdnet.inference.ventricles import refine_ventricles

    to_image = np.eye(4) if reference_to_image_world is None else np.asarray(
        reference_to_image_world, dtype=np.float64)
    data, affine, mask = _subject_copy(image, brain_mask)
    world_to_mni = _register_affine(data, affine, mask, image.path)
    warp = fit_template_warp(data, affine, mask, world_to_mni)
    regions = refine_ventricles(warp.regions(reference_shape, reference_affine, to_image),
                                reference_affine, image.data, image.affine, to_image, warp.bias,
                                warp.affine, warp.intensities)
    return regions, world_to_mni @ to_image


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
        regions: Region map on the reference grid (:func:`place_regions`).
        affine: The reference grid's voxel -> world affine.
        world_to_mni: 4x4 world -> MNI mm (the affine :func:`place_regions` returns).

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
