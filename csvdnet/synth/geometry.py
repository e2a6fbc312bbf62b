"""Grids, rigid transforms and smooth random fields for the synthetic cohort.

Everything here works in world millimetres (scanner RAS). Grids are "axis-aligned": their voxel
axes run along the world axes, possibly permuted and flipped (RAS, LPS, a sagittal PIR, ...), as
a scanner's acquisition grids do when the slices are not angulated. On such grids a separable
field (a sum of products of 1-D functions of x, y and z) is evaluated with a few tensor
contractions instead of one function call per voxel, which keeps a 1 mm head cheap.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import sparse

__all__ = ["Grid", "SmoothField", "axcodes_matrix", "box_average", "box_corners", "rigid_matrix"]

_AXIS_OF_CODE = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0),
                 "I": (2, -1.0)}


def axcodes_matrix(axcodes: tuple[str, str, str] | str) -> np.ndarray:
    """3x3 direction matrix whose columns are the world directions of increasing i, j, k.

    Args:
        axcodes: nibabel-style codes of where each voxel axis points, e.g. ``"LPS"``.

    Returns:
        A signed permutation matrix.

    Raises:
        ValueError: Codes that are not one of R/L, A/P, S/I each.
    """
    directions = np.zeros((3, 3))
    used = set()
    for column, code in enumerate(axcodes):
        if code not in _AXIS_OF_CODE:
            raise ValueError(f"unknown axis code {code!r} in {axcodes!r} (use R/L, A/P, S/I)")
        axis, sign = _AXIS_OF_CODE[code]
        used.add(axis)
        directions[axis, column] = sign
    if len(used) != 3 or len(axcodes) != 3:
        raise ValueError(f"axis codes {axcodes!r} must name each of R/L, A/P, S/I once")
    return directions


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of the axis-aligned box lo..hi."""
    return np.array(np.meshgrid(*zip(lo, hi), indexing="ij"), dtype=np.float64).reshape(3, -1).T


def rigid_matrix(angles_deg: np.ndarray, translation_mm: np.ndarray,
                 centre: np.ndarray | None = None) -> np.ndarray:
    """4x4 rotation (about x, then y, then z, around ``centre``) followed by a translation.

    Args:
        angles_deg: Rotation angles about the world x, y, z axes in degrees.
        translation_mm: Translation in mm.
        centre: Point the rotation keeps fixed (default the origin).

    Returns:
        The 4x4 matrix.
    """
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rotation = rz @ ry @ rx
    centre = np.zeros(3) if centre is None else np.asarray(centre, dtype=np.float64)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre - rotation @ centre + np.asarray(translation_mm, dtype=np.float64)
    return matrix


@dataclasses.dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid: shape and voxel -> world affine.

    Attributes:
        shape: Voxels along i, j, k.
        affine: 4x4 voxel -> world (mm).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray

    @classmethod
    def covering(cls, lo: np.ndarray, hi: np.ndarray, spacing: np.ndarray,
                 axcodes: tuple[str, str, str] | str = "RAS") -> Grid:
        """The axis-aligned grid of voxel size ``spacing`` whose field of view spans lo..hi.

        Args:
            lo: World corner with the smallest x, y, z (mm).
            hi: World corner with the largest x, y, z.
            spacing: Voxel size along i, j, k (mm).
            axcodes: Direction of the voxel axes (see :func:`axcodes_matrix`).

        Returns:
            A grid centred on the box, at least as large as it.
        """
        directions = axcodes_matrix(axcodes)
        spacing = np.asarray(spacing, dtype=np.float64)
        world_extent = np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)
        extent = np.abs(directions.T) @ world_extent  # the box's size along i, j, k
        shape = np.maximum(np.ceil(extent / spacing).astype(int), 1)
        centre = (np.asarray(lo, dtype=np.float64) + np.asarray(hi, dtype=np.float64)) / 2
        affine = np.eye(4)
        affine[:3, :3] = directions * spacing
        affine[:3, 3] = centre - affine[:3, :3] @ ((shape - 1) / 2)
        return cls(tuple(int(n) for n in shape), affine)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    def crop(self, box: tuple[slice, slice, slice]) -> Grid:
        """The sub-grid of the voxels in ``box`` (slices with non-negative starts, step 1)."""
        start = np.array([b.start or 0 for b in box])
        stop = np.array([n if b.stop is None else min(b.stop, n) for b, n in zip(box, self.shape)])
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, :3] @ start + self.affine[:3, 3]
        return Grid(tuple(int(n) for n in stop - start), affine)

    def world_to_voxel(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world mm -> (N, 3) continuous voxel indices."""
        inverse = np.linalg.inv(self.affine)
        return np.asarray(points, dtype=np.float64) @ inverse[:3, :3].T + inverse[:3, 3]

    def voxel_to_world(self, voxels: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices -> (N, 3) world mm."""
        return np.asarray(voxels, dtype=np.float64) @ self.affine[:3, :3].T + self.affine[:3, 3]

    def flat_to_world(self, flat: np.ndarray) -> np.ndarray:
        """(N,) flat (C-order) voxel indices -> (N, 3) world mm of the voxel centres."""
        return self.voxel_to_world(np.stack(np.unravel_index(flat, self.shape), axis=1))

    def world_axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y, z of the voxel centres as three arrays broadcastable to the grid shape.

        Returns:
            (x, y, z), each 1-D data laid along the voxel axis that runs along that world axis.

        Raises:
            ValueError: The grid is oblique (its voxel axes are not along the world axes).
        """
        axis_of_world = self.axis_of_world()
        axes = []
        for world, axis in enumerate(axis_of_world):
            values = self.affine[world, axis] * np.arange(self.shape[axis]) + self.affine[world, 3]
            axes.append(values.reshape([-1 if a == axis else 1 for a in range(3)]))
        return tuple(axes)

    def axis_of_world(self) -> list[int]:
        """The voxel axis running along world x, y and z.

        Raises:
            ValueError: The grid is oblique (its voxel axes are not along the world axes).
        """
        directions = self.affine[:3, :3]
        dominant = np.argmax(np.abs(directions), axis=1)
        off = np.abs(directions).sum(axis=1) - np.abs(directions[np.arange(3), dominant])
        if sorted(dominant) != [0, 1, 2] or np.any(off > 1e-6 * self.spacing.max()):
            raise ValueError("the grid is oblique: its voxel axes are not along the world axes")
        return [int(a) for a in dominant]

    def slice_axis(self) -> int:
        """The voxel axis closest to world z (the axial slice direction)."""
        return int(np.argmax(np.abs(self.affine[2, :3])))


@dataclasses.dataclass(frozen=True, eq=False)
class SmoothField:
    """A random smooth field: a sum of low-frequency cosines over a world box.

    ``f_c(x, y, z) = sum_{a, b, d} coeffs[c, a, b, d] cos(pi a u_x) cos(pi b u_y) cos(pi d u_z)``
    with ``u = (p - lo) / (hi - lo)``; separable, so cheap on axis-aligned grids.

    Attributes:
        lo: World corner of the box (mm).
        hi: Opposite corner.
        coeffs: (channels, K, K, K) cosine coefficients.
    """

    lo: np.ndarray
    hi: np.ndarray
    coeffs: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, *, channels: int = 1,
               order: int = 3, rms: float = 1.0, falloff: float = 1.0) -> SmoothField:
        """A zero-mean random field with a given root-mean-square value.

        Args:
            rng: Random generator.
            lo: World corner of the box.
            hi: Opposite corner.
            channels: Number of components (3 for a displacement).
            order: Cosine frequencies 0..order-1 per axis; the period of the highest is
                2 (hi - lo) / (order - 1).
            rms: Root-mean-square value over the box, per channel.
            falloff: Amplitude decay with frequency, ``(1 + |k|^2) ** -falloff``: higher is
                smoother.

        Returns:
            The field.
        """
        k = np.arange(order)
        magnitude = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
        amplitude = (1.0 + magnitude) ** -falloff
        amplitude[0, 0, 0] = 0.0  # zero mean
        coeffs = rng.standard_normal((channels, order, order, order)) * amplitude
        # Products of cosines are orthogonal with mean square 2 ** -(number of non-zero k).
        nonzero = sum((k > 0).astype(int).reshape([-1 if a == axis else 1 for a in range(3)])
                      for axis in range(3))
        mean_square = (coeffs ** 2 * 0.5 ** nonzero).sum(axis=(1, 2, 3))
        coeffs *= (rms / np.sqrt(np.maximum(mean_square, 1e-12)))[:, None, None, None]
        return cls(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64), coeffs)

    def _basis(self, axis: int, coords: np.ndarray) -> np.ndarray:
        """(n, K) cosines of the frequencies along ``axis`` at 1-D world coordinates."""
        u = (np.ravel(coords) - self.lo[axis]) / (self.hi[axis] - self.lo[axis])
        return np.cos(np.pi * u[:, None] * np.arange(self.coeffs.shape[1])).astype(np.float32)

    def on_grid(self, grid: Grid) -> np.ndarray:
        """The field at every voxel of an axis-aligned grid.

        Returns:
            float32 (channels, *grid.shape).
        """
        x, y, z = grid.world_axes()
        bx, by, bz = self._basis(0, x), self._basis(1, y), self._basis(2, z)
        field = np.einsum("cabd,xa,yb,zd->cxyz", self.coeffs.astype(np.float32), bx, by, bz,
                          optimize=True)
        # Laid out x, y, z: put each world axis on the voxel axis that runs along it.
        world_of_axis = np.argsort(grid.axis_of_world())
        return np.ascontiguousarray(field.transpose(0, *(1 + world_of_axis)))

    def at(self, points: np.ndarray) -> np.ndarray:
        """The field at (N, 3) world points.

        Returns:
            float64 (N, channels).
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        bx, by, bz = (self._basis(axis, points[:, axis]).astype(np.float64) for axis in range(3))
        return np.einsum("cabd,na,nb,nd->nc", self.coeffs, bx, by, bz)  # small N: no path search


def box_average(volume: np.ndarray, fine: Grid, target: Grid) -> np.ndarray:
    """Exact partial volume: the mean of ``volume`` over each voxel of ``target``.

    Both grids are axis-aligned in the same world and ``fine`` runs along +x, +y, +z (RAS).
    Each target voxel gets the overlap-weighted mean of the fine voxels it covers (what lies
    outside the fine grid counts as 0). Separable, so three sparse matrix products.

    Args:
        volume: Array on ``fine``.
        fine: The fine RAS grid.
        target: An axis-aligned grid (any axis order and direction).

    Returns:
        float32 array on ``target``.

    Raises:
        ValueError: ``fine`` is not RAS or ``target`` is oblique.
    """
    directions = fine.affine[:3, :3]
    diagonal = np.diag(directions)
    if np.any(np.abs(directions - np.diag(diagonal)) > 1e-9) or np.any(diagonal <= 0):
        raise ValueError("box_average needs a fine grid along +x, +y, +z (RAS)")
    axis_of_world = target.axis_of_world()
    result = np.asarray(volume, dtype=np.float32)
    for world, axis in enumerate(axis_of_world):
        weights = _overlaps(fine, world, target, axis)
        moved = np.moveaxis(result, world, 0)
        product = weights @ moved.reshape(moved.shape[0], -1)
        result = np.moveaxis(product.reshape((weights.shape[0],) + moved.shape[1:]), 0, world)
    # Laid out along world x, y, z: put each on the target voxel axis that runs along it.
    return np.ascontiguousarray(result.transpose(np.argsort(axis_of_world)), dtype=np.float32)


def _overlaps(fine: Grid, world: int, target: Grid, axis: int) -> sparse.csr_matrix:
    """(target voxels along ``axis``, fine voxels along world axis ``world``) overlap fractions."""
    step = fine.affine[world, world]
    fine_start = fine.affine[world, 3] - step / 2  # lower edge of fine voxel 0
    centres = target.affine[world, axis] * np.arange(target.shape[axis]) + target.affine[world, 3]
    half = abs(target.affine[world, axis]) / 2
    first = np.floor((centres - half - fine_start) / step).astype(int)
    columns = first[:, None] + np.arange(int(np.ceil(2 * half / step)) + 2)
    lower = fine_start + columns * step
    overlap = np.clip(np.minimum(centres[:, None] + half, lower + step)
                      - np.maximum(centres[:, None] - half, lower), 0, None) / (2 * half)
    keep = (columns >= 0) & (columns < fine.shape[world]) & (overlap > 0)
    rows = np.broadcast_to(np.arange(len(centres))[:, None], columns.shape)
    return sparse.csr_matrix((overlap[keep].astype(np.float32), (rows[keep], columns[keep])),
                             shape=(len(centres), fine.shape[world]))
