"""From lesion masks, points and a region map to the quantities the rule sets rate.

:func:`measure` returns a :class:`csvdnet.scoring.Measurements` (what the rule sets score) and a
dict of further quantities (volumes, counts by region, the WMH features behind the Fazekas
grades). Everything is measured on the reference grid, in world mm.

WMH: periventricular vs deep, and the Fazekas grades
----------------------------------------------------
Distances to the ventricles are Euclidean, in mm, from the region map's ``ventricles``
(:func:`ventricle_distance`). The periventricular band is
:data:`csvdnet.atlas.PERIVENTRICULAR_MM` (10 mm) wide. A 26-connected WMH component is
**periventricular** when it has a voxel in the white matter lining of the ventricles (within
:data:`LINING_MM`) or lies wholly inside the band (a piece of a cap or halo cut off on the
reference grid); all its voxels are then periventricular, including fingers reaching beyond the
band (that reach is what Fazekas PV 3 means). Every other component is **deep**.
``wmh_periventricular_ml`` / ``wmh_deep_ml`` split the WMH volume that way.

The features (:class:`csvdnet.scoring.WmhFeatures`, computed by :func:`wmh_features`) follow how
the synthetic cohort plants each grade (:mod:`csvdnet.synth.lesions`) and what the grades mean
(Fazekas et al. 1987):

- PV 0: no periventricular WMH (``pv_ml``);
- PV 1, caps at the frontal / occipital horns, with or without a pencil-thin lining: they cover
  a small part of the white matter lining (``pv_lining_fraction`` 0.02-0.21 on the synthetic
  cohort);
- PV 2, a smooth halo: most of the lining is covered (0.31-0.67: less with registered region
  maps, whose ventricles miss the subject's by a few mm, and lining the halo misses at the
  reference grid's slice spacing) and the lesion stays inside the band;
- PV 3, irregular extension into the deep WM: the periventricular lesion reaches past the band
  (``pv_reach_mm``, the 99th percentile of its distances to the ventricles: 14-35 mm vs <= 7.5
  mm for a halo);
- deep 0: no deep component;
- deep 1, punctate foci: separate small deep components (``deep_largest_ml`` <= 0.1 ml);
- deep 2, beginning confluence: clusters of merging foci (largest 0.15-0.45 ml);
- deep 3, large confluent areas (largest >= 1.5 ml).

Known confusions: a deep confluent area that merges with a periventricular halo makes it read
as PV 3 (its reach), and a PV 3 finger cut off beyond the band counts as a deep lesion. The
grades are :func:`csvdnet.scoring.fazekas_pv_from` / :func:`~csvdnet.scoring.fazekas_deep_from`;
their thresholds were calibrated on the true WMH labels of one synthetic cohort and checked on
another (``benchmarks/bench_regions.py``, confusion matrices in ``benchmarks/RESULTS.md``). On
real data the region map comes from an affine template registration: enlarged ventricles move
the true lining a few mm off the atlas's, which the 3 mm lining and the 12 mm reach tolerate
only in part.

Other markers
-------------
- EPVS: basal ganglia and centrum semiovale counts by the rating convention (one side, the axial
  slice with the most: :func:`csvdnet.scoring.max_side_slice_count`).
- CMB: lobar (:data:`csvdnet.atlas.LOBAR_REGIONS`), deep (:data:`~csvdnet.atlas.DEEP_REGIONS`),
  infratentorial. A point in CSF, a ventricle or outside the brain (a microbleed at the cortical
  surface, or a region map a few mm off) takes the most common tissue region within
  :data:`POINT_SEARCH_MM`; with none there, sulcal CSF and background count as lobar and the
  ventricles as deep.
- Lacunes, RSSI: 26-connected components (the VALDO / WMH challenge convention), count and volume.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

from csvdnet.atlas import (DEEP_REGIONS, LOBAR_REGIONS, PERIVENTRICULAR_MM, REGION_CODES,
                           REGION_NAMES)
from csvdnet.inference.postprocess import per_label
from csvdnet.scoring import (NON_TISSUE_REGIONS, POINT_SEARCH_MM, Measurements, WmhFeatures,
                             fazekas_deep_from, fazekas_pv_from, max_side_slice_count)

__all__ = ["LINING_MM", "POINT_SEARCH_MM", "measure", "ventricle_distance", "wmh_features"]

LINING_MM = 3.0
"""Tissue this close to the ventricles is the ventricle lining (a pencil-thin lining is ~1 mm;
3 mm is one reference slice of a 2-D FLAIR)."""

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connected
_NOT_TISSUE = NON_TISSUE_REGIONS
_INFRATENTORIAL = (REGION_CODES["infratentorial"],)
# Distances past this are never used (the band and its PV 3 fingers are within ~30 mm).
_DISTANCE_CAP_MM = 40.0


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.asarray(affine, dtype=np.float64)[:3, :3] ** 2, axis=0))


def ventricle_distance(regions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) of every voxel to the nearest ventricle voxel, capped at 40 mm.

    Computed in the ventricles' bounding box grown by the cap (all that the cap lets matter).

    Args:
        regions: Region map on the reference grid.
        affine: Its voxel -> world affine (for the voxel size).

    Returns:
        float32 distances, 0 inside the ventricles; the cap everywhere when there are none.
    """
    spacing = _spacing(affine)
    distance = np.full(regions.shape, _DISTANCE_CAP_MM, dtype=np.float32)
    ventricles = regions == REGION_CODES["ventricles"]
    where = np.argwhere(ventricles)
    if where.size == 0:
        return distance
    margin = np.ceil(_DISTANCE_CAP_MM / spacing).astype(int)
    lo = np.maximum(where.min(axis=0) - margin, 0)
    hi = np.minimum(where.max(axis=0) + margin + 1, regions.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    distance[box] = np.minimum(ndimage.distance_transform_edt(~ventricles[box], sampling=spacing),
                               _DISTANCE_CAP_MM)
    return distance


def _split_wmh(wmh: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(periventricular mask, deep component labels, deep component count) of a WMH mask.

    A component is periventricular when it touches the lining or lies wholly inside the band
    (a piece of cap or halo cut off on the reference grid); deep otherwise.
    """
    labels, n = ndimage.label(wmh, structure=_CONNECTIVITY)
    if n == 0:
        return np.zeros(wmh.shape, dtype=bool), labels, 0
    nearest = per_label(ndimage.minimum, distance, labels, n)
    farthest = per_label(ndimage.maximum, distance, labels, n)
    is_pv = np.concatenate([[False], (nearest <= LINING_MM) | (farthest <= PERIVENTRICULAR_MM)])
    periventricular = is_pv[labels]
    deep_labels = np.where(periventricular, 0, labels)
    return periventricular, deep_labels, int(np.count_nonzero(~is_pv[1:]))


def wmh_features(wmh: np.ndarray, regions: np.ndarray, affine: np.ndarray,
                 distance: np.ndarray | None = None) -> WmhFeatures:
    """The measured WMH features the Fazekas grades are read from (see the module docstring).

    Args:
        wmh: WMH mask on the reference grid.
        regions: Region map on the same grid.
        affine: Its voxel -> world affine.
        distance: :func:`ventricle_distance` of ``regions`` when already computed.

    Returns:
        The features.
    """
    wmh = np.asarray(wmh) > 0
    if distance is None:
        distance = ventricle_distance(regions, affine)
    voxel_ml = float(np.prod(_spacing(affine))) / 1000.0
    periventricular, deep_labels, deep_count = _split_wmh(wmh, distance)
    # The white matter lining: WMH are only ever white matter (Fazekas rates WM lesions).
    lining = (distance <= LINING_MM) & (regions == REGION_CODES["periventricular"])
    lining_voxels = int(np.count_nonzero(lining))
    covered = int(np.count_nonzero(lining & periventricular))
    deep_sizes = np.bincount(deep_labels.ravel())[1:] if deep_count else np.zeros(0)
    deep_sizes = deep_sizes[deep_sizes > 0]
    pv_distances = distance[periventricular]
    return WmhFeatures(
        total_ml=float(np.count_nonzero(wmh)) * voxel_ml,
        pv_ml=float(np.count_nonzero(periventricular)) * voxel_ml,
        pv_lining_fraction=covered / lining_voxels if lining_voxels else 0.0,
        pv_beyond_band_ml=float(np.count_nonzero(pv_distances > PERIVENTRICULAR_MM)) * voxel_ml,
        pv_reach_mm=float(np.percentile(pv_distances, 99)) if pv_distances.size else 0.0,
        deep_ml=float(deep_sizes.sum()) * voxel_ml,
        deep_count=int(len(deep_sizes)),
        deep_largest_ml=float(deep_sizes.max()) * voxel_ml if len(deep_sizes) else 0.0,
    )


def _component_volumes(mask: np.ndarray, voxel_ml: float) -> tuple[np.ndarray, np.ndarray]:
    """(26-connected labels, volume in ml of each component 1..n)."""
    labels, n = ndimage.label(np.asarray(mask) > 0, structure=_CONNECTIVITY)
    return labels, np.bincount(labels.ravel(), minlength=n + 1)[1:] * voxel_ml


def _majority_region(labels: np.ndarray, regions: np.ndarray, n: int) -> list[str]:
    """Most common region of each component's voxels (tissue first, as a rater would)."""
    names = []
    for index, box in enumerate(ndimage.find_objects(labels, max_label=n), start=1):
        codes = regions[box][labels[box] == index]
        tissue = codes[np.isin(codes, _NOT_TISSUE, invert=True)]
        codes = tissue if tissue.size else codes
        names.append(REGION_NAMES[int(np.bincount(codes).argmax())])
    return names


def _point_codes(world: np.ndarray, regions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Region code of each point; points outside tissue take the most common tissue code
    within :data:`POINT_SEARCH_MM` (when there is one)."""
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    voxels = np.rint(world @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
    shape = np.asarray(regions.shape)
    inside = np.all((voxels >= 0) & (voxels < shape), axis=1)
    codes = np.zeros(len(world), dtype=int)
    codes[inside] = regions[tuple(voxels[inside].T)]
    reach = np.floor(POINT_SEARCH_MM / _spacing(affine)).astype(int)
    for n, (voxel, code) in enumerate(zip(voxels, codes)):
        if code not in _NOT_TISSUE:
            continue
        lo, hi = np.maximum(voxel - reach, 0), np.minimum(voxel + reach + 1, shape)
        if np.any(hi <= lo):
            continue
        around = regions[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))].ravel()
        around = around[np.isin(around, _NOT_TISSUE, invert=True)]
        if around.size:
            codes[n] = int(np.bincount(around).argmax())
    return codes


def _cmb_counts(codes: np.ndarray) -> tuple[int, int, int]:
    """(lobar, deep, infratentorial) microbleeds from their region codes (see module docs)."""
    lobar = np.isin(codes, LOBAR_REGIONS + (REGION_CODES["csf"], REGION_CODES["background"]))
    deep = np.isin(codes, DEEP_REGIONS + (REGION_CODES["ventricles"],))
    infratentorial = np.isin(codes, _INFRATENTORIAL)
    return tuple(int(np.count_nonzero(where)) for where in (lobar, deep, infratentorial))


def measure(masks: Mapping[str, np.ndarray], points: Mapping[str, np.ndarray],
            point_sides: Mapping[str, Sequence[str]], regions: np.ndarray,
            affine: np.ndarray) -> tuple[Measurements, dict]:
    """Measure every marker of one subject (see the module docstring for the rules).

    A marker absent from ``masks`` / ``points`` is not measured: its fields stay ``None``.

    Args:
        masks: Boolean masks on the reference grid by task (``"wmh"``, ``"lacune"``,
            ``"rssi"``).
        points: (N, 3) world mm centres by task (``"cmb"``, ``"epvs"``).
        point_sides: ``"L"`` / ``"R"`` / ``"M"`` per point, by task (from
            :func:`csvdnet.inference.regions.region_and_side`).
        regions: Region map on the reference grid.
        affine: Its voxel -> world affine.

    Returns:
        (the rated :class:`~csvdnet.scoring.Measurements`, further quantities: ``wmh_volume_ml``,
        ``wmh_periventricular_ml``, ``wmh_deep_ml``, ``wmh_features`` (dict), ``lacune_volume_ml``,
        ``rssi_volume_ml``, per-lesion ``<task>_volumes_ml`` lists, and ``counts_by_region``:
        task -> region -> count, with ``"<region>/<side>"`` keys for points).
    """
    regions = np.asarray(regions)
    voxel_ml = float(np.prod(_spacing(affine))) / 1000.0
    fields: dict[str, int | None] = {}
    extras: dict = {"counts_by_region": {}}
    if "wmh" in masks:
        features = wmh_features(masks["wmh"], regions, affine)
        fields.update(fazekas_pv=fazekas_pv_from(features),
                      fazekas_deep=fazekas_deep_from(features))
        extras.update(wmh_volume_ml=features.total_ml, wmh_periventricular_ml=features.pv_ml,
                      wmh_deep_ml=features.deep_ml,
                      wmh_features={k: getattr(features, k)
                                    for k in features.__dataclass_fields__})
    for task in ("wmh", "lacune", "rssi"):
        if task not in masks:
            continue
        labels, volumes = _component_volumes(masks[task], voxel_ml)
        extras["counts_by_region"][task] = dict(Counter(
            _majority_region(labels, regions, len(volumes))))
        if task != "wmh":
            fields[f"{task}_count"] = int(len(volumes))
            extras[f"{task}_volume_ml"] = float(volumes.sum())
            extras[f"{task}_volumes_ml"] = [float(v) for v in volumes]
    for task in ("cmb", "epvs"):
        if task not in points:
            continue
        world = np.asarray(points[task], dtype=np.float64).reshape(-1, 3)
        sides = list(point_sides.get(task, ["M"] * len(world)))
        codes = _point_codes(world, regions, affine)
        extras["counts_by_region"][task] = dict(Counter(
            f"{REGION_NAMES[int(c)]}/{side}" for c, side in zip(codes, sides)))
        if task == "cmb":
            fields.update(zip(("cmb_lobar", "cmb_deep", "cmb_infratentorial"), _cmb_counts(codes)))
        else:
            # The rating convention counts on one side: midline points belong to neither.
            lateral = np.array([side != "M" for side in sides], dtype=bool)
            lateral_sides = [side for side in sides if side != "M"]
            fields.update({field: max_side_slice_count(world[lateral], lateral_sides, regions,
                                                       affine, REGION_CODES[region])
                           for field, region in (("epvs_bg_count", "basal_ganglia"),
                                                 ("epvs_cso_count", "centrum_semiovale"))})
    return Measurements(**fields), extras
