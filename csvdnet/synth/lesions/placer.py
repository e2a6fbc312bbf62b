"""Where a lesion may go: the region sets, the placer that draws free positions from candidate
voxels and keeps planted objects apart, and the checks that a shape lies in its regions and
shows on the reference grid.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from csvdnet.atlas import REGION_CODES
from csvdnet.synth.anatomy import PARENCHYMA, Anatomy
from csvdnet.synth.geometry import Grid
from csvdnet.synth.shapes import SUPERSAMPLE, Ellipsoid, rasterize

_R = REGION_CODES
_DEEP_WM = (_R["centrum_semiovale"], _R["deep_wm"])
_LACUNE_REGIONS = (_R["basal_ganglia"], _R["thalamus"], _R["centrum_semiovale"],
                   _R["periventricular"], _R["deep_wm"])
# Lacunes and RSSI lie in deep perforator territory (corona radiata), not under the cortex.
_PERFORATOR_MAX_VENTRICLE_MM = 22.0
# The origin and the 26 directions to a voxel's neighbours as unit vectors (norms are 0 or >= 1).
_OFFSETS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)
_NEIGHBOUR_DIRECTIONS = _OFFSETS / np.maximum(np.linalg.norm(_OFFSETS, axis=1, keepdims=True), 1.0)


def _within(anat: Anatomy, shape: Ellipsoid, regions: tuple[int, ...]) -> bool:
    """Whether the centre and 26 points on the surface of ``shape`` all lie in ``regions``.

    Looked up in the atlas through the warp, so a lesion near the cortex, a ventricle or a
    sulcus is refused even where the fine grid's region map is coarse.
    """
    unit = _NEIGHBOUR_DIRECTIONS
    points = shape.centre + (unit * shape.semi_axes) @ shape.rotation.T
    return bool(np.isin(anat.regions_at(points), regions).all())


def _min_semi_axes(reference: Grid) -> np.ndarray:
    """Semi-axes (in-plane, in-plane, vertical) a lesion needs to show on the reference grid.

    A reference voxel must be able to be more than half lesion wherever the voxels fall: a
    disc centred on a voxel corner covers half of each of its voxels from a radius of ~0.8 voxel.
    """
    in_plane = np.delete(reference.spacing, reference.slice_axis()).min()
    through = reference.spacing[reference.slice_axis()]
    return 0.8 * np.array([in_plane, in_plane, through])


def _visible(shape: Ellipsoid, grid: Grid, fraction: float = 0.5) -> bool:
    """Whether some voxel of ``grid`` is more than ``fraction`` inside ``shape``.

    At 0.5 the shape is then labelled on ``grid``; a lesion drawn through the fine grid and
    mixed with other tissue needs a margin above that.
    """
    raster = rasterize(shape, grid, SUPERSAMPLE)
    return raster is not None and bool(raster[1].max() > fraction)


class _Placer:
    """Draws lesion positions from candidate voxels, keeping planted objects apart."""

    def __init__(self, anat: Anatomy, rng: np.random.Generator):
        self.anat = anat
        self.rng = rng
        self.centres = np.zeros((0, 3))
        self.radii = np.zeros(0)
        # Taken once, before this placer's lesions are painted: the clearance between objects
        # keeps a new lesion out of the tissue an earlier one changed.
        self.parenchyma = sum(anat.tissue(name) for name in PARENCHYMA + ("wmh",))

    def candidates(self, regions: tuple[int, ...], tissue_min: float = 0.7,
                   where: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Flat indices of fine voxels in ``regions`` that are mostly parenchyma.

        Args:
            regions: Region codes.
            tissue_min: Smallest parenchyma (GM, deep GM, WM, WMH) fraction.
            where: Further condition, evaluated on flat indices.
        """
        voxels = self.anat.region_voxels(regions)
        voxels = voxels[self.parenchyma.ravel()[voxels] >= tissue_min]
        return voxels if where is None else voxels[where(voxels)]

    def draw(self, candidates: np.ndarray, radius: float, gap: float,
             valid: Callable[[np.ndarray], bool] | None = None,
             tries: int = 200) -> np.ndarray | None:
        """A free position (world mm) in a random candidate voxel, registered as taken.

        Args:
            candidates: Flat fine-grid indices to draw from.
            radius: Radius of the new object.
            gap: Clearance to keep from every registered object's surface.
            valid: Extra acceptance test of a position.
            tries: Positions tried before giving up.

        Returns:
            The position, or None when no free position was found.
        """
        if len(candidates) == 0:
            return None
        grid = self.anat.grid
        picks = candidates[self.rng.integers(len(candidates), size=tries)]
        jitter = self.rng.uniform(-0.5, 0.5, (tries, 3)) * grid.spacing
        positions = grid.flat_to_world(picks) + jitter
        for position in positions:
            clearance = np.linalg.norm(self.centres - position, axis=1) - self.radii - radius
            if np.all(clearance >= gap) and (valid is None or valid(position)):
                self.register(position, radius)
                return position
        return None

    def register(self, centre: np.ndarray, radius: float) -> None:
        """Keep later objects clear of this one."""
        self.centres = np.vstack([self.centres, centre])
        self.radii = np.append(self.radii, radius)


def _flat(volume: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """Values of a fine-grid volume at flat voxel indices."""
    return volume.ravel()[voxels]
