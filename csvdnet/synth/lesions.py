"""Small vessel disease markers, and the mimics a model must ignore, drawn into an anatomy.

Each marker has the look and the place radiologists know (STRIVE, Wardlaw et al. 2013):

- **WMH** replace white matter (:func:`_draw_wmh`). Periventricular grade (Fazekas PV) 1: caps at
  the frontal and occipital horns and / or a pencil-thin lining; 2: a smooth halo; 3: an
  irregular halo whose fingers reach into the deep WM. Deep grade 1: punctate foci; 2: foci
  beginning to merge (clusters); 3: large confluent areas in the centrum semiovale. Below grade
  3 the periventricular lesions stay inside the 10 mm band and the deep foci outside it, so
  the grades match the atlas's periventricular / deep regions; every cap and focus is large
  enough to be labelled on the reference grid.
- **Lacunes**: round / ovoid cavities of 3-15 mm (axial), often elongated along the perforating
  arteries (vertically), filled with CSF-like fluid, most (70 %) with a gliotic rim that is bright
  on FLAIR; in the basal ganglia, thalamus or deep WM.
- **RSSI**: lobulated ovoid acute infarcts, < 20 mm axially (up to ~30 mm along the perforator),
  in the perforator territories (basal ganglia, thalamus, corona radiata, pons); bright on DWI,
  FLAIR and T2.
- **Microbleeds**: susceptibility blooms of 2-10 mm visible diameter (:class:`Bloom`) whose dark
  spot on SWI is wider than on T2 and absent on FLAIR / T1; lobar (cortico-subcortical
  junction) or deep / infratentorial.
- **EPVS**: CSF-filled tubes < 3 mm wide along the perforating vessels: near-vertical in the
  basal ganglia (dots on axial slices), radial in the centrum semiovale (lines). The basal
  ganglia count on the rated side and slice is the plan's.
- **Mimics**: veins (dark tubes on SWI only: medullary veins radial in the deep WM, internal
  cerebral and thalamostriate veins, cortical veins in the sulci), sulcal and cisternal CSF
  (already in the anatomy), grade-1 periventricular caps in subjects whose WMH score no point.

Shapes are rasterised with supersampling, so their partial volume is exact to 1/27 of a voxel
(on the fine grid, and straight onto the reference grid for the lacune and RSSI labels);
painting conserves volume (:meth:`Anatomy.paint`). Lesions of the same kind keep more than two
reference voxels apart, so each is one 26-connected component of its label.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable

import numpy as np

from csvdnet.atlas import PERIVENTRICULAR_MM, REGION_CODES
from csvdnet.scoring import side_slice_keys
from csvdnet.synth.anatomy import PARENCHYMA, Anatomy
from csvdnet.synth.geometry import Grid, SmoothField
from csvdnet.synth.ratings import Plan
from csvdnet.synth.shapes import (SUPERSAMPLE, Bloom, Ellipsoid, Shape, Tube, rasterize,
                                  reference_mask)

__all__ = ["Bloom", "Ellipsoid", "Lesions", "Tube", "plant_lesions", "rasterize", "reference_mask"]

_R = REGION_CODES
_DEEP_WM = (_R["centrum_semiovale"], _R["deep_wm"])
_WHITE_MATTER = (_R["centrum_semiovale"], _R["periventricular"], _R["deep_wm"], _R["juxtacortical"])
_LACUNE_REGIONS = (_R["basal_ganglia"], _R["thalamus"], _R["centrum_semiovale"],
                   _R["periventricular"], _R["deep_wm"])
# Frontal and occipital horn tips (MNI mm) where periventricular caps form.
_CAP_CENTRES_MNI = np.array([[-14, 24, 12], [14, 24, 12], [-24, -58, 8], [24, -58, 8]],
                            dtype=np.float32)
_CAP_SIGMA_MM = 7.0
# Grades < 3 keep periventricular WMH this far inside the 10 mm band, and deep foci this far
# outside it: half a reference slice of partial volume must not carry a voxel across.
_BAND_CLEARANCE_MM = 3.0
# Lacunes and RSSI lie in deep perforator territory (corona radiata), not under the cortex.
_PERFORATOR_MAX_VENTRICLE_MM = 22.0
_SUSCEPTIBILITY_AT_EDGE = 0.28  # SWI halves (exp(-2.5 * 0.28)) at a microbleed's visible edge
_VEIN_BLOOM = 1.4  # a vein's dark line on SWI is wider than the vein
_MIDLINE_MM = 2.0  # EPVS this close to the midline are not given a side
# The origin and the 26 directions to a voxel's neighbours as unit vectors (norms are 0 or >= 1).
_OFFSETS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)
_NEIGHBOUR_DIRECTIONS = _OFFSETS / np.maximum(np.linalg.norm(_OFFSETS, axis=1, keepdims=True), 1.0)
# A deep WMH focus must fill this much of a reference voxel: it is painted into partial WM
# through the fine grid, and must still be labelled (> 0.5) there.
_WMH_VISIBLE = 0.8


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


@dataclasses.dataclass
class Lesions:
    """What was planted (world mm of the reference frame).

    Attributes:
        cmb: (N, 3) microbleed centres.
        cmb_diameter: Visible (blooming) diameter on SWI, mm.
        epvs: (M, 3) EPVS centres (midpoints of their axes).
        epvs_diameter: EPVS width, mm.
        epvs_length: EPVS length along the vessel, mm.
        epvs_direction: (M, 3) unit vectors along each EPVS's axis (world RAS): with the centre
            and the length they give its centreline, which evaluation matches detections to.
        lacunes: Lacune cavities.
        rssi: Recent small subcortical infarcts.
    """

    cmb: np.ndarray
    cmb_diameter: np.ndarray
    epvs: np.ndarray
    epvs_diameter: np.ndarray
    epvs_length: np.ndarray
    epvs_direction: np.ndarray
    lacunes: list[Ellipsoid]
    rssi: list[Ellipsoid]


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


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _random_rotation(rng: np.random.Generator, tilt_deg: float) -> np.ndarray:
    """Rotation whose third column is tilted at most ``tilt_deg`` from world z, random azimuth."""
    azimuth, spin = rng.uniform(0, 2 * np.pi, 2)
    tilt = np.deg2rad(rng.uniform(0, tilt_deg))
    c, s = np.cos(tilt), np.sin(tilt)
    tilt_y = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return _rotation_z(azimuth) @ tilt_y @ _rotation_z(spin)


def _flat(volume: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """Values of a fine-grid volume at flat voxel indices."""
    return volume.ravel()[voxels]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _bumps(rng: np.random.Generator, count: int, amplitude: float) -> np.ndarray:
    """Random lobulation: bulges and dents up to ``amplitude``, bulging by 2x it at most."""
    directions = _unit(rng.standard_normal((count, 3)))
    amplitudes = rng.uniform(-amplitude, amplitude, count)
    bulge = np.clip(amplitudes, 0, None).sum()
    if bulge > 2 * amplitude:  # keeps the bounding sphere (and the work) small
        amplitudes = np.where(amplitudes > 0, amplitudes * 2 * amplitude / bulge, amplitudes)
    return np.column_stack([directions, amplitudes])


def _paint_shape(anat: Anatomy, shape: Shape, into: str, replace: tuple[str, ...]) -> None:
    raster = rasterize(shape, anat.grid)
    if raster is not None:
        anat.paint(*raster, into=into, replace=replace)


def _add_susceptibility(anat: Anatomy, shape: Shape, strength: float = 1.0) -> None:
    raster = rasterize(shape, anat.grid)
    if raster is not None:
        box, density = raster
        anat.susceptibility[box] += strength * density


def plant_lesions(anat: Anatomy, plan: Plan, reference: Grid, reference_regions: np.ndarray,
                  rng: np.random.Generator) -> Lesions:
    """Draw the plan's markers and the mimics into the anatomy (in place).

    Args:
        anat: The subject's anatomy; its fractions and susceptibility are painted.
        plan: What to plant.
        reference: The reference (label) grid: lacunes are made large enough to show on it
            and far enough apart not to merge on it.
        reference_regions: Region map on the reference grid (the one the ratings use).
        rng: Random generator.

    Returns:
        What was planted.
    """
    placer = _Placer(anat, rng)
    # Lesions closer than two reference voxels could touch (26-connectivity) after resampling.
    gap = 2.0 * float(reference.spacing.max()) + 1.0
    _draw_wmh(anat, plan, reference, rng)
    lacunes = [_lacune(placer, reference, gap, rng) for _ in range(plan.lacune_count)]
    rssi = [_rssi(placer, reference, gap, rng) for _ in range(plan.rssi_count)]
    lacunes, rssi = [s for s in lacunes if s], [s for s in rssi if s]  # None: no room found
    for cavity in lacunes:
        _paint_shape(anat, cavity, "lacune", PARENCHYMA + ("wmh", "gliosis", "csf"))
    for infarct in rssi:
        _paint_shape(anat, infarct, "rssi", PARENCHYMA + ("wmh", "gliosis"))
    cmb, cmb_diameter = _microbleeds(anat, placer, plan, rng)
    epvs, epvs_diameter, epvs_length, epvs_direction = _epvs(anat, placer, plan, reference,
                                                             reference_regions, rng)
    _veins(anat, rng)
    return Lesions(cmb=cmb, cmb_diameter=cmb_diameter, epvs=epvs, epvs_diameter=epvs_diameter,
                   epvs_length=epvs_length, epvs_direction=epvs_direction, lacunes=lacunes, rssi=rssi)


# ----------------------------------------------------------------------------------------------
# White matter hyperintensities

def _draw_wmh(anat: Anatomy, plan: Plan, reference: Grid, rng: np.random.Generator) -> None:
    """Turn white matter into WMH following the planned Fazekas grades."""
    load = np.zeros(anat.grid.shape, dtype=np.float32)
    if plan.fazekas_pv:
        box = _bounding_box(anat.ventricle_distance < PERIVENTRICULAR_MM + 25)
        load[box] = _periventricular_load(anat, box, plan.fazekas_pv, _min_semi_axes(reference),
                                          rng)
    if plan.fazekas_deep:
        _deep_wmh(anat, load, plan.fazekas_deep, reference, rng)
    if load.any():
        box = _bounding_box(load > 0)
        white = np.isin(anat.regions[box], _WHITE_MATTER)
        anat.paint(box, load[box] * white, into="wmh", replace=("wm",))


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    where = np.argwhere(mask)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _periventricular_load(anat: Anatomy, box: tuple[slice, ...], grade: int, min_axes: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """Fraction of WM that is WMH around the ventricles, for Fazekas PV 1-3.

    The lesion's thickness from the ventricle wall varies over the brain: caps at the horns
    (at least 1.5x ``min_axes`` thick, so that they show on the reference grid), an even halo,
    and for grade 3 irregular fingers from a band-limited random field.
    """
    mni = anat.mni[(slice(None),) + box]
    caps = np.zeros(mni.shape[1:], dtype=np.float32)
    for centre in _CAP_CENTRES_MNI:
        distance2 = sum((mni[d] - centre[d]) ** 2 for d in range(3))
        np.maximum(caps, np.exp(-0.5 * distance2 / _CAP_SIGMA_MM ** 2), out=caps)
    if grade == 1:  # caps, with or without a pencil-thin lining
        cap = max(rng.uniform(4.0, 6.0), 1.5 * float(min_axes.max()))
        thickness = rng.choice([0.0, rng.uniform(0.8, 1.6)]) + cap * caps
    elif grade == 2:  # smooth halo
        thickness = rng.uniform(2.5, 4.0) + rng.uniform(1.5, 3.0) * caps
    else:  # irregular, extending into the deep white matter
        grid = anat.grid.crop(box)
        fingers = SmoothField.random(rng, grid.voxel_to_world(np.zeros((1, 3)))[0],
                                     grid.voxel_to_world(np.array(grid.shape)[None] - 1)[0],
                                     order=14, rms=1.0, falloff=0.3).on_grid(grid)[0]
        thickness = (rng.uniform(3.0, 5.0) + rng.uniform(2.0, 4.0) * caps
                     + 8.0 * np.clip(fingers, 0, None))
    if grade < 3:
        thickness = np.minimum(thickness, PERIVENTRICULAR_MM - _BAND_CLEARANCE_MM)
    # Ventricle distances are to voxel centres: the wall is half an atlas voxel out.
    wall_distance = anat.ventricle_distance[box] - 0.5
    return np.clip((thickness - wall_distance) / anat.grid.spacing[0] + 0.5, 0, 1)


def _deep_wmh(anat: Anatomy, load: np.ndarray, grade: int, reference: Grid,
              rng: np.random.Generator) -> None:
    """Deep WMH into ``load``: punctate foci (1), merging clusters (2), confluent areas (3).

    Every focus and cluster shows on the reference grid (part of it is more than half lesion
    in some reference voxel), so a deep grade always has labelled deep WMH. Foci and clusters
    keep out of the periventricular band; confluent areas may merge into it.
    """
    placer = _Placer(anat, rng)  # WMH may touch other lesions: a placer of their own
    min_axes = _min_semi_axes(reference)

    def blobs(count: tuple[int, int], clearance: float, extent: float,
              make: Callable[[], list[Ellipsoid]], check: bool) -> None:
        """Place ``make()`` shapes (drawn around the origin) at free deep WM positions."""
        candidates = placer.candidates(
            _DEEP_WM + (_R["juxtacortical"],), tissue_min=0.8,
            where=lambda i: (_flat(anat.ventricle_distance, i) > clearance)
            & (_flat(anat.tissue("wm"), i) > 0.8))
        for _ in range(rng.integers(count[0], count[1] + 1)):
            shapes = make()
            centre = placer.draw(candidates, extent, gap=1.0, valid=lambda p: not check or any(
                _visible(_moved(shape, p), reference, _WMH_VISIBLE) for shape in shapes))
            for shape in shapes if centre is not None else ():
                raster = rasterize(_moved(shape, centre), anat.grid)
                if raster is not None:
                    np.maximum(load[raster[0]], raster[1], out=load[raster[0]])

    def focus(low: float = 1.5, high: float = 3.5,
              centre: tuple[float, ...] = (0.0, 0.0, 0.0)) -> list[Ellipsoid]:
        axes = np.maximum(rng.uniform(low, high, 3), min_axes)
        return [Ellipsoid(np.asarray(centre), axes, _random_rotation(rng, 25), _bumps(rng, 3, 0.2))]

    def cluster() -> list[Ellipsoid]:  # foci beginning to merge
        offsets = rng.normal(0, 2.5, (int(rng.integers(3, 6)), 3))
        return [shape for offset in offsets for shape in focus(2.0, 4.0, tuple(offset))]

    def confluent() -> list[Ellipsoid]:
        axes = np.array([rng.uniform(7, 13), rng.uniform(10, 18), rng.uniform(6, 11)])
        return [Ellipsoid(np.zeros(3), axes, _random_rotation(rng, 25), _bumps(rng, 8, 0.45))]

    outside_band = PERIVENTRICULAR_MM + _BAND_CLEARANCE_MM
    cluster_extent = 10.0 + float(min_axes.max())
    focus_extent = max(3.5, float(min_axes.max())) * 1.2
    blobs({3: (2, 4)}.get(grade, (0, 0)), PERIVENTRICULAR_MM + 5.0, 18.0, confluent, check=False)
    blobs({2: (2, 4), 3: (3, 5)}.get(grade, (0, 0)), outside_band + cluster_extent, cluster_extent,
          cluster, check=True)
    blobs({1: (3, 10), 2: (8, 16), 3: (10, 20)}[grade], outside_band + focus_extent, focus_extent,
          focus, check=True)


def _moved(shape: Ellipsoid, offset: np.ndarray) -> Ellipsoid:
    return dataclasses.replace(shape, centre=shape.centre + offset)


# ----------------------------------------------------------------------------------------------
# Lacunes and recent small subcortical infarcts

def _lacune(placer: _Placer, reference: Grid, gap: float,
            rng: np.random.Generator) -> Ellipsoid | None:
    """A lacune cavity (its gliotic rim is painted here too), large enough to be labelled."""
    region = rng.choice(["basal_ganglia", "thalamus", "deep"], p=[0.4, 0.2, 0.4])
    regions = _DEEP_WM + (_R["periventricular"],) if region == "deep" else (_R[region],)
    diameter = float(np.clip(rng.lognormal(np.log(6.0), 0.35), 3.0, 15.0))
    axes = diameter / 2 * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.6)])
    axes = np.clip(np.maximum(axes, _min_semi_axes(reference)), 1.5, 7.5)
    rim = rng.uniform(1.0, 2.0) if rng.random() < 0.7 else 0.0
    rotation = _random_rotation(rng, 15)
    anat = placer.anat
    candidates = placer.candidates(regions, where=lambda i: (
        (_flat(anat.ventricle_distance, i) > axes.max() + rim + 2)
        & (_flat(anat.ventricle_distance, i) < _PERFORATOR_MAX_VENTRICLE_MM)))
    centre = placer.draw(candidates, float(axes.max()) + rim, gap, valid=lambda p: (
        _within(anat, Ellipsoid(p, axes + rim, rotation), _LACUNE_REGIONS)
        and _visible(Ellipsoid(p, axes, rotation), reference)))
    if centre is None:
        return None
    if rim:
        rim_shape = Ellipsoid(centre, axes + rim, rotation)
        _paint_shape(anat, rim_shape, "gliosis", PARENCHYMA + ("wmh",))
    return Ellipsoid(centre, axes, rotation)


def _rssi(placer: _Placer, reference: Grid, gap: float,
          rng: np.random.Generator) -> Ellipsoid | None:
    """An acute lacunar infarct in a perforator territory."""
    anat = placer.anat
    territory = rng.choice(["deep", "basal_ganglia", "thalamus", "pons"], p=[0.45, 0.25, 0.2, 0.1])
    axial = float(np.clip(rng.lognormal(np.log(10.0), 0.3), 5.0, 17.0))
    axes = axial / 2 * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.7)])
    bumps = _bumps(rng, 6, 0.25)
    # Axially under 20 mm: bulges included, and the long axis tilted by up to 15 degrees
    # widening the axial section by up to 6 %.
    axes[:2] = np.minimum(axes[:2], 8.5 / (1 + np.clip(bumps[:, 3], 0, None).sum()))
    if territory == "pons":
        regions = (_R["infratentorial"],)

        def where(i: np.ndarray) -> np.ndarray:
            x, y, z = (_flat(anat.mni[axis], i) for axis in range(3))
            return (np.abs(x) < 8) & (y > -38) & (z < -15)
    else:  # near the ventricles: the territory of the deep perforators, not the cortex's
        regions = _DEEP_WM + (_R["periventricular"],) if territory == "deep" else (_R[territory],)

        def where(i: np.ndarray) -> np.ndarray:
            distance = _flat(anat.ventricle_distance, i)
            return (distance > axes.max() + 1) & (distance < _PERFORATOR_MAX_VENTRICLE_MM)
    rotation = _random_rotation(rng, 15)
    allowed = regions if territory == "pons" else _LACUNE_REGIONS
    centre = placer.draw(
        placer.candidates(regions, where=where), float(axes.max()) * 1.3, gap,
        valid=lambda p: (_within(anat, Ellipsoid(p, axes, rotation), allowed)
                         and _visible(Ellipsoid(p, axes, rotation, bumps), reference)))
    return None if centre is None else Ellipsoid(centre, axes, rotation, bumps)


# ----------------------------------------------------------------------------------------------
# Microbleeds

def _microbleeds(anat: Anatomy, placer: _Placer, plan: Plan,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Microbleed blooms, lobar or deep as planned; returns their centres and diameters."""
    def junction(i: np.ndarray) -> np.ndarray:  # the cortico-subcortical junction
        return (_flat(anat.tissue("gm"), i) > 0.2) & (_flat(anat.tissue("wm"), i) > 0.2)

    pools = {
        "lobar": placer.candidates((_R["juxtacortical"],), tissue_min=0.8, where=junction),
        "deep_grey": placer.candidates((_R["basal_ganglia"], _R["thalamus"])),
        "deep_white": placer.candidates(_DEEP_WM + (_R["periventricular"],)),
        "infratentorial": placer.candidates((_R["infratentorial"],), tissue_min=0.8),
    }
    deep_split = np.array([0.6, 0.25, 0.15])
    lobar = plan.cmb_lobar_fraction
    weights = np.concatenate([[lobar], (1 - lobar) * deep_split])
    centres, diameters = [], []
    for _ in range(plan.cmb_count):
        pool = list(pools)[rng.choice(4, p=weights)]
        diameter = float(np.clip(rng.lognormal(np.log(4.0), 0.4), 2.0, 10.0))
        centre = placer.draw(pools[pool], diameter / 2, gap=2.0)
        if centre is None:
            continue
        # Gaussian bloom with the visible edge (SWI at half signal) at the diameter.
        amplitude = rng.uniform(1.8, 2.6)
        sigma = diameter / 2 / np.sqrt(2 * np.log(amplitude / _SUSCEPTIBILITY_AT_EDGE))
        _add_susceptibility(anat, Bloom(centre, sigma, amplitude))
        centres.append(centre)
        diameters.append(diameter)
    return np.array(centres).reshape(-1, 3), np.array(diameters)


# ----------------------------------------------------------------------------------------------
# Enlarged perivascular spaces

def _epvs(anat: Anatomy, placer: _Placer, plan: Plan, reference: Grid,
          reference_regions: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Basal ganglia EPVS (the rated side and slice first) and centrum semiovale EPVS: centres,
    diameters, lengths and unit directions."""
    tubes: list[Tube] = []
    slice_axis = reference.slice_axis()

    def rating_keys(positions: np.ndarray) -> list[list[tuple[str, int]]]:
        """(side, reference slice) pairs each point counts in (the rule of
        :func:`csvdnet.scoring.side_slice_keys`); empty outside the basal ganglia."""
        mni_x = anat.warp(positions)[:, 0]
        sides = ["M" if abs(x) < _MIDLINE_MM else "L" if x < 0 else "R" for x in mni_x]
        return side_slice_keys(positions, sides, reference_regions, reference.affine,
                               _R["basal_ganglia"])

    def plant(position: np.ndarray, direction: np.ndarray, length: float, diameter: float) -> None:
        half = direction * length / 2
        tube = Tube(position - half, position + half, diameter / 2)
        _paint_shape(anat, tube, "csf", PARENCHYMA + ("wmh",))
        tubes.append(tube)

    def plant_bg(pool: np.ndarray,
                 accept: Callable[[list[tuple[str, int]]], bool]) -> list[tuple[str, int]]:
        """A lenticulostriate EPVS: near-vertical, so a dot on axial slices. Returns the keys
        it counts in (none when no place was found)."""
        position = placer.draw(pool, 1.4, gap=0.3, valid=lambda p: accept(rating_keys(p[None])[0]))
        if position is None:
            return []
        direction = _random_rotation(rng, 20)[:, 2]
        plant(position, direction, rng.uniform(3.0, 10.0), rng.uniform(1.0, 2.8))
        return rating_keys(position[None])[0]

    candidates = placer.candidates((_R["basal_ganglia"],), tissue_min=0.8)
    keys = rating_keys(anat.grid.flat_to_world(candidates))
    rateable = [key for point_keys in keys for key in point_keys]
    if plan.epvs_bg_count and rateable:
        rated = max(sorted(set(rateable)), key=rateable.count)  # the roomiest side and slice
        pool = candidates[[rated in point_keys for point_keys in keys]]
        counts: dict[tuple[str, int], int] = {}
        for _ in range(plan.epvs_bg_count):
            for key in plant_bg(pool, lambda found: rated in found):
                counts[key] = counts.get(key, 0) + 1
        # Elsewhere in the basal ganglia: fewer per side and slice than on the rated one.
        for _ in range(int(plan.epvs_bg_count * rng.uniform(0.5, 1.5))):
            for key in plant_bg(candidates, lambda found: bool(found) and all(
                    counts.get(k, 0) + 1 < counts.get(rated, 0) for k in found)):
                counts[key] = counts.get(key, 0) + 1

    cso = placer.candidates((_R["centrum_semiovale"],), tissue_min=0.8)
    for _ in range(plan.epvs_cso_count):
        position = placer.draw(cso, 4.0, gap=0.5)
        if position is not None:  # medullary arteries: radial between the ventricles and the cortex
            plant(position, _unit(position - anat.warp.centre), rng.uniform(6.0, 16.0),
                  rng.uniform(1.0, 2.6))

    if not tubes:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros((0, 3))
    axes = np.array([t.end - t.start for t in tubes])
    lengths = np.linalg.norm(axes, axis=1)
    return (np.array([t.centre for t in tubes]), np.array([2 * t.radius for t in tubes]),
            lengths, axes / lengths[:, None])


# ----------------------------------------------------------------------------------------------
# Veins (mimics: dark tubes on SWI)

# Deep veins in MNI mm: internal cerebral veins (paired, roof of the third ventricle) and
# thalamostriate veins (caudothalamic groove), as (start, end, radius).
_DEEP_VEINS_MNI = (((-2.5, 0, 16), (-2.0, -38, 10), 1.2), ((2.5, 0, 16), (2.0, -38, 10), 1.2),
                   ((-15, -12, 20), (-4, -2, 16), 0.8), ((15, -12, 20), (4, -2, 16), 0.8))


def _veins(anat: Anatomy, rng: np.random.Generator) -> None:
    """Susceptibility of veins: deep veins, medullary veins in the WM, cortical veins."""
    for start, end, radius in _DEEP_VEINS_MNI:
        world = anat.warp.inverse(np.array([start, end], dtype=np.float64))
        _add_susceptibility(anat, Tube(world[0], world[1], radius * _VEIN_BLOOM))
    medullary = anat.region_voxels(_DEEP_WM + (_R["periventricular"],))
    medullary = medullary[(_flat(anat.ventricle_distance, medullary) > 4)
                          & (_flat(anat.tissue("wm"), medullary) > 0.8)]
    sulci = anat.region_voxels((_R["csf"],))
    sulci = sulci[(_flat(anat.tissue("csf"), sulci) > 0.7) & (_flat(anat.mni[2], sulci) > 0)]
    # Medullary veins drain the deep WM towards the ventricles; cortical veins run along the
    # surface (perpendicular to the outward direction).
    _random_veins(anat, rng, medullary, int(rng.integers(15, 30)), (10, 25), (0.4, 0.8),
                  lambda out: -out)
    _random_veins(anat, rng, sulci, int(rng.integers(8, 16)), (20, 40), (0.7, 1.4),
                  lambda out: _unit(np.cross(out, rng.standard_normal(3))))


def _random_veins(anat: Anatomy, rng: np.random.Generator, pool: np.ndarray, count: int,
                  length: tuple[float, float], radius: tuple[float, float],
                  direction: Callable[[np.ndarray], np.ndarray]) -> None:
    """``count`` straight veins starting in random ``pool`` voxels, heading along ``direction``
    (a function of the unit vector from the ventricles' centre to the start)."""
    if len(pool) == 0:
        return
    picks = pool[rng.integers(len(pool), size=count)]
    starts = anat.grid.flat_to_world(picks)
    for start in starts:
        end = start + direction(_unit(start - anat.warp.centre)) * rng.uniform(*length)
        _add_susceptibility(anat, Tube(start, end, rng.uniform(*radius) * _VEIN_BLOOM))
