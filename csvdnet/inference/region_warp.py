"""Deformable registration of the MNI152 template to a subject, after the affine one.

An affine cannot put the basal ganglia, the ventricles or the periventricular band where they
are in a brain that differs from MNI152 non-linearly (the synthetic anatomy is warped that way,
and so are real brains). :func:`fit_template_warp` refines the affine
(:func:`csvdnet.inference.regions.template_to_subject`) with a smooth displacement field, and
:meth:`TemplateWarp.regions` samples the 1 mm region atlas through both onto any grid.

Method, on the subject's 2 mm copy cropped to its brain mask grown by :data:`MARGIN_MM`:

1. **The template in the subject's contrast.** The template's tissue maps (cortical GM, deep GM
   = GM of the basal ganglia and thalamus, WM, the rest = CSF and what lies outside the brain)
   are sampled through the affine; the subject's intensity is fitted over the grown brain as
   their mix with one mean intensity per tissue times a smooth multiplicative bias (exp of a
   2nd-degree polynomial; least squares, alternated :data:`BIAS_ROUNDS` times). Works for any
   contrast (T1, FLAIR, ...). Both images hold the synthetic "rest" intensity outside the
   grown brain, so nothing there pulls.
2. **Demons** (SimpleITK fast symmetric forces) between the bias-corrected subject (fixed) and
   the synthesised template (moving), first at 4 mm then at 2 mm (:data:`LEVELS`), a fixed
   number of iterations (no early stop: the result must not hinge on a float sum), the field
   smoothed every iteration so that it stays smooth (a Gaussian of sigma 8 mm, 20 times, then
   of 6 mm, 7 times). Measured on hard synthetic subjects (large ventricles, confluent WMH):
   less smoothing, a fluid-like update smoothing, an 8 mm level first or 40-100 iterations at
   4 mm changed the region Dice by 0.00-0.02 or lowered it; 20 iterations at 2 mm instead of 10
   add ~0.01 to the white matter regions for ~0.7 CPU s. In step 1, the deep GM class adds
   0.02-0.05 to the ventricles and nuclei, the bias field 0.01-0.05 (nuclei and deep WM most).
   A SimpleITK B-spline registration instead (20-30 mm control grid, mean squares, L-BFGS-B)
   took 40-75 CPU s per subject and followed the anatomy worse.

Accuracy and cost are measured by ``benchmarks/bench_regions.py`` (RESULTS.md, "Subject-specific
regions"). The displacement is per voxel and every ITK step used is a per-voxel computation, so
the result is the same bytes whatever the number of threads.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Sequence

import numpy as np

from csvdnet.atlas import REGION_CODES, load_atlas
from csvdnet.inference.itk_grid import LPS, dilate_mm, sitk_affine, to_sitk, voxel_sizes

__all__ = ["BIAS_DEGREE", "BIAS_ROUNDS", "LEVELS", "MARGIN_MM", "TemplateWarp",
           "fit_template_warp", "synthesise_template"]

MARGIN_MM = 4.0
"""The brain mask grown by this much bounds the images the demons compare."""

BIAS_ROUNDS = 3
"""Alternations of the tissue-intensity fit and the bias-field fit."""

BIAS_DEGREE = 2
"""Degree of the polynomial whose exponential is the bias field."""

LEVELS: tuple[tuple[int, int, float], ...] = ((2, 20, 2.0), (1, 7, 3.0))
"""Demons levels: (shrink factor of the 2 mm copy, iterations, field smoothing in voxels). The
2 mm level is most of the time: 7 iterations instead of 10 made ``place_regions`` 13 % faster
(median of 4 clinical subjects, same process) for region Dice changes of -0.006 to +0.001
(12 subjects of demo seed 51 and clinical seed 52; RESULTS.md)."""

_DEEP_GM = (REGION_CODES["basal_ganglia"], REGION_CODES["thalamus"])
_PRESMOOTH_MM = 1.0  # Gaussian sigma per shrink step before the images are shrunk


@dataclasses.dataclass(frozen=True, eq=False)
class TemplateWarp:
    """A subject image's world -> MNI mapping: a displacement field, then an affine.

    ``mni(p) = world_to_mni (p + u(p))`` for a point ``p`` of the image's world (scanner RAS
    mm); ``u`` is zero outside the field's grid.

    Attributes:
        world_to_mni: 4x4 image world -> MNI mm (the affine registration).
        displacement: float64 (3, I, J, K) displacement ``u`` in RAS mm.
        affine: The field grid's voxel -> world (RAS) affine.
        bias: float32 (I, J, K) multiplicative bias field of the image on the field's grid (1
            where it was not fitted); ``None`` when unknown.
        intensities: The image's fitted mean intensities of cortical GM, deep GM, WM and the
            rest (CSF); ``None`` when unknown.
    """

    world_to_mni: np.ndarray
    displacement: np.ndarray
    affine: np.ndarray
    bias: np.ndarray | None = None
    intensities: tuple[float, float, float, float] | None = None

    def mni(self, world_points: np.ndarray) -> np.ndarray:
        """(N, 3) image-world mm -> (N, 3) MNI mm."""
        from scipy import ndimage

        world = np.asarray(world_points, dtype=np.float64).reshape(-1, 3)
        inverse = np.linalg.inv(self.affine)
        voxels = (world @ inverse[:3, :3].T + inverse[:3, 3]).T
        moved = world + np.stack([ndimage.map_coordinates(
            component, voxels, order=1, mode="constant", cval=0.0)
            for component in self.displacement], axis=1)
        return moved @ self.world_to_mni[:3, :3].T + self.world_to_mni[:3, 3]

    def regions(self, shape: Sequence[int], affine: np.ndarray,
                reference_to_image_world: np.ndarray | None = None) -> np.ndarray:
        """The 1 mm region atlas sampled (nearest neighbour) onto a grid through the warp.

        Args:
            shape: The grid's shape (first three axes used).
            affine: Its voxel -> world affine.
            reference_to_image_world: 4x4 map from the grid's world to the image's world (the
                co-registration of two sequences); identity when ``None``.

        Returns:
            uint8 region codes (:data:`csvdnet.atlas.REGION_CODES`) of ``shape``.
        """
        import SimpleITK as sitk

        to_image = np.eye(4) if reference_to_image_world is None else np.asarray(
            reference_to_image_world, dtype=np.float64)
        field = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(
            self.displacement * np.array([-1.0, -1.0, 1.0])[:, None, None, None], 0, -1)
            .transpose(2, 1, 0, 3)), isVector=True)
        lps_field = LPS @ self.affine
        sizes = voxel_sizes(lps_field)
        field.SetSpacing(sizes.tolist())
        field.SetOrigin(lps_field[:3, 3].tolist())
        field.SetDirection((lps_field[:3, :3] / sizes).ravel().tolist())
        # ITK applies a composite's transforms last first: reference -> image world,
        # displacement, image world -> MNI (all in LPS).
        transform = sitk.CompositeTransform([_affine_transform(LPS @ self.world_to_mni @ LPS),
                                             sitk.DisplacementFieldTransform(field),
                                             _affine_transform(LPS @ to_image @ LPS)])
        reference = to_sitk(np.zeros(tuple(int(n) for n in tuple(shape)[:3]), np.uint8),
                            affine, dtype=np.uint8)
        out = sitk.Resample(_atlas_regions(), reference, transform, sitk.sitkNearestNeighbor,
                            0, sitk.sitkUInt8)
        return sitk.GetArrayFromImage(out).T.copy()


def _affine_transform(matrix: np.ndarray):
    import SimpleITK as sitk

    out = sitk.AffineTransform(3)
    out.SetMatrix(matrix[:3, :3].ravel().tolist())
    out.SetTranslation(matrix[:3, 3].tolist())
    return out


@functools.lru_cache(maxsize=1)
def _atlas_regions() -> Any:
    """The 1 mm region atlas as a SimpleITK image (the synthetic cohorts' truth is sampled from
    it; the 2 mm map alone caps the ventricle and basal ganglia Dice near 0.87 even through the
    exact warp: measured)."""
    atlas = load_atlas(1)
    return to_sitk(atlas.regions, atlas.affine, dtype=np.uint8)


@functools.lru_cache(maxsize=1)
def _tissue_maps() -> tuple[np.ndarray, np.ndarray]:
    """(4, ...) cortical GM, deep GM, WM and the rest on the 2 mm atlas grid, and its affine."""
    atlas = load_atlas(2)
    deep = np.isin(atlas.regions, _DEEP_GM)
    maps = np.stack([np.where(deep, 0, atlas.gm), np.where(deep, atlas.gm, 0), atlas.wm,
                     1 - atlas.gm - atlas.wm]).astype(np.float32)
    maps.flags.writeable = False
    return maps, atlas.affine


def synthesise_template(data: np.ndarray, affine: np.ndarray, fit_mask: np.ndarray,
                        world_to_mni: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """The template in a subject image's contrast, the image's bias field and tissue means.

    Args:
        data: The subject image (any contrast).
        affine: Its voxel -> world affine.
        fit_mask: Voxels the fit uses (the brain, grown a little).
        world_to_mni: 4x4 world -> MNI (the affine registration).

    Returns:
        (synthetic template on ``data``'s grid, multiplicative bias of ``data`` (1 outside
        ``fit_mask``), both float32; mean intensities of cortical GM, deep GM, WM, the rest).
    """
    from scipy import ndimage

    maps, atlas_affine = _tissue_maps()
    voxel_to_atlas = np.linalg.inv(atlas_affine) @ np.asarray(world_to_mni) @ affine
    tissues = np.stack([ndimage.affine_transform(
        m, voxel_to_atlas[:3, :3], voxel_to_atlas[:3, 3], output_shape=data.shape, order=1,
        mode="constant", cval=float(m.flat[0])) for m in maps])
    # The fit on every second voxel along each axis: ~1/8 of the cost, the same means.
    sample = np.zeros_like(fit_mask, dtype=bool)
    sample[::2, ::2, ::2] = fit_mask[::2, ::2, ::2]
    design = tissues[:, sample].T.astype(np.float64)
    observed = data[sample].astype(np.float64)
    polynomial = _bias_terms(sample, data.shape)
    beta = np.zeros(polynomial.shape[1])
    for round_ in range(BIAS_ROUNDS + 1):
        gain = np.exp(polynomial @ beta)
        means = np.linalg.lstsq(design * gain[:, None], observed, rcond=None)[0]
        if round_ == BIAS_ROUNDS:
            break
        predicted = design @ means
        # Tissue voxels only: the ratio is noise where the predicted signal is small.
        usable = (predicted > 0.5 * np.abs(means).max()) & (observed > 0)
        if np.count_nonzero(usable) <= polynomial.shape[1]:
            break
        beta = np.linalg.lstsq(polynomial[usable], np.log(observed[usable] / predicted[usable]),
                               rcond=None)[0]
    synthetic = np.tensordot(means.astype(np.float32), tissues, axes=1)
    bias = np.ones(data.shape, dtype=np.float32)
    bias[fit_mask] = np.exp(_bias_terms(fit_mask, data.shape) @ beta)
    return synthetic, bias, tuple(float(m) for m in means)


def _bias_terms(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Monomials up to :data:`BIAS_DEGREE` of the voxel coordinates (scaled to [-1, 1] over the
    grid) of the ``mask`` voxels: (voxels, terms)."""
    u = (np.argwhere(mask) / np.maximum(np.array(shape) - 1, 1) * 2 - 1).T
    return np.stack([np.prod(u[list(axes)], axis=0) for degree in range(BIAS_DEGREE + 1)
                     for axes in itertools.combinations_with_replacement(range(3), degree)],
                    axis=1)


def fit_template_warp(data: np.ndarray, affine: np.ndarray, brain: np.ndarray,
                      world_to_mni: np.ndarray) -> TemplateWarp:
    """The displacement that carries the affinely registered template onto the subject.

    Args:
        data: The subject image's coarse copy (:func:`csvdnet.inference.itk_grid.coarse_copy`).
        affine: Its voxel -> world affine.
        brain: Non-empty brain mask on that grid.
        world_to_mni: 4x4 image world -> MNI (the affine registration).

    Returns:
        The warp (displacement on the crop of the grid around the grown brain).
    """
    import SimpleITK as sitk

    spacing = voxel_sizes(affine)
    grown = dilate_mm(np.asarray(brain, dtype=bool), MARGIN_MM, spacing)
    where = np.argwhere(grown)
    lo = np.maximum(where.min(axis=0) - 2, 0)
    hi = np.minimum(where.max(axis=0) + 3, grown.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop_affine = np.asarray(affine, dtype=np.float64).copy()
    crop_affine[:3, 3] += crop_affine[:3, :3] @ lo
    image, grown = np.asarray(data[box], dtype=np.float32), grown[box]
    synthetic, bias, intensities = synthesise_template(image, crop_affine, grown, world_to_mni)
    rest = float(np.median(synthetic[~grown])) if (~grown).any() else 0.0
    fixed = to_sitk(np.where(grown, image / bias, rest), crop_affine)
    moving = to_sitk(np.where(grown, synthetic, rest), crop_affine)

    field = None
    for shrink, iterations, smoothing in LEVELS:
        level_fixed, level_moving = fixed, moving
        if shrink > 1:
            level_fixed, level_moving = (
                sitk.Shrink(sitk.SmoothingRecursiveGaussian(i, _PRESMOOTH_MM * shrink),
                            [shrink] * 3) for i in (fixed, moving))
        demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfIterations(iterations)
        demons.SetStandardDeviations(smoothing)
        demons.SetMaximumRMSError(0.0)  # never stop early: a fixed amount of work
        if field is None:
            field = demons.Execute(level_fixed, level_moving)
        else:
            field = demons.Execute(level_fixed, level_moving, sitk.Resample(
                field, level_fixed, sitk.Transform(), sitk.sitkLinear, 0.0,
                sitk.sitkVectorFloat64))
    field = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear, 0.0,
                          sitk.sitkVectorFloat64)
    # (K, J, I, 3) LPS -> (3, I, J, K) RAS.
    displacement = np.moveaxis(sitk.GetArrayFromImage(field), -1, 0).transpose(0, 3, 2, 1)
    displacement = displacement * np.array([-1.0, -1.0, 1.0])[:, None, None, None]
    return TemplateWarp(world_to_mni=np.asarray(world_to_mni, dtype=np.float64),
                        displacement=np.ascontiguousarray(displacement),
                        affine=sitk_affine(fixed), bias=bias, intensities=intensities)
