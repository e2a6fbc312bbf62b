"""MNI152 anatomy and the region atlas derived from it: the one source of brain regions.

Where it comes from
-------------------
nilearn ships the MNI152 2009a (ICBM 2009a nonlinear symmetric) T1 template with its grey matter
(GM) and white matter (WM) probability maps inside the installed package, so
``nilearn.datasets.load_mni152_template`` / ``load_mni152_gm_template`` /
``load_mni152_wm_template`` work offline at 1 or 2 mm (no other nilearn fetcher is used: they
need the network). The brain mask is ``load_mni152_brain_mask``'s rule (template > 0.2) with
its holes filled; CSF = brain - GM - WM.

The region map is derived here from those tissue maps plus coordinate priors in MNI space (mm):

=====  ======================  ==================================================================
code   name                    definition (first rule that matches wins, in this order)
=====  ======================  ==================================================================
0      ``background``          outside the brain mask
1      ``ventricles``          CSF-dominant voxels of the connected component(s) holding the
                               lateral ventricles (seeds in both frontal horns and both bodies,
                               search box |x| <= 40, -55 <= y <= 40, -30 <= z <= 40): lateral
                               ventricles, and the third ventricle where it connects
9      ``csf``                 every other CSF-dominant voxel (sulci, cisterns, fourth ventricle)
8      ``infratentorial``      brainstem (|x| < 16, -48 < y < -12, z < -8) and cerebellum (y < -38
                               below a tent-shaped tentorium surface, see :func:`_tentorium_z`)
2      ``basal_ganglia``       caudate, putamen, nucleus accumbens (GM >= 0.3) and globus pallidus
                               (any tissue: it is WM-like on T1) inside ellipsoids at their
                               MNI centroids (:data:`_BASAL_GANGLIA_ELLIPSOIDS`)
3      ``thalamus``            GM >= 0.3 inside the thalamus ellipsoids
7      ``juxtacortical``       lobar: cortex = every other GM-dominant voxel (incl. hippocampus)
                               except within 3 mm of the nuclei ellipsoids (striatal bridges,
                               claustrum: they fall through to the WM rules below)
5      ``periventricular``     tissue within :data:`PERIVENTRICULAR_MM` (10 mm) of the ventricles
                               (the Fazekas periventricular convention)
7      ``juxtacortical``       lobar: WM within :data:`JUXTACORTICAL_MM` (3 mm) of the cortex
4      ``centrum_semiovale``   remaining WM above the roof of the lateral ventricles
6      ``deep_wm``             remaining WM (internal / external capsule, deep temporal and
                               occipital WM, WM beside the ventricles beyond the band)
=====  ======================  ==================================================================

Left and right are not coded: MNI x < 0 is the left hemisphere (the template is symmetric, so
every region is bilateral). "Tissue" is a brain voxel that is not CSF-dominant. What the
scoring rules need: PV vs deep WMH (5 vs 4/6/7), basal ganglia vs centrum semiovale EPVS (2 vs
4), lobar vs deep vs infratentorial CMB (7 vs 2/3/4/5/6 vs 8); see :data:`LOBAR_REGIONS`,
:data:`DEEP_REGIONS`.

A subject gets the map through a world -> MNI mapping: :func:`regions_in_subject` takes a 4x4
matrix (e.g. from :func:`world_to_mni_from_mask`, or from a registration); the synthetic cohort
samples the same atlas through its own non-linear warp with :meth:`Atlas.sample`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from scipy import ndimage

from csvdnet.diskcache import cached_arrays

__all__ = [
    "Atlas",
    "DEEP_REGIONS",
    "JUXTACORTICAL_MM",
    "LOBAR_REGIONS",
    "PERIVENTRICULAR_MM",
    "REGION_CODES",
    "REGION_NAMES",
    "load_atlas",
    "regions_in_subject",
    "world_to_mni_from_mask",
]

REGION_CODES: dict[str, int] = {
    "background": 0,
    "ventricles": 1,
    "basal_ganglia": 2,
    "thalamus": 3,
    "centrum_semiovale": 4,
    "periventricular": 5,
    "deep_wm": 6,
    "juxtacortical": 7,
    "infratentorial": 8,
    "csf": 9,
}
"""Region name -> integer code in every region map (atlas and ``labels/regions.nii.gz``)."""

REGION_NAMES: dict[int, str] = {code: name for name, code in REGION_CODES.items()}
"""Integer code -> region name."""

LOBAR_REGIONS = (REGION_CODES["juxtacortical"],)
"""Cortex and juxtacortical WM: 'lobar' microbleeds (CAA pattern)."""

DEEP_REGIONS = tuple(REGION_CODES[name] for name in (
    "basal_ganglia", "thalamus", "centrum_semiovale", "periventricular", "deep_wm"))
"""Deep grey nuclei and deep / periventricular WM: 'deep' microbleeds (hypertensive pattern)."""

PERIVENTRICULAR_MM = 10.0
"""Width of the periventricular band: WMH within it are periventricular (Fazekas)."""

JUXTACORTICAL_MM = 3.0
"""WM this close to the cortex is juxtacortical (lobar): the U-fibre layer under the blurry
template cortex (5 mm would leave almost no centrum semiovale)."""

# Lateral ventricle seeds (MNI mm): both frontal horns and both bodies / atria.
_VENTRICLE_SEEDS = ((-5, 12, 14), (5, 12, 14), (-20, -30, 18), (20, -30, 18))
_VENTRICLE_BOX = ((-40, 40), (-55, 40), (-30, 40))
# (centre |x|, y, z), semi-axes (mm), needs GM >= 0.3; mirrored to both hemispheres.
_BASAL_GANGLIA_ELLIPSOIDS = (
    ((12.0, 14.0, 6.0), (7.0, 10.0, 12.0), True),    # caudate head
    ((13.0, 0.0, 12.0), (6.0, 10.0, 9.0), True),     # caudate, head to body
    ((16.0, -14.0, 20.0), (5.0, 12.0, 6.0), True),   # caudate body
    ((25.0, 2.0, 2.0), (7.0, 18.0, 13.0), True),     # putamen
    ((10.0, 12.0, -7.0), (5.0, 5.0, 4.0), True),     # nucleus accumbens
    ((19.0, -3.0, -1.0), (5.0, 8.0, 6.0), False),    # globus pallidus
)
_THALAMUS_ELLIPSOID = ((11.0, -18.0, 7.0), (10.0, 17.0, 11.0))
# GM this close outside the nuclei ellipsoids (striatal cell bridges, claustrum, blurred
# nucleus borders) is not cortex (it falls through to the WM rules): as cortex it would make
# its deep neighbours juxtacortical.
_DEEP_GM_MARGIN_MM = 3.0
_DEEP_GM_MIN = 0.3
_BRAIN_THRESHOLD = 0.2
# Ventricle distances past this are irrelevant (WMH extend at most ~25 mm from the ventricles);
# capping keeps the exact distance transform cropped to the centre of the brain.
_DISTANCE_CAP_MM = 30.0


@dataclasses.dataclass(frozen=True, eq=False)
class Atlas:
    """MNI152 2009a tissue maps and the derived region map, on one MNI grid.

    All arrays are read-only (the atlas is cached and shared), indexed (i, j, k) along
    MNI x, y, z (RAS).

    Attributes:
        resolution_mm: Voxel size (1 or 2 mm).
        affine: 4x4 voxel -> MNI mm.
        t1: T1 template intensity, 0..1.
        gm: Grey matter probability.
        wm: White matter probability.
        csf: CSF fraction = brain - GM - WM.
        brain: Brain mask (template > 0.2, holes filled).
        regions: uint8 region map, codes in :data:`REGION_CODES`.
        ventricle_distance: Distance (mm) to the nearest ventricle voxel, 0 inside, capped.
        surface_distance: Signed distance (mm) to the brain surface, negative inside
            (chamfer approximation, within ~15 % of Euclidean).
    """

    resolution_mm: int
    affine: np.ndarray
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    regions: np.ndarray
    ventricle_distance: np.ndarray
    surface_distance: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size in voxels."""
        return tuple(int(n) for n in self.regions.shape)

    def mni_to_voxel(self, mni: np.ndarray) -> np.ndarray:
        """MNI mm coordinates, channel-first ``(3, ...)``, to atlas voxel indices (same layout)."""
        mni = np.asarray(mni)
        dtype = mni.dtype if mni.dtype.kind == "f" else np.float64
        inverse = np.linalg.inv(self.affine).astype(dtype)
        voxels = np.tensordot(inverse[:3, :3], mni.astype(dtype, copy=False), axes=1)
        voxels += inverse[:3, 3].reshape((3,) + (1,) * (mni.ndim - 1))
        return voxels

    def sample(self, volumes: str | Sequence[str], mni: np.ndarray, order: int = 1,
               cval: float | None = None) -> np.ndarray | list[np.ndarray]:
        """Sample atlas volumes at MNI coordinates.

        Args:
            volumes: Attribute name (``"gm"``, ``"regions"``, ...), or several (the coordinate
                conversion is then shared).
            mni: MNI mm coordinates, channel-first ``(3, *shape)`` (so a point list is ``p.T``).
            order: 0 nearest neighbour (labels), 1 trilinear.
            cval: Value outside the atlas grid; defaults to each volume's value at the grid
                corner, far from the brain (0, or what the distance maps hold there).

        Returns:
            Array(s) of ``shape``: the volume's dtype for order 0, float32 otherwise; a list
            when ``volumes`` is a sequence.
        """
        voxels = self.mni_to_voxel(mni)
        names = [volumes] if isinstance(volumes, str) else list(volumes)
        sampled = []
        for name in names:
            data = getattr(self, name)
            sampled.append(ndimage.map_coordinates(
                data, voxels, order=order, mode="constant", prefilter=False,
                cval=float(data.flat[0]) if cval is None else cval,
                output=data.dtype if order == 0 else np.float32))
        return sampled[0] if isinstance(volumes, str) else sampled


def _cache_name(resolution_mm: int) -> str:
    """The atlas's cache file; its name changes with this module's code and nilearn's version,
    so a cache made by other rules is never read."""
    import nilearn

    key = hashlib.sha256(Path(__file__).read_bytes() + nilearn.__version__.encode())
    return f"mni152-atlas-{resolution_mm}mm-{key.hexdigest()[:16]}.npz"


@functools.lru_cache(maxsize=2)
def load_atlas(resolution_mm: Literal[1, 2] = 2) -> Atlas:
    """The MNI152 atlas at 1 or 2 mm: derived once, then read from the disk cache
    (:func:`csvdnet.diskcache.cache_dir`).

    Deriving it takes ~8 s at 2 mm and ~40 s at 1 mm on 2 cores (distance transforms, nilearn's
    resampling); every later process reads the cached arrays (a compressed ``.npz``, no pickle)
    in well under a second. The cache is best effort: an unreadable or unwritable cache folder
    only means deriving again.

    Args:
        resolution_mm: 1 or 2.

    Returns:
        The cached :class:`Atlas`.

    Raises:
        ValueError: Another resolution.
    """
    if resolution_mm not in (1, 2):
        raise ValueError(f"the MNI152 atlas exists at 1 or 2 mm, not {resolution_mm!r}")
    arrays = cached_arrays(_cache_name(int(resolution_mm)), ("affine",) + _ATLAS_ARRAYS,
                           lambda: _derive_atlas(int(resolution_mm)))
    affine = arrays.pop("affine")
    for array in arrays.values():
        array.flags.writeable = False
    affine.flags.writeable = False
    return Atlas(resolution_mm=int(resolution_mm), affine=affine, **arrays)


_ATLAS_ARRAYS = ("t1", "gm", "wm", "csf", "brain", "regions", "ventricle_distance",
                 "surface_distance")


def _derive_atlas(resolution_mm: int) -> dict[str, np.ndarray]:
    """The atlas's arrays and affine, derived from nilearn's MNI152 templates."""
    # Imported here: nilearn takes ~1.5 s to import and only the atlas needs it.
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=resolution_mm)
    affine = np.asarray(template.affine, dtype=np.float64)
    t1 = np.clip(template.get_fdata(dtype=np.float32), 0, 1)
    gm, wm = (np.clip(load(resolution=resolution_mm).get_fdata(dtype=np.float32), 0, 1)
              for load in (datasets.load_mni152_gm_template, datasets.load_mni152_wm_template))
    # nilearn's load_mni152_brain_mask rule (template > 0.2), applied to the template already
    # loaded: at 2 mm each nilearn loader re-resamples the 1 mm template (~1 s).
    brain = _fill_holes(t1 > _BRAIN_THRESHOLD)
    gm *= brain
    wm *= brain
    csf = np.clip(brain - gm - wm, 0, 1)

    regions, ventricle_distance = _derive_regions(gm, wm, csf, brain, affine, float(resolution_mm))
    # Voxel centres sit half a voxel from the surface between them.
    surface_distance = np.where(brain, resolution_mm / 2 - _chamfer_distance(brain, resolution_mm),
                                _chamfer_distance(~brain, resolution_mm) - resolution_mm / 2)
    arrays = dict(t1=t1, gm=gm, wm=wm, csf=csf, brain=brain, regions=regions,
                  ventricle_distance=ventricle_distance,
                  surface_distance=surface_distance.astype(np.float32))
    # nilearn hands out Fortran-ordered arrays; C order makes sampling twice as fast.
    return {"affine": affine, **{name: np.ascontiguousarray(array)
                                 for name, array in arrays.items()}}


def _mni_axes(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """MNI x, y, z of the voxel centres as broadcastable 1-D arrays (the grid is axis-aligned)."""
    return tuple((affine[axis, axis] * np.arange(n) + affine[axis, 3]).reshape(
        [-1 if a == axis else 1 for a in range(3)]).astype(np.float32)
        for axis, n in enumerate(shape))


def _capped_distance(outside: np.ndarray, spacing: float) -> np.ndarray:
    """Euclidean distance (mm) of every voxel to the nearest ``False`` voxel, capped.

    Computed inside the bounding box of the ``False`` voxels grown by the cap, which is all the
    cap lets matter, so that a small target (the ventricles) costs a small transform.
    """
    distance = np.full(outside.shape, _DISTANCE_CAP_MM, dtype=np.float32)
    target = np.argwhere(~outside)
    if target.size == 0:
        return distance
    margin = int(np.ceil(_DISTANCE_CAP_MM / spacing))
    lo = np.maximum(target.min(axis=0) - margin, 0)
    hi = np.minimum(target.max(axis=0) + margin + 1, outside.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    distance[box] = np.minimum(ndimage.distance_transform_edt(outside[box], sampling=spacing),
                               _DISTANCE_CAP_MM)
    return distance


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` plus every background pocket not connected to the grid border.

    Same result as ``ndimage.binary_fill_holes`` (6-connected background), 5x faster at 1 mm.
    """
    labels, _ = ndimage.label(~mask)
    faces = np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(),
                            labels[:, :, [0, -1]].ravel()])
    return ~np.isin(labels, np.unique(faces[faces > 0]))


def _chamfer_distance(outside: np.ndarray, spacing: float) -> np.ndarray:
    """Approximate distance (mm) to the nearest ``False`` voxel: the mean of the city-block and
    chessboard distances (within ~15 % of Euclidean, 15x faster than an exact transform at 1 mm;
    used for the brain surface, where it places skull layers of random thickness anyway)."""
    taxicab = ndimage.distance_transform_cdt(outside, metric="taxicab")
    chessboard = ndimage.distance_transform_cdt(outside, metric="chessboard")
    return ((taxicab + chessboard) * (spacing / 2)).astype(np.float32)


def _ball_dilation(mask: np.ndarray, radius_mm: float, spacing: float) -> np.ndarray:
    """Voxels within ``radius_mm`` (Euclidean, between centres) of ``mask``."""
    r = int(radius_mm // spacing)
    offsets = np.arange(-r, r + 1) * spacing
    ball = (offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2
            + offsets[None, None, :] ** 2) <= radius_mm ** 2
    return ndimage.binary_dilation(mask, structure=ball)


def _ellipsoid(x: np.ndarray, y: np.ndarray, z: np.ndarray, centre: tuple[float, float, float],
               axes: tuple[float, float, float]) -> np.ndarray:
    """Inside an axis-aligned ellipsoid mirrored to both hemispheres (centre x taken as |x|)."""
    return (((np.abs(x) - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
            + ((z - centre[2]) / axes[2]) ** 2) <= 1.0


def _tentorium_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MNI z of the tentorium cerebelli above (x, y), fitted by eye to the 2009a template.

    Tent-shaped: highest at the midline near the vermis (y ~ -70, z ~ +8), sloping down
    laterally (~0.4 mm per mm) and towards the occipital pole and the petrous ridges.
    """
    midline = np.interp(y, [-110.0, -70.0, -55.0, -45.0], [-15.0, 8.0, 0.0, -10.0])
    return np.maximum(-12.0 - 0.4 * np.abs(x), midline - np.abs(x))


def _derive_regions(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, brain: np.ndarray,
                    affine: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """The region map and the ventricle distance map (see the module docstring for the rules)."""
    x, y, z = _mni_axes(affine, brain.shape)
    csf_dominant = brain & (csf >= gm) & (csf >= wm)
    tissue = brain & ~csf_dominant
    gm_dominant = tissue & (gm >= wm)

    ventricles = _ventricles(csf_dominant, x, y, z, affine)
    ventricle_distance = _capped_distance(~ventricles, spacing)

    regions = np.zeros(brain.shape, dtype=np.uint8)
    unassigned = tissue.copy()

    def assign(name: str, where: np.ndarray) -> None:
        where = where & unassigned  # broadcasts the 1-D coordinate conditions
        regions[where] = REGION_CODES[name]
        unassigned[where] = False

    regions[csf_dominant] = REGION_CODES["csf"]
    regions[ventricles] = REGION_CODES["ventricles"]
    brainstem = (np.abs(x) < 16) & (y > -48) & (y < -12) & (z < -8)
    cerebellum = (y < -38) & (z < _tentorium_z(x, y))
    assign("infratentorial", brainstem | cerebellum)
    deep_gm = gm >= _DEEP_GM_MIN
    basal_ganglia = np.zeros(brain.shape, dtype=bool)
    for centre, axes, needs_gm in _BASAL_GANGLIA_ELLIPSOIDS:
        inside = _ellipsoid(x, y, z, centre, axes)
        basal_ganglia |= inside & deep_gm if needs_gm else inside
    assign("basal_ganglia", basal_ganglia)
    assign("thalamus", _ellipsoid(x, y, z, *_THALAMUS_ELLIPSOID) & deep_gm)
    nuclei = [(centre, axes) for centre, axes, _ in _BASAL_GANGLIA_ELLIPSOIDS]
    nuclei.append(_THALAMUS_ELLIPSOID)
    near_nuclei = functools.reduce(np.logical_or, (
        _ellipsoid(x, y, z, centre, tuple(a + _DEEP_GM_MARGIN_MM for a in axes))
        for centre, axes in nuclei))
    cortex = gm_dominant & unassigned & ~near_nuclei
    assign("juxtacortical", cortex)
    assign("periventricular", ventricle_distance <= PERIVENTRICULAR_MM)
    assign("juxtacortical", _ball_dilation(cortex, JUXTACORTICAL_MM, spacing))
    roof = float(np.max(np.broadcast_to(z, brain.shape)[ventricles]))
    assign("centrum_semiovale", z > roof)
    assign("deep_wm", unassigned)
    return regions, ventricle_distance


def _ventricles(csf_dominant: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                affine: np.ndarray) -> np.ndarray:
    """CSF components in the central search box that hold a lateral ventricle seed."""
    (x0, x1), (y0, y1), (z0, z1) = _VENTRICLE_BOX
    in_box = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1)
    candidates = csf_dominant & in_box
    labels, _ = ndimage.label(candidates)
    inverse = np.linalg.inv(affine)
    seed_voxels = np.rint(inverse[:3, :3] @ np.array(_VENTRICLE_SEEDS, dtype=float).T
                          + inverse[:3, 3:]).astype(int)
    # A seed may fall on the septum or the caudate at 2 mm: take the labels in a 3 mm ball.
    radius = max(1, int(round(3.0 / abs(affine[0, 0]))))
    seed_labels = set()
    for i, j, k in seed_voxels.T:
        ball = labels[i - radius:i + radius + 1, j - radius:j + radius + 1,
                      k - radius:k + radius + 1]
        seed_labels.update(int(v) for v in np.unique(ball) if v)
    if not seed_labels:
        raise RuntimeError("no CSF at the lateral ventricle seeds: is this the MNI152 template?")
    return np.isin(labels, sorted(seed_labels))


def regions_in_subject(shape: tuple[int, int, int], affine: np.ndarray,
                       world_to_mni: np.ndarray | None = None, *,
                       resolution_mm: Literal[1, 2] = 2) -> np.ndarray:
    """The region map on a subject's grid, through an affine world -> MNI mapping.

    Args:
        shape: The subject grid's shape.
        affine: Its 4x4 voxel -> world (scanner RAS mm) transform.
        world_to_mni: 4x4 world mm -> MNI mm (e.g. :func:`world_to_mni_from_mask` or an affine
            registration); ``None`` when the subject is already in MNI space.
        resolution_mm: Atlas resolution to sample.

    Returns:
        uint8 array of ``shape`` with codes from :data:`REGION_CODES` (nearest neighbour).
    """
    atlas = load_atlas(resolution_mm)
    world_to_mni = np.eye(4) if world_to_mni is None else np.asarray(world_to_mni, dtype=np.float64)
    affine = np.asarray(affine, dtype=np.float64)
    voxel_to_atlas = np.linalg.inv(atlas.affine) @ world_to_mni @ affine
    return ndimage.affine_transform(atlas.regions, voxel_to_atlas[:3, :3], voxel_to_atlas[:3, 3],
                                    output_shape=tuple(int(n) for n in shape), order=0,
                                    mode="constant", cval=0)


def world_to_mni_from_mask(mask: np.ndarray, affine: np.ndarray, *,
                           resolution_mm: Literal[1, 2] = 2) -> np.ndarray:
    """A coarse world -> MNI affine matching the centre and extent of a brain mask.

    Matches the centroid and the per-axis standard deviation (along world x, y, z) of the
    subject's brain mask to the atlas's: translation plus anisotropic scaling, no rotation.
    Good to a few mm for heads scanned close to the scanner axes; use a registration when a
    head is strongly tilted.

    Args:
        mask: Brain mask (non-zero = brain) on the subject grid.
        affine: The grid's 4x4 voxel -> world transform.
        resolution_mm: Atlas resolution to compare with.

    Returns:
        4x4 world mm -> MNI mm.

    Raises:
        ValueError: An empty mask.
    """
    atlas = load_atlas(resolution_mm)
    affine = np.asarray(affine, dtype=np.float64)
    subject_mean, subject_std = _world_moments(np.asarray(mask) > 0, affine)
    mni_mean, mni_std = _world_moments(atlas.brain, atlas.affine)
    scale = mni_std / subject_std
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag(scale)
    matrix[:3, 3] = mni_mean - scale * subject_mean
    return matrix


def _world_moments(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    voxels = np.argwhere(mask)
    if voxels.size == 0:
        raise ValueError("the brain mask is empty")
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    return world.mean(axis=0), world.std(axis=0)
