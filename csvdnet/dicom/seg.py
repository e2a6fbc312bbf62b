"""DICOM Segmentation objects (BINARY) of csvdnet's findings, one per source series grid.

Each marker goes on the series of the sequence it is read on (:data:`codes.MARKERS`: WMH and
lacunes on the FLAIR, RSSI on the DWI, microbleeds on the SWI, EPVS on the T2), else on the next
present one, the FLAIR last. Masks are carried from the reference (FLAIR) grid to the series'
own pixels by nearest neighbour; a lesion that no pixel centre of a coarser series falls in keeps
the pixel nearest its centroid, so no counted lesion vanishes from the SEG. Points (CMB, EPVS)
are drawn as balls about their world positions directly on the series' grid. Frames are the
source images' frames (empty ones omitted), so every viewer overlays them without resampling.
"""

from __future__ import annotations

import dataclasses

import highdicom as hd
import numpy as np
from scipy import ndimage

from csvdnet.dicom.codes import CATEGORY, MARKERS, MarkerCoding, private_scheme_item
from csvdnet.dicom.geometry import SeriesGrid, lps_of_ras
from csvdnet.dicom.provenance import Provenance

__all__ = ["SEG_SERIES", "SegPlan", "build_seg", "mask_on_grid", "plan_segs"]

SEG_SERIES = {"wmh": (9901, "csvdnet WMH+lacunes"), "lacune": (9901, "csvdnet WMH+lacunes"),
              "rssi": (9902, "csvdnet RSSI"), "cmb": (9903, "csvdnet microbleeds"),
              "epvs": (9904, "csvdnet EPVS")}
"""SeriesNumber and SeriesDescription by the first marker of a SEG (stable across runs)."""
_NAMES = {"wmh": "WMH", "lacune": "lacunes", "rssi": "RSSI", "cmb": "microbleeds", "epvs": "EPVS"}


@dataclasses.dataclass(frozen=True)
class SegPlan:
    """One SEG to write: the channel whose series it goes on and its markers, in order."""

    channel: str
    markers: tuple[MarkerCoding, ...]

    @property
    def series_number(self) -> int:
        return SEG_SERIES[self.markers[0].task][0]

    @property
    def description(self) -> str:
        if [m.task for m in self.markers] == ["wmh", "lacune"]:
            return SEG_SERIES["wmh"][1]
        return "csvdnet " + "+".join(_NAMES[m.task] for m in self.markers)


def plan_segs(channels: set[str], tasks: set[str]) -> list[SegPlan]:
    """Which SEG each predicted marker goes in, given the channels with a source series.

    Raises:
        ValueError: if a marker has none of its target channels (the FLAIR is always given).
    """
    groups: dict[str, list[MarkerCoding]] = {}
    for marker in MARKERS:
        if marker.task not in tasks:
            continue
        target = next((c for c in marker.targets if c in channels), None)
        if target is None:
            raise ValueError(f"no source series for {marker.task} (needs one of "
                             f"{', '.join(marker.targets)})")
        groups.setdefault(target, []).append(marker)
    return sorted((SegPlan(c, tuple(m)) for c, m in groups.items()),
                  key=lambda p: p.series_number)


def mask_on_grid(grid: SeriesGrid, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A reference-grid mask on the series' pixels (nearest neighbour, no lesion lost).

    Returns:
        ``(frames, rows, columns)`` bool.
    """
    labels, count = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3, 3)))
    sampled = grid.sample_labels(labels, affine)
    out = sampled > 0
    present = np.zeros(count + 1, dtype=bool)
    present[sampled[out]] = True
    missing = np.flatnonzero(~present[1:]) + 1
    if missing.size:
        centres = np.array(ndimage.center_of_mass(labels > 0, labels, missing)).reshape(-1, 3)
        world = centres @ np.asarray(affine, float)[:3, :3].T + np.asarray(affine, float)[:3, 3]
        pixels = grid.pixel_coordinates(lps_of_ras(world))
        lps = lps_of_ras(world)
        for (f, r, c), point in zip(pixels, lps):
            f, r, c = int(f), int(np.rint(r)), int(np.rint(c))
            depth = abs(float((point - grid.positions[f]) @ grid.normal))
            if (0 <= r < grid.shape[1] and 0 <= c < grid.shape[2]
                    and depth <= grid._half_gap(f)):
                out[f, r, c] = True
    return out


def _colour(hex_colour: str) -> hd.color.CIELabColor:
    """The HTML report's colour of a marker as a segment's display colour."""
    return hd.color.CIELabColor.from_rgb(*(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)))


def build_seg(plan: SegPlan, grid: SeriesGrid, arrays: dict[str, np.ndarray],
              provenance: Provenance) -> hd.seg.Segmentation:
    """The SEG of one plan on its series.

    Args:
        plan: Which markers, on which channel.
        grid: That channel's source series.
        arrays: Task -> ``(frames, rows, columns)`` bool on ``grid`` (from :func:`mask_on_grid`
            or :meth:`SeriesGrid.spheres`).
        provenance: Model, study, time.
    """
    stack = np.stack([arrays[m.task] for m in plan.markers], axis=-1).astype(np.uint8)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=m.label, segmented_property_category=CATEGORY,
            segmented_property_type=m.type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=provenance.algorithm,
            tracking_id=f"csvdnet {m.task}",
            tracking_uid=provenance.series_uid(f"track-{m.task}", grid.series_uid),
            display_color=_colour(m.colour))
        for n, m in enumerate(plan.markers, start=1)]
    series_uid = provenance.series_uid(f"seg-{plan.channel}", grid.series_uid)
    content = b"".join([np.packbits(stack).tobytes(), repr(stack.shape).encode(),
                        "|".join(m.task for m in plan.markers).encode()])
    return hd.seg.Segmentation(
        source_images=grid.datasets, pixel_array=stack,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        # A SEG with nothing found keeps every frame (highdicom would otherwise warn and do so
        # itself): a reader sees an empty segment, not a missing object.
        omit_empty_frames=bool(stack.any()),
        segment_descriptions=descriptions, series_instance_uid=series_uid,
        series_number=plan.series_number,
        sop_instance_uid=provenance.instance_uid(series_uid, content),
        instance_number=1, series_description=plan.description,
        content_label="CSVDNET", content_description=plan.description[:64],
        coding_schemes=[private_scheme_item()],
        **provenance.equipment, **provenance.dates)
