"""A synthetic subject's anatomy: the MNI152 atlas warped into a head of its own.

Every subject gets its own world -> MNI mapping (:class:`SubjectWarp`): a random head pose and
size in the scanner, a smooth low-frequency non-linear displacement and a ventricle enlargement
(atrophy, common in small vessel disease). The atlas's tissue maps, region map and distances are
sampled through it onto a fine isotropic grid in the reference scanner frame, where lesions are
then drawn (:mod:`csvdnet.synth.lesions`) and from which every sequence is imaged
(:mod:`csvdnet.synth.sequences`). A thin shell of extra-cerebral CSF, skull (inner table,
diploe, outer table) and scalp surrounds the brain so that brain extraction is not trivial.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from csvdnet.atlas import REGION_CODES, Atlas
from csvdnet.synth.geometry import Grid, SmoothField, box_corners, rigid_matrix
from csvdnet.synth.profiles import Profile

__all__ = ["Anatomy", "PARENCHYMA", "SubjectWarp", "TISSUES", "build_anatomy"]

TISSUES = ("csf", "gm", "deep_gm", "wm", "wmh", "gliosis", "rssi", "lacune", "bone", "marrow",
           "scalp")
"""Tissue classes of the fine grid's fraction maps; the rest of a voxel is air."""

PARENCHYMA = ("gm", "deep_gm", "wm")
"""Normal brain tissue, which lesions replace."""

# MNI centre and Gaussian widths (mm) of the ventricle enlargement: the lateral ventricles
# span about x +-20, y -40..+25, z 0..30.
_VENTRICLE_CENTRE_MNI = np.array([0.0, -8.0, 14.0])
_VENTRICLE_SIGMA_MM = np.array([16.0, 28.0, 16.0])
# The head box: the brain (as measured on the template) plus room for the skull and scalp.
_BRAIN_BOX_MNI = (np.array([-72.0, -107.0, -72.0]), np.array([72.0, 73.0, 82.0]))
_HEAD_MARGIN_MM = 20.0
_HEAD_BOTTOM_MNI_Z = -62.0
# Extra-cerebral CSF, inner table, diploe, outer table, scalp: (low, high) thickness in mm.
_SHELL_MM = ((1.0, 3.0), (1.2, 2.0), (1.5, 4.0), (1.2, 2.0), (3.0, 7.0))
_SHELL_TISSUES = ("csf", "bone", "marrow", "bone", "scalp")
_SHELL_VARIATION = 0.25  # relative smooth variation of the shell thickness over the head
_CAUDATE_MAX_MNI_X = 16.0
_IRON_LENTIFORM, _IRON_CAUDATE = 0.15, 0.05  # susceptibility of the deep grey nuclei
_POSITION_SD_MM = 8.0  # the head sits near the scanner's isocentre


@dataclasses.dataclass(frozen=True, eq=False)
class SubjectWarp:
    """Reference-world (scanner RAS mm) -> MNI mm mapping of one synthetic subject.

    ``mni(p) = M_lin (p - a g(p) (p - c)) + M_t + u(p)``: the inverse head pose and size
    ``M``, a smooth displacement ``u`` and an enlargement of the ventricles by ``1 / (1 - a)``
    around their centre ``c`` with Gaussian footprint ``g``.

    Attributes:
        matrix: 4x4 world -> MNI affine part (inverse of the head pose and size).
        displacement: Smooth displacement field (MNI mm) over the head box.
        centre: World position of the ventricle enlargement's centre.
        sigma: Gaussian widths (world mm) of the enlargement.
        shrink: ``a`` in [0, 1): the ventricles are ``1 / (1 - a)`` times larger than the atlas's.
    """

    matrix: np.ndarray
    displacement: SmoothField
    centre: np.ndarray
    sigma: np.ndarray
    shrink: float

    @classmethod
    def random(cls, rng: np.random.Generator, profile: Profile) -> SubjectWarp:
        """A random head: pose, size, smooth deformation, ventricle size.

        Args:
            rng: Random generator.
            profile: Supplies the pose, scale, warp and enlargement ranges.

        Returns:
            The warp.
        """
        scale = rng.uniform(1 - profile.scale_range, 1 + profile.scale_range, 3)
        pose = rigid_matrix(rng.normal(0, profile.pose_deg, 3), rng.normal(0, _POSITION_SD_MM, 3))
        mni_to_world = pose @ np.diag([*scale, 1.0])
        matrix = np.linalg.inv(mni_to_world)
        centre = mni_to_world[:3, :3] @ _VENTRICLE_CENTRE_MNI + mni_to_world[:3, 3]
        lo, hi = _world_box(mni_to_world, _head_box_mni())
        displacement = SmoothField.random(rng, lo, hi, channels=3, order=4, rms=profile.warp_mm)
        # Ventricle size is skewed: most heads near the atlas's, a few much larger.
        enlargement = 1.0 + profile.ventricle_enlargement * rng.beta(1.2, 3.0)
        return cls(matrix, displacement, centre, _VENTRICLE_SIGMA_MM * scale,
                   1.0 - 1.0 / enlargement)

    def _shrink_weight(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``a g(p)``, a product of 1-D Gaussians (so separable on grids)."""
        weight = self.shrink
        for axis, coordinate in enumerate((x, y, z)):
            offset = (coordinate - self.centre[axis]) / self.sigma[axis]
            weight = weight * np.exp(-0.5 * offset ** 2)
        return weight

    def on_grid(self, grid: Grid) -> np.ndarray:
        """MNI coordinates of every voxel centre of an axis-aligned grid.

        Returns:
            float32 (3, *grid.shape).
        """
        axes = [a.astype(np.float32) for a in grid.world_axes()]
        weight = self._shrink_weight(*axes).astype(np.float32)
        offsets = [a - np.float32(c) for a, c in zip(axes, self.centre)]
        mni = self.displacement.on_grid(grid)
        matrix = self.matrix.astype(np.float32)
        for e, row in enumerate(matrix[:3]):
            # M (p - w (p - c)) + t = (M p + t) - w M (p - c): sums of 1-D terms, broadcast once.
            mni[e] += axes[0] * row[0] + axes[1] * row[1] + axes[2] * row[2] + row[3]
            mni[e] -= weight * (offsets[0] * row[0] + offsets[1] * row[1] + offsets[2] * row[2])
        return mni

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm -> (N, 3) MNI mm."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        enlarged = points - self._shrink_weight(*points.T)[:, None] * (points - self.centre)
        return enlarged @ self.matrix[:3, :3].T + self.matrix[:3, 3] + self.displacement.at(points)

    def inverse(self, mni: np.ndarray, iterations: int = 30) -> np.ndarray:
        """(N, 3) MNI mm -> (N, 3) world mm, by fixed-point iteration on the affine part.

        The non-linear parts change the mapping's Jacobian by well under 50 %, so each step
        at least halves the error: 30 steps reach round-off.
        """
        mni = np.asarray(mni, dtype=np.float64).reshape(-1, 3)
        to_world = np.linalg.inv(self.matrix)
        world = mni @ to_world[:3, :3].T + to_world[:3, 3]
        for _ in range(iterations):
            world += (mni - self(world)) @ to_world[:3, :3].T
        return world


def _head_box_mni() -> tuple[np.ndarray, np.ndarray]:
    """MNI box of the head model: the template brain plus room for the skull and scalp."""
    lo = _BRAIN_BOX_MNI[0] - _HEAD_MARGIN_MM
    lo[2] = _HEAD_BOTTOM_MNI_Z  # cut below the cerebellum, like an axial head scan
    return lo, _BRAIN_BOX_MNI[1] + _HEAD_MARGIN_MM


def _world_box(mni_to_world: np.ndarray,
               box: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box of an MNI box mapped through an affine."""
    world = box_corners(*box) @ mni_to_world[:3, :3].T + mni_to_world[:3, 3]
    return world.min(axis=0), world.max(axis=0)


def _scatter(values: np.ndarray, voxels: np.ndarray, shape: tuple[int, ...],
             fill: float) -> np.ndarray:
    """A volume holding ``values`` at flat indices ``voxels`` and ``fill`` elsewhere."""
    volume = np.full(shape, fill, dtype=values.dtype)
    volume.ravel()[voxels] = values
    return volume


@dataclasses.dataclass(eq=False)
class Anatomy:
    """A subject's anatomy on the fine grid (reference scanner frame).

    Attributes:
        grid: The fine, isotropic, RAS grid.
        fractions: float32 (len(TISSUES), *shape) volume fractions; their sum is <= 1 and the
            remainder is air. Lesions are painted into it.
        brain: float32 brain fraction (the atlas brain mask through the warp).
        regions: uint8 region map (codes of :data:`csvdnet.atlas.REGION_CODES`).
        mni: float32 (3, *shape) MNI coordinates of every voxel.
        ventricle_distance: float32 distance to the ventricles (MNI mm, capped).
        susceptibility: float32 susceptibility-induced dephasing (0 = none): iron in the deep
            grey nuclei, veins and microbleeds darken T2*-weighted sequences through it.
        warp: The subject's world -> MNI mapping.
        atlas: The atlas the anatomy was sampled from.
    """

    grid: Grid
    fractions: np.ndarray
    brain: np.ndarray
    regions: np.ndarray
    mni: np.ndarray
    ventricle_distance: np.ndarray
    susceptibility: np.ndarray
    warp: SubjectWarp
    atlas: Atlas
    _region_order: np.ndarray | None = dataclasses.field(default=None, init=False, repr=False)
    _region_starts: np.ndarray | None = dataclasses.field(default=None, init=False, repr=False)

    def region_voxels(self, codes: tuple[int, ...]) -> np.ndarray:
        """Flat indices of the fine voxels in any of the regions ``codes``."""
        if self._region_order is None:  # one sort serves every query
            flat = self.regions.ravel()
            self._region_order = np.argsort(flat, kind="stable")
            self._region_starts = np.searchsorted(flat[self._region_order],
                                                  np.arange(max(REGION_CODES.values()) + 2))
        starts = self._region_starts
        return np.concatenate([self._region_order[starts[c]:starts[c + 1]] for c in codes])

    def regions_at(self, points: np.ndarray) -> np.ndarray:
        """Atlas region codes at (N, 3) world points, through the warp (not the fine grid)."""
        return self.atlas.sample("regions", self.warp(points).T, order=0)

    def tissue(self, name: str) -> np.ndarray:
        """The (writable) fraction map of one tissue class."""
        return self.fractions[TISSUES.index(name)]

    def paint(self, box: tuple[slice, ...], fraction: np.ndarray, into: str,
              replace: tuple[str, ...]) -> None:
        """Turn ``fraction`` of the ``replace`` tissues inside ``box`` into tissue ``into``.

        Volume is conserved: each replaced class loses the same proportion of itself, and
        what it loses becomes ``into``.

        Args:
            box: Slices of the fine grid.
            fraction: Proportion (0..1) to convert, shaped like the box.
            into: Tissue receiving the volume.
            replace: Tissues giving it.
        """
        target = self.fractions[(TISSUES.index(into),) + box]
        for name in replace:
            source = self.fractions[(TISSUES.index(name),) + box]
            moved = source * fraction
            source -= moved
            target += moved


def build_anatomy(atlas: Atlas, warp: SubjectWarp, spacing_mm: float,
                  rng: np.random.Generator) -> Anatomy:
    """Sample the atlas through the subject's warp onto a fine grid and wrap it in a skull.

    Args:
        atlas: The MNI152 atlas.
        warp: The subject's world -> MNI mapping.
        spacing_mm: Fine grid spacing.
        rng: Random generator (skull and scalp thickness).

    Returns:
        The anatomy, with no lesions yet.
    """
    lo, hi = _world_box(np.linalg.inv(warp.matrix), _head_box_mni())
    grid = Grid.covering(lo, hi, np.full(3, spacing_mm))
    mni = warp.on_grid(grid)
    surface = atlas.sample("surface_distance", mni)
    # Tissue, regions and ventricle distances matter only in the brain, a third of the head box
    # (the shell thickness scale stays below 2).
    brain_voxels = np.flatnonzero(surface < 2 * spacing_mm)
    brain_mni = mni.reshape(3, -1)[:, brain_voxels]
    gm, wm, ventricle_distance = (
        _scatter(values, brain_voxels, grid.shape, float(atlas_map.flat[0]))
        for values, atlas_map in zip(atlas.sample(("gm", "wm", "ventricle_distance"), brain_mni),
                                     (atlas.gm, atlas.wm, atlas.ventricle_distance)))
    regions = _scatter(atlas.sample("regions", brain_mni, order=0), brain_voxels, grid.shape, 0)

    # Each layer boundary is a level set of the signed surface distance; the fraction of a
    # voxel inside it ramps linearly over one voxel (partial volume).
    variation = SmoothField.random(rng, lo, hi, order=4, rms=_SHELL_VARIATION).on_grid(grid)[0]
    shell_scale = 1.0 + variation
    depth = surface / np.maximum(shell_scale, 0.3)  # a thicker shell where the scale is > 1
    boundaries = np.cumsum([0.0] + [rng.uniform(a, b) for a, b in _SHELL_MM])
    brain = np.clip(0.5 - depth / spacing_mm, 0, 1)
    scale = np.minimum(1.0, brain / np.maximum(gm + wm, 1e-6))  # GM + WM fit in the brain
    gm *= scale
    wm *= scale

    fractions = np.zeros((len(TISSUES),) + grid.shape, dtype=np.float32)
    deep = np.isin(regions, (REGION_CODES["basal_ganglia"], REGION_CODES["thalamus"]))
    fractions[TISSUES.index("deep_gm")] = gm * deep
    fractions[TISSUES.index("gm")] = gm * ~deep
    fractions[TISSUES.index("wm")] = wm
    fractions[TISSUES.index("csf")] = np.maximum(brain - gm - wm, 0)
    # The shell layers, computed only where a voxel can hold some of one.
    shell = np.flatnonzero((depth > -spacing_mm) & (depth < boundaries[-1] + spacing_mm))
    inside = np.clip(0.5 - (depth.ravel()[shell] - boundaries[:, None]) / spacing_mm, 0, 1)
    for name, layer in zip(_SHELL_TISSUES, np.diff(inside, axis=0)):
        fractions[TISSUES.index(name)].ravel()[shell] += layer

    # Iron: the lentiform nucleus (globus pallidus, putamen: lateral to |x| ~ 16 mm) is dark on
    # SWI and T2 in older brains, the caudate much less.
    lentiform = np.abs(mni[0]) > _CAUDATE_MAX_MNI_X
    iron = np.where(lentiform, np.float32(_IRON_LENTIFORM), np.float32(_IRON_CAUDATE))
    susceptibility = np.where(regions == REGION_CODES["basal_ganglia"], iron, np.float32(0))
    return Anatomy(grid=grid, fractions=fractions, brain=brain, regions=regions, mni=mni,
                   ventricle_distance=ventricle_distance, susceptibility=susceptibility, warp=warp,
                   atlas=atlas)
