"""The grid of a DICOM source series, and csvdnet's findings brought onto it.

A source series is read from its headers only (``stop_before_pixels``): single-frame images
sorted along the slice normal, or one enhanced multi-frame image in its own frame order. Pixel
``(r, c)`` of frame ``f`` lies at ``IPP_f + c * dc * X + r * dr * Y`` (patient LPS mm), with
``X, Y`` the row and column direction cosines of ImageOrientationPatient and ``dr, dc`` =
PixelSpacing (between rows, between columns). csvdnet's outputs are in NIfTI RAS, which is LPS
with x and y negated (dcm2niix's convention).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from scipy import ndimage

from csvdnet.errors import CsvdnetInputError

__all__ = ["SeriesGrid", "lps_of_ras", "read_series"]

_LPS_RAS = np.diag([-1.0, -1.0, 1.0])
_TOL = 1e-3  # direction cosines / spacings that differ by less are the same


def lps_of_ras(points: np.ndarray) -> np.ndarray:
    """World RAS mm -> patient LPS mm (and back: the map is its own inverse)."""
    return np.asarray(points, dtype=float).reshape(-1, 3) @ _LPS_RAS


@dataclasses.dataclass
class SeriesGrid:
    """One source series as the frames a SEG must align with.

    Attributes:
        channel: csvdnet's name of the series' sequence (``flair``, ``swi`` ...).
        datasets: Source images in frame order (headers only): the sorted single-frame images,
            or one multi-frame image.
        paths: Their files.
        positions: ``(F, 3)`` position of each frame's first pixel, LPS mm.
        row_dir: Direction of increasing column index (IOP[:3]).
        col_dir: Direction of increasing row index (IOP[3:]).
        spacing: ``(between rows, between columns)`` mm.
        shape: ``(frames, rows, columns)``.
    """

    channel: str
    datasets: list[Dataset]
    paths: list[Path]
    positions: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing: tuple[float, float]
    shape: tuple[int, int, int]

    @property
    def first(self) -> Dataset:
        return self.datasets[0]

    @property
    def series_uid(self) -> str:
        return str(self.first.SeriesInstanceUID)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    def pixel_coordinates(self, points_lps: np.ndarray) -> np.ndarray:
        """``(N, 3)`` fractional (frame, row, column) of LPS points; frame = the nearest plane."""
        rel = np.asarray(points_lps, float)[:, None, :] - self.positions[None]  # N, F, 3
        depth = rel @ self.normal
        frame = np.argmin(np.abs(depth), axis=1)
        pick = rel[np.arange(len(rel)), frame]
        row = pick @ self.col_dir / self.spacing[0]
        col = pick @ self.row_dir / self.spacing[1]
        return np.stack([frame, row, col], axis=1)

    def sample_labels(self, labels: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """Nearest-neighbour samples of a reference-grid label volume at this series' pixels.

        Args:
            labels: Integer volume on the reference grid (0 = background).
            affine: Its 4x4 voxel -> world RAS affine.

        Returns:
            ``(frames, rows, columns)`` labels (int32), 0 outside the reference grid.
        """
        frames, rows, cols = self.shape
        out = np.zeros(self.shape, dtype=np.int32)
        found = ndimage.find_objects((labels > 0).astype(np.int8))
        if not found:
            return out
        box = found[0]
        lo = np.array([s.start for s in box], float) - 0.5
        hi = np.array([s.stop for s in box], float) - 0.5
        inverse = np.linalg.inv(np.asarray(affine, float))
        to_voxel = inverse[:3, :3] @ _LPS_RAS  # LPS -> reference voxel
        a = to_voxel @ (self.row_dir * self.spacing[1])  # per column
        b = to_voxel @ (self.col_dir * self.spacing[0])  # per row
        corners = np.array([[i, j, k] for i in (lo[0], hi[0]) for j in (lo[1], hi[1])
                            for k in (lo[2], hi[2])])
        corners_lps = (np.asarray(affine, float)[:3, :3] @ corners.T).T + affine[:3, 3]
        corners_lps = lps_of_ras(corners_lps)
        reach = (np.abs(self.spacing[0]) + np.abs(self.spacing[1]))  # margin of a pixel
        shape = np.array(labels.shape)
        for f in range(frames):
            rel = corners_lps - self.positions[f]
            depth = rel @ self.normal
            if depth.min() > reach or depth.max() < -reach:
                continue  # this plane misses the findings' box
            # Only the pixels whose centres can fall in the box: its projection on the plane
            along_r = rel @ self.col_dir / self.spacing[0]
            along_c = rel @ self.row_dir / self.spacing[1]
            r0 = max(int(np.floor(along_r.min())) - 1, 0)
            r1 = min(int(np.ceil(along_r.max())) + 2, rows)
            c0 = max(int(np.floor(along_c.min())) - 1, 0)
            c1 = min(int(np.ceil(along_c.max())) + 2, cols)
            if r0 >= r1 or c0 >= c1:
                continue
            r = np.arange(r0, r1, dtype=float)[:, None, None]
            c = np.arange(c0, c1, dtype=float)[None, :, None]
            origin = to_voxel @ self.positions[f] + inverse[:3, 3]
            index = np.rint(r * b + c * a + origin).astype(np.int64)
            inside = np.all((index >= 0) & (index < shape), axis=2)
            if not inside.any():
                continue
            i, j, k = (index[..., n][inside] for n in range(3))
            out[f, r0:r1, c0:c1][inside] = labels[i, j, k]
        return out

    def spheres(self, points_lps: np.ndarray, radius: float) -> np.ndarray:
        """Balls of ``radius`` mm about each point, with at least the pixel nearest each centre.

        Returns:
            ``(frames, rows, columns)`` bool; points outside the series draw nothing.
        """
        out = np.zeros(self.shape, dtype=bool)
        frames, rows, cols = self.shape
        dr, dc = self.spacing
        for point in np.asarray(points_lps, float).reshape(-1, 3):
            rel = point[None] - self.positions
            depth = rel @ self.normal
            for f in np.flatnonzero(np.abs(depth) <= radius):
                rho2 = radius ** 2 - depth[f] ** 2
                r0 = rel[f] @ self.col_dir / dr
                c0 = rel[f] @ self.row_dir / dc
                half_r, half_c = np.sqrt(rho2) / dr, np.sqrt(rho2) / dc
                r_lo = max(int(np.ceil(r0 - half_r)), 0)
                r_hi = min(int(np.floor(r0 + half_r)), rows - 1)
                c_lo = max(int(np.ceil(c0 - half_c)), 0)
                c_hi = min(int(np.floor(c0 + half_c)), cols - 1)
                if r_lo > r_hi or c_lo > c_hi:
                    continue
                rr = (np.arange(r_lo, r_hi + 1)[:, None] - r0) * dr
                cc = (np.arange(c_lo, c_hi + 1)[None, :] - c0) * dc
                out[f, r_lo:r_hi + 1, c_lo:c_hi + 1] |= rr ** 2 + cc ** 2 <= rho2
            f, r, c = self.pixel_coordinates(point[None])[0]
            f, r, c = int(f), int(np.rint(r)), int(np.rint(c))
            on_plane = abs(depth[f]) <= self._half_gap(f)
            if on_plane and 0 <= r < rows and 0 <= c < cols:
                out[f, r, c] = True
        return out

    def _half_gap(self, f: int) -> float:
        """Half the distance to the nearest other frame (the slab frame ``f`` stands for)."""
        if len(self.positions) == 1:
            return 0.5 * max(self.spacing)
        depth = (self.positions - self.positions[f]) @ self.normal
        others = np.abs(np.delete(depth, f))
        return 0.5 * float(others.min()) + 1e-6


def _floats(ds: Dataset, path: Path, name: str, count: int, source: Dataset | None = None
            ) -> np.ndarray:
    value = getattr(source if source is not None else ds, name, None)
    try:
        array = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.shape != (count,) or not np.all(np.isfinite(array)):
        raise CsvdnetInputError(path, f"no usable {name} ({value!r}): the image cannot be placed")
    return array


def _functional(ds: Dataset, frame: int, sequence: str, path: Path) -> Dataset:
    """The functional group item ``sequence`` of one frame (per-frame, else shared)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for item in ([per_frame[frame]] if frame < len(per_frame) else []) + list(shared[:1]):
        if sequence in item and len(item[sequence].value):
            return item[sequence].value[0]
    raise CsvdnetInputError(path, f"frame {frame + 1} has no {sequence}: it cannot be placed")


def _multiframe(channel: str, ds: Dataset, path: Path) -> SeriesGrid:
    frames = int(ds.NumberOfFrames)
    orientation = _floats(ds, path, "ImageOrientationPatient", 6,
                          _functional(ds, 0, "PlaneOrientationSequence", path))
    spacing = _floats(ds, path, "PixelSpacing", 2,
                      _functional(ds, 0, "PixelMeasuresSequence", path))
    positions = []
    for f in range(frames):
        other = _floats(ds, path, "ImageOrientationPatient", 6,
                        _functional(ds, f, "PlaneOrientationSequence", path))
        if np.abs(other - orientation).max() > _TOL:
            raise CsvdnetInputError(path, f"frame {f + 1} is oriented unlike frame 1")
        positions.append(_floats(ds, path, "ImagePositionPatient", 3,
                                 _functional(ds, f, "PlanePositionSequence", path)))
    return SeriesGrid(channel, [ds], [path], np.array(positions), orientation[:3], orientation[3:],
                      (float(spacing[0]), float(spacing[1])),
                      (frames, int(ds.Rows), int(ds.Columns)))


def read_series(channel: str, paths: Sequence[Path]) -> SeriesGrid:
    """Read and check one source series' headers.

    Raises:
        CsvdnetInputError: naming the file, for an unreadable file, an image from another series
            or study, images of different orientation, pixel spacing, size or frame of
            reference, two images at one position, or no usable geometry.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise CsvdnetInputError(channel, "no DICOM files given for this series")
    datasets = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception as error:  # pydicom raises several types for a bad file
            raise CsvdnetInputError(path, f"not a readable DICOM file ({error})") from None
    first = datasets[0]
    for key in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID", "Rows", "Columns"):
        if key not in first:
            raise CsvdnetInputError(paths[0], f"has no {key}: it cannot be a source image")
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        if len(datasets) > 1:
            raise CsvdnetInputError(paths[1], "a multi-frame series must be one file")
        return _multiframe(channel, first, paths[0])
    orientation = _floats(first, paths[0], "ImageOrientationPatient", 6)
    spacing = _floats(first, paths[0], "PixelSpacing", 2)
    positions = []
    for ds, path in zip(datasets, paths):
        for key in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID", "Rows",
                    "Columns"):
            if ds.get(key) != first.get(key):
                raise CsvdnetInputError(path, f"{key} {ds.get(key)} differs from {paths[0].name}'s "
                                        f"{first.get(key)}: not one series grid")
        if np.abs(_floats(ds, path, "ImageOrientationPatient", 6) - orientation).max() > _TOL:
            raise CsvdnetInputError(path, f"oriented unlike {paths[0].name}: inconsistent geometry")
        if np.abs(_floats(ds, path, "PixelSpacing", 2) - spacing).max() > _TOL:
            raise CsvdnetInputError(path, f"pixel spacing unlike {paths[0].name}'s: inconsistent "
                                    "geometry")
        positions.append(_floats(ds, path, "ImagePositionPatient", 3))
    positions = np.array(positions)
    normal = np.cross(orientation[:3], orientation[3:])
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    gaps = np.diff(depth[order])
    if np.any(gaps < _TOL):
        k = int(np.flatnonzero(gaps < _TOL)[0])
        raise CsvdnetInputError(paths[order[k + 1]], f"at the same position as "
                                f"{paths[order[k]].name}: not one image per slice")
    return SeriesGrid(channel, [datasets[i] for i in order], [paths[i] for i in order],
                      positions[order], orientation[:3], orientation[3:],
                      (float(spacing[0]), float(spacing[1])),
                      (len(datasets), int(first.Rows), int(first.Columns)))
