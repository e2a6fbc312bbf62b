"""Axial slices of a volume on its own voxel grid, laid out as a radiologist reads them.

Shared by the pictures of a synthetic subject (:mod:`csvdnet.synth.preview`) and of a
prediction report (:mod:`csvdnet.inference.report_html`). A slice is taken along the voxel axis
closest to world z; in the picture anterior is up and the patient's right is on the viewer's
left (radiological convention). Oblique grids are shown as scanned, not resampled: the
picture is for reading, the numbers come from the volumes themselves.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["AxialView", "MARKER_COLOURS", "slice_levels"]

MARKER_COLOURS: dict[str, str] = {"wmh": "#ffd400", "lacune": "#00e5ff", "rssi": "#ff3df5",
                                  "cmb": "#ff2a2a", "epvs": "#39ff14"}
"""Overlay colour of each marker in every picture (bright on grey MRI, told apart at a glance)."""


def slice_levels(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """World z of each slice along the voxel axis closest to world z, and that axis.

    Args:
        affine: 4x4 voxel -> world (RAS mm) matrix.
        shape: Volume shape (3-D).

    Returns:
        ``(z, axis)``: world z (mm) of each slice's centre, and the slice axis.
    """
    affine = np.asarray(affine, dtype=np.float64)
    axis = int(np.argmax(np.abs(affine[2, :3])))
    centre = (np.array(shape[:3]) - 1) / 2
    voxels = np.tile(centre, (shape[axis], 1))
    voxels[:, axis] = np.arange(shape[axis])
    return voxels @ affine[2, :3] + affine[2, 3], axis


@dataclasses.dataclass(frozen=True)
class AxialView:
    """How a voxel grid maps onto axial pictures.

    Attributes:
        axis: Voxel axis the slices are taken along (closest to world z).
        row_axis: Voxel axis shown top to bottom (closest to world y).
        col_axis: Voxel axis shown left to right (closest to world x).
        row_flip: Whether the row axis is reversed (so anterior is up).
        col_flip: Whether the column axis is reversed (so the patient's right is on the left).
        spacing: Voxel size along ``(row_axis, col_axis, axis)`` in mm.
    """

    axis: int
    row_axis: int
    col_axis: int
    row_flip: bool
    col_flip: bool
    spacing: tuple[float, float, float]

    @classmethod
    def of(cls, affine: np.ndarray) -> AxialView:
        """The view of a grid with voxel -> world matrix ``affine``."""
        linear = np.asarray(affine, dtype=np.float64)[:3, :3]
        _, axis = slice_levels(affine, (1, 1, 1))
        rest = [a for a in range(3) if a != axis]
        # The in-plane axis with the larger share of world x becomes the columns.
        col_axis = max(rest, key=lambda a: abs(linear[0, a]) / np.linalg.norm(linear[:, a]))
        row_axis = rest[0] if rest[1] == col_axis else rest[1]
        sizes = np.sqrt((linear ** 2).sum(axis=0))
        # RAS: +x is the patient's right, which goes on the viewer's left; +y (anterior) goes up.
        return cls(axis=axis, row_axis=row_axis, col_axis=col_axis,
                   row_flip=bool(linear[1, row_axis] > 0), col_flip=bool(linear[0, col_axis] > 0),
                   spacing=(float(sizes[row_axis]), float(sizes[col_axis]), float(sizes[axis])))

    def panel(self, volume: np.ndarray, index: int) -> np.ndarray:
        """Slice ``index`` of ``volume`` as a 2-D picture array (rows, columns)."""
        # Basic indexing, a view: np.take would first copy a whole Fortran-ordered volume.
        plane = volume[(slice(None),) * self.axis + (int(index),)]
        in_plane = [a for a in range(3) if a != self.axis]  # axes of ``plane``, in order
        plane = np.transpose(plane, (in_plane.index(self.row_axis), in_plane.index(self.col_axis)))
        if self.row_flip:
            plane = plane[::-1]
        if self.col_flip:
            plane = plane[:, ::-1]
        return plane

    def pixel(self, voxels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Picture ``(row, column)`` of voxel coordinates ``(N, 3)`` (floats kept)."""
        voxels = np.asarray(voxels, dtype=np.float64).reshape(-1, 3)
        rows = voxels[:, self.row_axis]
        cols = voxels[:, self.col_axis]
        if self.row_flip:
            rows = shape[self.row_axis] - 1 - rows
        if self.col_flip:
            cols = shape[self.col_axis] - 1 - cols
        return np.stack([rows, cols], axis=1)
