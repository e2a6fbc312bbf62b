"""The region map derived from the MNI152 tissue maps: region codes and the rules that place them.

The region map is derived here from the template's tissue maps (:mod:`csvdnet.atlas.template`)
plus coordinate priors in MNI space (mm):

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
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

__all__ = [
    "DEEP_REGIONS",
    "JUXTACORTICAL_MM",
    "LOBAR_REGIONS",
    "PERIVENTRICULAR_MM",
    "REGION_CODES",
    "REGION_NAMES",
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
# Ventricle distances past this are irrelevant (WMH extend at most ~25 mm from the ventricles);
# capping keeps the exact distance transform cropped to the centre of the brain.
_DISTANCE_CAP_MM = 30.0


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

