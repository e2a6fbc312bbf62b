"""Pictures of a prediction report: axial panels with findings outlined, and QC overlays.

Panels are composed in numpy on the reference grid (no resampling beyond an integer zoom for
small grids), outlines are the boundary pixels of each mask, points are rings: a 1 mm brain's
whole picture set takes a fraction of a second, which a 10 s-per-subject budget needs, and an
outline lands exactly on the voxels it outlines. PNG encoding goes through matplotlib's image
writer (Agg's Pillow backend).
"""

from __future__ import annotations

import base64
import dataclasses
import io

import matplotlib

matplotlib.use("Agg")  # pictures are written to files; never open a window

import numpy as np  # noqa: E402
from matplotlib import colormaps, colors, image  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.feature import canny  # noqa: E402

from csvdnet.atlas import REGION_CODES  # noqa: E402
from csvdnet.inference.result import Finding, SubjectResult  # noqa: E402
from csvdnet.slices import MARKER_COLOURS, AxialView  # noqa: E402

__all__ = ["MASK_MARKERS", "POINT_MARKERS", "REGION_COLOURS", "Canvas", "montage_slices",
           "png_data_uri", "qc_slices"]

MASK_MARKERS = ("wmh", "rssi", "lacune")
"""Markers drawn as outlines of their masks."""
POINT_MARKERS = ("cmb", "epvs")
"""Markers drawn as rings around their centres."""
# Ring radius (display pixels) per point marker: microbleeds bigger, they are rarer and matter more.
_RING_PX = {"cmb": 6.0, "epvs": 3.5}
# A point is drawn on a slice when its centre is this close (mm) or on the nearest slice.
_POINT_SLAB_MM = 3.0
_MARGIN_VOXELS = 3
_TARGET_PX = 220  # panel size the zoom aims at (longer side)
_MASK_QC_COLOUR = "#00e5ff"
_EDGE_COLOUR = "#ff3df5"

REGION_COLOURS: dict[str, str] = {
    name: colors.to_hex(colormaps["tab10"](i % 10))
    for i, name in enumerate(n for n in REGION_CODES if n != "background")}
"""Colour of each atlas region in the QC picture."""


@dataclasses.dataclass(frozen=True)
class Canvas:
    """The picture frame of one subject: view, crop of the brain and integer zoom.

    Attributes:
        view: How the reference grid is laid out axially.
        shape: Reference grid shape.
        crop: ``(row0, row1, col0, col1)`` of the (unzoomed) slice picture that is shown.
        zoom: Display pixels per voxel along rows and columns.
    """

    view: AxialView
    shape: tuple[int, int, int]
    crop: tuple[int, int, int, int]
    zoom: tuple[int, int]

    @classmethod
    def of(cls, result: SubjectResult) -> Canvas:
        """The frame of ``result``: its brain's bounding box, zoomed to about 220 pixels."""
        view = AxialView.of(result.affine)
        shape = tuple(int(n) for n in result.shape)
        brain = np.asarray(result.brain_mask, dtype=bool)
        footprint = brain.any(axis=view.axis) if brain.any() else np.ones(
            [n for a, n in enumerate(shape) if a != view.axis], dtype=bool)
        # The footprint of the brain in picture layout: slice of a 3-D stack with one slice.
        picture = view.panel(np.expand_dims(footprint, view.axis), 0)
        rows, cols = np.nonzero(picture)
        crop = (max(int(rows.min()) - _MARGIN_VOXELS, 0),
                min(int(rows.max()) + _MARGIN_VOXELS + 1, picture.shape[0]),
                max(int(cols.min()) - _MARGIN_VOXELS, 0),
                min(int(cols.max()) + _MARGIN_VOXELS + 1, picture.shape[1]))
        row_mm, col_mm, _ = view.spacing
        extent_mm = max((crop[1] - crop[0]) * row_mm, (crop[3] - crop[2]) * col_mm)
        # Zoom only up, by whole pixels: a 1 mm brain stays 1:1, a 3.5 mm test grid grows.
        base_mm = extent_mm / _TARGET_PX
        zoom = (max(1, round(row_mm / base_mm)), max(1, round(col_mm / base_mm)))
        return cls(view=view, shape=shape, crop=crop, zoom=zoom)

    def plane(self, volume: np.ndarray, index: int, smooth: bool = False) -> np.ndarray:
        """Slice ``index`` of ``volume``, cropped and zoomed.

        Masks and labels are zoomed by nearest neighbour (an outline stays on its voxels);
        images with ``smooth`` by linear interpolation (a coarse grid does not look blocky).
        """
        r0, r1, c0, c1 = self.crop
        plane = self.view.panel(volume, index)[r0:r1, c0:c1]
        if self.zoom == (1, 1):
            return plane
        if smooth:
            zoomed = ndimage.zoom(plane.astype(np.float32), self.zoom, order=1, mode="nearest",
                                  grid_mode=True)
            return zoomed[:plane.shape[0] * self.zoom[0], :plane.shape[1] * self.zoom[1]]
        return np.repeat(np.repeat(plane, self.zoom[0], axis=0), self.zoom[1], axis=1)

    def pixels(self, voxels: np.ndarray) -> np.ndarray:
        """Display ``(row, column)`` of the centres of voxel coordinates ``(N, 3)``."""
        picture = self.view.pixel(voxels, self.shape)
        offset = np.array([self.crop[0], self.crop[2]], dtype=np.float64)
        zoom = np.array(self.zoom, dtype=np.float64)
        return (picture - offset + 0.5) * zoom - 0.5

    def grey(self, volume: np.ndarray, index: int, window: tuple[float, float]) -> np.ndarray:
        """Slice ``index`` of an image as an RGB float picture in [0, 1], windowed."""
        lo, hi = window
        plane = np.clip((self.plane(volume, index, smooth=True) - lo) / max(hi - lo, 1e-6),
                        0.0, 1.0)
        return np.repeat(plane[..., None], 3, axis=2)


def window(volume: np.ndarray, brain: np.ndarray, indices: list[int], axis: int
           ) -> tuple[float, float]:
    """Grey window of a sequence: 0.5 and 99.5 percentiles in the brain on the shown slices."""
    where = (slice(None),) * axis + (list(indices),)  # only the shown slices are copied
    values = volume[where]
    inside = values[brain[where]] if brain.any() else values.ravel()
    if inside.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(inside, [0.5, 99.5])
    return float(lo), float(hi) * 1.1 if hi > lo else float(lo) + 1.0


def montage_slices(result: SubjectResult, n: int = 5) -> list[int]:
    """Reference-grid slice indices for the montage, inferior to superior.

    First the slice of the most confident finding of each marker, rarest markers first
    (a single microbleed or lacune must be seen, however many EPVS another slice has); then the
    slices holding the most finding centres. Slices are at least ~6 mm apart so each shows new
    anatomy; evenly spaced brain slices fill in when there are fewer findings.
    """
    view = AxialView.of(result.affine)
    depth = int(result.shape[view.axis])
    gap = max(1, round(6.0 / view.spacing[2]))

    def level(finding: Finding) -> int:
        return int(np.clip(round(finding.voxel[view.axis]), 0, depth - 1))

    counts = np.zeros(depth)
    for findings in result.findings.values():
        for finding in findings:
            counts[level(finding)] += 1
    by_rarity = sorted((f for f in result.findings.values() if f), key=len)
    candidates = [level(findings[0]) for findings in by_rarity]
    candidates += [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    candidates += qc_slices(result, n + 2)[1:-1]  # inner levels of the brain fill in
    chosen: list[int] = []
    for k in candidates:
        if len(chosen) == n:
            break
        if all(abs(k - c) >= gap for c in chosen):
            chosen.append(k)
    return _inferior_first(result, chosen)


def qc_slices(result: SubjectResult, n: int = 3) -> list[int]:
    """``n`` slices evenly spread through the brain (its axial extent), inferior first."""
    view = AxialView.of(result.affine)
    brain = np.asarray(result.brain_mask, dtype=bool)
    present = np.nonzero(brain.any(axis=tuple(a for a in range(3) if a != view.axis)))[0]
    lo, hi = (int(present[0]), int(present[-1])) if present.size else (
        0, int(result.shape[view.axis]) - 1)
    levels = np.linspace(lo, hi, n + 2)[1:-1]
    return _inferior_first(result, {int(round(k)) for k in levels})


def _inferior_first(result: SubjectResult, indices: set[int] | list[int]) -> list[int]:
    """Slice indices ordered from inferior to superior (the slice axis may point down)."""
    axis = AxialView.of(result.affine).axis
    return sorted(indices, reverse=bool(np.asarray(result.affine)[2, axis] < 0))


def paint_outline(rgb: np.ndarray, mask: np.ndarray, colour: str) -> None:
    """Colour the boundary pixels of a (display-size) mask in place."""
    if not mask.any():
        return
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    rgb[edge] = colors.to_rgb(colour)


def paint_rings(rgb: np.ndarray, centres: np.ndarray, radius: float, colour: str) -> None:
    """Draw hollow rings (about 1.5 px wide) around display-pixel centres, in place."""
    if len(centres) == 0:
        return
    reach = int(np.ceil(radius + 1))
    offsets = np.arange(-reach, reach + 1)
    dr, dc = np.meshgrid(offsets, offsets, indexing="ij")
    rgb_colour = colors.to_rgb(colour)
    for row, col in centres:
        r0, c0 = int(round(row)), int(round(col))
        distance = np.hypot(dr + r0 - row, dc + c0 - col)
        ring = np.abs(distance - radius) <= 0.75
        rows, cols = dr[ring] + r0, dc[ring] + c0
        keep = (rows >= 0) & (rows < rgb.shape[0]) & (cols >= 0) & (cols < rgb.shape[1])
        rgb[rows[keep], cols[keep]] = rgb_colour


def points_on_slice(canvas: Canvas, findings: list[Finding], index: int) -> np.ndarray:
    """Display pixels of the findings whose centre lies within the slab of slice ``index``."""
    axis = canvas.view.axis
    slab = max(_POINT_SLAB_MM / canvas.view.spacing[2], 0.5)
    near = [f.voxel for f in findings if abs(f.voxel[axis] - index) <= slab]
    return canvas.pixels(np.array(near)) if near else np.zeros((0, 2))


def findings_panel(result: SubjectResult, canvas: Canvas, sequence: str, index: int,
                   grey_window: tuple[float, float], overlays: bool = True) -> np.ndarray:
    """One montage panel: a sequence's slice with mask outlines and point rings (RGB floats)."""
    rgb = canvas.grey(result.sequences[sequence], index, grey_window)
    if not overlays:
        return rgb
    # Drawn from the most numerous to the rarest, so crowded EPVS rings never hide a lesion's
    # outline or a microbleed.
    for task in ("epvs", *MASK_MARKERS, "cmb"):
        if task in POINT_MARKERS and task in result.findings:
            paint_rings(rgb, points_on_slice(canvas, result.findings[task], index),
                        _RING_PX[task], MARKER_COLOURS[task])
        elif task in result.masks and task in MASK_MARKERS:
            paint_outline(rgb, canvas.plane(result.masks[task], index).astype(bool),
                          MARKER_COLOURS[task])
    return rgb


def brain_mask_panel(result: SubjectResult, canvas: Canvas, index: int,
                     grey_window: tuple[float, float]) -> np.ndarray:
    """QC: the brain mask's outline on the reference sequence."""
    rgb = canvas.grey(result.sequences[result.reference], index, grey_window)
    paint_outline(rgb, canvas.plane(result.brain_mask, index).astype(bool), _MASK_QC_COLOUR)
    return rgb


def coregistration_panel(result: SubjectResult, canvas: Canvas, sequence: str, index: int,
                         grey_window: tuple[float, float]) -> np.ndarray:
    """QC: edges of a registered sequence drawn over the reference sequence.

    Edges are found on the smoothly zoomed picture, so they are one display pixel wide and a
    coarse grid's staircase does not become edges.
    """
    rgb = canvas.grey(result.sequences[result.reference], index, grey_window)
    plane = canvas.plane(result.sequences[sequence], index, smooth=True).astype(np.float64)
    # The strongest edges near the brain: ventricles, cortex, skull base (background noise and
    # the scalp would hide the alignment that matters).
    near_brain = ndimage.binary_dilation(canvas.plane(result.brain_mask, index).astype(bool),
                                         iterations=2 * max(canvas.zoom))
    if np.ptp(plane) == 0 or not near_brain.any():
        return rgb
    sigma = 1.2 * float(np.mean(canvas.zoom))
    edges = canny(plane, sigma=sigma, low_threshold=0.80, high_threshold=0.92,
                  mask=near_brain, use_quantiles=True)
    rgb[edges] = colors.to_rgb(_EDGE_COLOUR)
    return rgb


def regions_panel(result: SubjectResult, canvas: Canvas, index: int,
                  grey_window: tuple[float, float], alpha: float = 0.45) -> np.ndarray:
    """QC: the region atlas blended over the reference sequence."""
    rgb = canvas.grey(result.sequences[result.reference], index, grey_window)
    plane = canvas.plane(result.regions, index)
    for name, colour in REGION_COLOURS.items():
        where = plane == REGION_CODES[name]
        if where.any():
            rgb[where] = (1 - alpha) * rgb[where] + alpha * np.array(colors.to_rgb(colour))
    return rgb


def png_data_uri(rgb: np.ndarray) -> str:
    """An RGB float picture as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    image.imsave(buffer, np.clip(rgb, 0.0, 1.0), format="png",
                 pil_kwargs={"compress_level": 1})  # fast; PNG stays lossless
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
