"""A PNG montage of a subject: the five sequences at a few axial levels, markers outlined.

Works on any subject folder in the cohort layout (synthetic or not): every sequence is sampled
through its own affine on common axial planes of the reference scanner frame, so grids,
orientations and voxel sizes may all differ. A synthetic subject's head motion between
sequences (``synth.json``) is undone, so small markers line up on every sequence; other
subjects are shown as scanned. The axial levels: the slices of the region map richest in basal
ganglia, ventricles and centrum semiovale, the slices richest in WMH, lacune and RSSI voxels and
the first microbleed's level; evenly spaced levels fill in when labels are missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import ndimage

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.atlas import REGION_CODES
from csvdnet.fsutil import atomic_path
from csvdnet.io import Image, Ratings, load_nifti, read_cohort, read_points
from csvdnet.slices import MARKER_COLOURS, slice_levels
from csvdnet.synth.geometry import box_corners

__all__ = ["write_preview"]

_PIXEL_MM = 1.0
_MARGIN_MM = 8.0
_MASK_STYLE = {"wmh": (MARKER_COLOURS["wmh"], "WMH"),
               "lacune": (MARKER_COLOURS["lacune"], "lacune"),
               "rssi": (MARKER_COLOURS["rssi"], "RSSI")}
# Hollow circles (colour, marker area in points^2, label), so the dot under them stays visible.
_POINT_STYLE = {"cmb": (MARKER_COLOURS["cmb"], 70, "microbleed"),
                "epvs": (MARKER_COLOURS["epvs"], 14, "EPVS")}
_LEVEL_REGIONS = ("basal_ganglia", "ventricles", "centrum_semiovale")
# Points are shown on a plane when their centre is this close: EPVS run through several slices.
_POINT_SLAB_MM = 3.0


def write_preview(subject_dir: str | os.PathLike, png_path: str | os.PathLike) -> Path:
    """Write a PNG montage of a subject's sequences with its markers overlaid.

    Args:
        subject_dir: A subject folder of a cohort (``<sequence>.nii[.gz]`` and ``labels/``).
        png_path: Destination PNG.

    Returns:
        ``png_path`` as a Path.

    Raises:
        CsvdnetInputError: The folder is not a readable subject.
    """
    subject_dir = Path(subject_dir)
    cohort = read_cohort(subject_dir.parent)
    subject = cohort[subject_dir.name]
    images = {name: load_nifti(path) for name, path in subject.sequences.items()}
    reference = images[cohort.reference]
    masks = {name: load_nifti(subject.labels[name], kind="mask") for name in _MASK_STYLE
             if name in subject.labels}
    points = {name: read_points(subject.labels[name]) for name in _POINT_STYLE
              if name in subject.labels}
    labels = subject.labels
    regions = load_nifti(labels["regions"], kind="labelmap") if "regions" in labels else None
    brain = load_nifti(labels["brain_mask"], kind="mask") if "brain_mask" in labels else None

    if brain is not None:
        lo, hi = _world_box(brain, brain.data > 0.5)
    else:  # the brighter part of the reference: the head, roughly
        lo, hi = _world_box(reference, reference.data > np.percentile(reference.data, 60))
    xs = np.arange(lo[0] - _MARGIN_MM, hi[0] + _MARGIN_MM, _PIXEL_MM)
    ys = np.arange(lo[1] - _MARGIN_MM, hi[1] + _MARGIN_MM, _PIXEL_MM)
    levels = _levels(reference, regions, masks, points.get("cmb", np.zeros((0, 3))), lo[2], hi[2])

    motion = _sequence_transforms(subject_dir)
    panels = {name: np.stack([_plane(image, xs, ys, z, transform=motion.get(name)) for z in levels])
              for name, image in images.items()}
    in_brain = (None if brain is None
                else np.stack([_plane(brain, xs, ys, z, order=0) for z in levels]) > 0.5)
    names = sorted(panels, key=lambda n: (DEFAULT_SEQUENCES + (n,)).index(n))

    figure = Figure(figsize=(2.4 * len(names), 2.4 * len(levels) * len(ys) / len(xs) + 0.9),
                    facecolor="black")
    axes = figure.subplots(len(levels), len(names), squeeze=False,
                           gridspec_kw=dict(wspace=0.02, hspace=0.02, left=0.01, right=0.99,
                                            top=0.93, bottom=0.06))
    for column, name in enumerate(names):
        stack = panels[name]
        inside = stack[in_brain] if in_brain is not None and in_brain.any() else stack[stack > 0]
        vmin, vmax = np.percentile(inside, [0.5, 99.5]) if inside.size else (0.0, 1.0)
        for row, z in enumerate(levels):
            ax = axes[row, column]
            ax.imshow(stack[row].T, origin="lower", cmap="gray", vmin=vmin, vmax=vmax * 1.1,
                      extent=(xs[0], xs[-1], ys[0], ys[-1]), interpolation="bilinear")
            _overlay(ax, masks, points, xs, ys, z)
            ax.set_xlim(xs[-1], xs[0])  # radiological convention: patient's right on the left
            ax.set_ylim(ys[0], ys[-1])
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name.upper(), color="white", fontsize=11, pad=3)
            if column == 0:
                ax.text(0.02, 0.02, f"z = {z:.0f} mm", color="white", fontsize=7,
                        transform=ax.transAxes)
    handles = ([Line2D([], [], color=c, lw=1.5, label=label)
                for n, (c, label) in _MASK_STYLE.items() if n in masks]
               + [Line2D([], [], color=c, marker="o", ls="", markerfacecolor="none", label=label)
                  for n, (c, _, label) in _POINT_STYLE.items() if n in points])
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
                      labelcolor="white", fontsize=9)
    figure.suptitle(_title(subject_dir.name, subject.ratings), color="white", fontsize=10)
    png_path = Path(png_path)
    with atomic_path(png_path, suffix=".png") as tmp:
        FigureCanvasAgg(figure).print_png(str(tmp))
    return png_path


def _overlay(ax: Axes, masks: dict[str, Image], points: dict[str, np.ndarray], xs: np.ndarray,
             ys: np.ndarray, z: float) -> None:
    """Outline the masks and circle the points on the axial plane ``z``."""
    for name, mask in masks.items():
        plane = _plane(mask, xs, ys, z, order=0)
        if plane.any():
            ax.contour(xs, ys, plane.T, levels=[0.5], colors=_MASK_STYLE[name][0], linewidths=0.7)
    for name, world in points.items():
        near = world[np.abs(world[:, 2] - z) <= _POINT_SLAB_MM] if len(world) else world
        if len(near):
            colour, size, _ = _POINT_STYLE[name]
            ax.scatter(near[:, 0], near[:, 1], s=size, marker="o", facecolors="none",
                       edgecolors=colour, linewidths=0.7)


def _title(subject: str, ratings: Ratings | None) -> str:
    if ratings is None:
        return subject
    return (f"{subject}   Fazekas PV {ratings.fazekas_pv} / deep {ratings.fazekas_deep}   "
            f"BG-EPVS grade {ratings.epvs_bg_grade}   CMB {ratings.cmb_count}   "
            f"lacunes {ratings.lacune_count}   RSSI {ratings.rssi_count}   "
            f"SVD score {ratings.total_score}   (L on the right)")


def _world_box(image: Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    voxels = np.argwhere(mask)
    if voxels.size == 0:
        voxels = np.array([[0, 0, 0], np.array(image.shape) - 1])
    corners = box_corners(voxels.min(axis=0), voxels.max(axis=0))
    world = corners @ image.affine[:3, :3].T + image.affine[:3, 3]
    return world.min(axis=0), world.max(axis=0)


def _levels(reference: Image, regions: Image | None, masks: dict[str, Image],
            microbleeds: np.ndarray, z_lo: float, z_hi: float) -> list[float]:
    """Axial levels (world z) to show, inferior to superior.

    The slices of the region map richest in basal ganglia, ventricles and centrum semiovale,
    the slices richest in WMH, lacune and RSSI voxels, and the level of the first microbleed.
    """
    def busiest(volume: Image, values: list[float]) -> float | None:
        z, axis = slice_levels(volume.affine, volume.shape)
        counts = np.isin(volume.data, values).sum(axis=tuple(a for a in range(3) if a != axis))
        return float(z[np.argmax(counts)]) if counts.max() > 0 else None

    levels = []
    if regions is not None:
        levels = [busiest(regions, [REGION_CODES[name]]) for name in _LEVEL_REGIONS]
    levels += [busiest(mask, [1.0]) for mask in masks.values()]
    if len(microbleeds):
        levels.append(float(microbleeds[0, 2]))
    levels = [z for z in levels if z is not None]
    if len(levels) < 3:
        levels += list(np.linspace(z_lo, z_hi, 6)[1:-1])
    merged: list[float] = []
    for z in sorted(levels):  # levels closer than 6 mm show the same anatomy
        if not merged or z - merged[-1] >= 6.0:
            merged.append(z)
    return merged


def _sequence_transforms(subject_dir: Path) -> dict[str, np.ndarray]:
    """Reference -> sequence world motion of a synthetic subject (``synth.json``), else none."""
    record = subject_dir / "synth.json"
    if not record.is_file():
        return {}
    transforms = json.loads(record.read_text(encoding="utf-8")).get("sequence_transforms", {})
    return {name: np.asarray(matrix, dtype=np.float64) for name, matrix in transforms.items()}


def _plane(image: Image, xs: np.ndarray, ys: np.ndarray, z: float, order: int = 1,
           transform: np.ndarray | None = None) -> np.ndarray:
    """The image on the axial world plane ``z`` over the pixel centres ``xs`` x ``ys``.

    ``transform`` maps the reference world to the image's world (head motion between scans).
    """
    world = np.stack(np.meshgrid(xs, ys, [z], indexing="ij"), axis=0).reshape(3, -1)
    inverse = np.linalg.inv(image.affine) @ (np.eye(4) if transform is None else transform)
    voxels = inverse[:3, :3] @ world + inverse[:3, 3:]
    plane = ndimage.map_coordinates(image.data, voxels, order=order, mode="constant", cval=0.0)
    return plane.reshape(len(xs), len(ys))
