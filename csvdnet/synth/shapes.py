"""The solid shapes lesions are drawn as (ellipsoid, tube, susceptibility bloom), rasterised onto a
grid with exact partial volume (supersampled to 1/27 of a voxel for small shapes)."""

from __future__ import annotations

import dataclasses

import numpy as np

from csvdnet.synth.geometry import Grid, box_corners

SUPERSAMPLE = 3
"""Supersampling per axis of small shapes (partial volume exact to 1/27 of a voxel)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Ellipsoid:
    """A solid ellipsoid, optionally lobulated.

    Attributes:
        centre: World centre (mm).
        semi_axes: Semi-axis lengths (mm).
        rotation: 3x3 matrix whose columns are the world directions of the semi-axes.
        bumps: (M, 4) rows of (unit direction, amplitude): the surface bulges by
            ``amplitude * max(0, cos(angle to direction)) ** 3`` (negative: a dent).
    """

    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    bumps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4)))

    @property
    def radius(self) -> float:
        """Radius of a sphere around the centre that holds the shape."""
        return float(self.semi_axes.max() * (1.0 + np.clip(self.bumps[:, 3], 0, None).sum()))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box."""
        return self.centre - self.radius, self.centre + self.radius

    def density(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """1 inside, 0 outside, at broadcastable world coordinates."""
        offsets = (x - self.centre[0], y - self.centre[1], z - self.centre[2])
        local = [sum(self.rotation[d, k] * offsets[d] for d in range(3)) / self.semi_axes[k]
                 for k in range(3)]
        rho = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2)
        limit = 1.0
        if len(self.bumps):
            norm = np.sqrt(offsets[0] ** 2 + offsets[1] ** 2 + offsets[2] ** 2) + 1e-9
            for *direction, amplitude in self.bumps:
                cosine = sum(direction[d] * offsets[d] for d in range(3)) / norm
                limit = limit + amplitude * np.clip(cosine, 0, None) ** 3
        return (rho <= limit).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Tube:
    """A capsule: the points within ``radius`` of the segment start-end."""

    start: np.ndarray
    end: np.ndarray
    radius: float

    @property
    def centre(self) -> np.ndarray:
        """Midpoint of the axis."""
        return (self.start + self.end) / 2

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box."""
        lo, hi = np.minimum(self.start, self.end), np.maximum(self.start, self.end)
        return lo - self.radius, hi + self.radius

    def density(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """1 inside, 0 outside, at broadcastable world coordinates."""
        axis = self.end - self.start
        offsets = (x - self.start[0], y - self.start[1], z - self.start[2])
        along = sum(axis[d] * offsets[d] for d in range(3))
        t = np.clip(along / max(float(axis @ axis), 1e-12), 0, 1)
        distance2 = sum((offsets[d] - t * axis[d]) ** 2 for d in range(3))
        return (distance2 <= self.radius ** 2).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Bloom:
    """A Gaussian susceptibility bloom (the dipole field around a haemosiderin deposit)."""

    centre: np.ndarray
    sigma: float
    amplitude: float

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box (3 sigma)."""
        return self.centre - 3 * self.sigma, self.centre + 3 * self.sigma

    def density(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Susceptibility at broadcastable world coordinates."""
        distance2 = sum((c - centre) ** 2 for c, centre in zip((x, y, z), self.centre))
        return (self.amplitude * np.exp(-0.5 * distance2 / self.sigma ** 2)).astype(np.float32)


Shape = Ellipsoid | Tube | Bloom


Box = tuple[slice, slice, slice]


def rasterize(shape: Shape, grid: Grid,
              supersample: int | None = None) -> tuple[Box, np.ndarray] | None:
    """A shape's mean density in each voxel of an axis-aligned grid, over its bounding box.

    With a solid shape this is its partial volume, to ``1 / supersample ** 3``.

    Args:
        shape: The shape.
        grid: An axis-aligned grid (any axis order and direction).
        supersample: Sub-samples per voxel and axis; by default 3 for shapes a few voxels
            thin, fewer for thick ones, whose volume hardly depends on their edge voxels.

    Returns:
        (slices of the grid, float32 mean density over them), or None off the grid.
    """
    lo, hi = shape.bounds()
    if supersample is None:
        thinnest = float(np.min(hi - lo)) / float(grid.spacing.min())
        supersample = SUPERSAMPLE if thinnest <= 6 else 2 if thinnest <= 16 else 1
    corners = grid.world_to_voxel(box_corners(lo, hi))
    first = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    last = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, grid.shape)
    if np.any(last <= first):
        return None
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    coords = []
    for world, axis in enumerate(grid.axis_of_world()):
        index = (np.arange(first[axis], last[axis])[:, None] + offsets).ravel()
        values = grid.affine[world, axis] * index + grid.affine[world, 3]
        coords.append(values.reshape([-1 if a == axis else 1 for a in range(3)]))
    n = last - first
    density = np.broadcast_to(shape.density(*coords), tuple(n * supersample))
    blocks = density.reshape(n[0], supersample, n[1], supersample, n[2], supersample)
    mean = blocks.mean(axis=(1, 3, 5))
    return tuple(slice(int(a), int(b)) for a, b in zip(first, last)), mean.astype(np.float32)


def reference_mask(shapes: list[Ellipsoid], grid: Grid) -> np.ndarray:
    """uint8 mask of the voxels of ``grid`` more than half inside one of the (disjoint) shapes."""
    mask = np.zeros(grid.shape, dtype=np.uint8)
    for shape in shapes:
        raster = rasterize(shape, grid, SUPERSAMPLE)
        if raster is not None:
            mask[raster[0]] |= raster[1] > 0.5
    return mask
