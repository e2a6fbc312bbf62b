"""Measuring markers on hand-made volumes: WMH split and Fazekas, EPVS, CMB, lacunes, RSSI."""

from __future__ import annotations

import numpy as np
import pytest

from csvdnet.atlas import REGION_CODES
from csvdnet.inference.measure import measure, ventricle_distance, wmh_features
from csvdnet.scoring import WmhFeatures, fazekas_deep_from, fazekas_pv_from

R = REGION_CODES
SHAPE = (60, 60, 40)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])  # 2 mm voxels: 1 voxel = 0.008 ml
VOXEL_ML = 0.008
# Ventricle: voxels 26-33 x 20-39 x 16-23 (a 16 x 40 x 16 mm box in the middle).
VENTRICLE = (slice(26, 34), slice(20, 40), slice(16, 24))


@pytest.fixture(scope="module")
def regions() -> np.ndarray:
    """Ventricle box, periventricular tissue within 10 mm of it, deep WM elsewhere."""
    out = np.full(SHAPE, R["deep_wm"], dtype=np.uint8)
    out[VENTRICLE] = R["ventricles"]
    distance = ventricle_distance(out, AFFINE)
    out[(distance > 0) & (distance <= 10)] = R["periventricular"]
    return out


@pytest.fixture(scope="module")
def distance(regions: np.ndarray) -> np.ndarray:
    return ventricle_distance(regions, AFFINE)


def features(wmh: np.ndarray, regions: np.ndarray) -> WmhFeatures:
    return wmh_features(wmh, regions, AFFINE)


def test_ventricle_distance_is_euclidean_mm_on_anisotropic_voxels() -> None:
    regions = np.zeros((9, 9, 9), dtype=np.uint8)
    regions[4, 4, 4] = R["ventricles"]
    distance = ventricle_distance(regions, np.diag([1.0, 1.0, 3.0, 1.0]))
    assert distance[4, 4, 4] == 0
    assert distance[7, 8, 4] == pytest.approx(5.0)  # (3, 4, 0) voxels of 1 mm
    assert distance[4, 4, 6] == pytest.approx(6.0)  # 2 slices of 3 mm
    assert np.all(ventricle_distance(np.zeros((3, 3, 3), np.uint8), np.eye(4)) == 40.0)


def test_no_wmh_is_grade_zero(regions: np.ndarray) -> None:
    f = features(np.zeros(SHAPE, bool), regions)
    assert (f.total_ml, f.pv_ml, f.deep_count, f.pv_lining_fraction) == (0, 0, 0, 0)
    assert fazekas_pv_from(f) == 0 and fazekas_deep_from(f) == 0


def test_full_halo_around_the_ventricle_is_pv_2(regions: np.ndarray,
                                                distance: np.ndarray) -> None:
    halo = (distance > 0) & (distance <= 6)
    f = features(halo, regions)
    assert f.pv_lining_fraction == 1.0  # every lining voxel is covered
    assert f.pv_ml == pytest.approx(halo.sum() * VOXEL_ML)
    assert f.pv_beyond_band_ml == 0 and f.deep_count == 0
    assert f.pv_reach_mm == pytest.approx(6.0, abs=0.5)
    assert fazekas_pv_from(f) == 2 and fazekas_deep_from(f) == 0


def test_caps_at_the_horns_are_pv_1(regions: np.ndarray, distance: np.ndarray) -> None:
    # Two caps, in front of and behind the ventricle only (y beyond its ends), 4 mm thick.
    wmh = (distance > 0) & (distance <= 4)
    wmh[:, 20:40] = False
    f = features(wmh, regions)
    lining = (distance <= 3) & (regions == R["periventricular"])
    assert f.pv_lining_fraction == pytest.approx((wmh & lining).sum() / lining.sum())
    assert 0.02 <= f.pv_lining_fraction < 0.41
    assert fazekas_pv_from(f) == 1


def test_halo_extending_beyond_the_band_is_pv_3(regions: np.ndarray,
                                                distance: np.ndarray) -> None:
    wmh = (distance > 0) & (distance <= 6)
    # A finger from the halo's top into the deep WM, 8 x 10 voxels, above the ventricle roof
    # (z = 23) up to z = 39: its voxels more than 10 mm above the roof (z >= 29) are beyond.
    wmh[26:34, 25:35, 24:40] = True
    f = features(wmh, regions)
    beyond = (wmh & (distance > 10)).sum()
    assert beyond == 8 * 10 * (40 - 29)
    assert f.pv_beyond_band_ml == pytest.approx(beyond * VOXEL_ML)  # 7.04 ml
    assert f.deep_count == 0  # the finger belongs to the periventricular lesion
    assert f.pv_reach_mm > 12.0  # the halo alone reaches 6 mm
    assert fazekas_pv_from(f) == 3


def test_isolated_foci_are_deep_1(regions: np.ndarray) -> None:
    wmh = np.zeros(SHAPE, bool)
    for i in (2, 8, 14):
        wmh[i:i + 2, 2:4, 2:4] = True  # 2 x 2 x 2 voxels = 0.064 ml, far from the ventricle
    f = features(wmh, regions)
    assert f.deep_count == 3 and f.pv_ml == 0
    assert f.deep_largest_ml == pytest.approx(8 * VOXEL_ML)
    assert fazekas_deep_from(f) == 1 and fazekas_pv_from(f) == 0


def test_diagonal_neighbours_are_one_26_connected_lesion(regions: np.ndarray) -> None:
    wmh = np.zeros(SHAPE, bool)
    wmh[2, 2, 2] = wmh[3, 3, 3] = True
    assert features(wmh, regions).deep_count == 1


@pytest.mark.parametrize("side, grade", [(2, 1), (3, 2), (5, 2), (6, 3)])
def test_deep_grade_follows_the_largest_confluent_lesion(regions: np.ndarray, side: int,
                                                         grade: int) -> None:
    # A cube of side^3 voxels: 0.064 ml (8), 0.216 (27), 1.0 (125), 1.728 (216).
    wmh = np.zeros(SHAPE, bool)
    wmh[2:2 + side, 2:2 + side, 2:2 + side] = True
    f = features(wmh, regions)
    assert f.deep_largest_ml == pytest.approx(side ** 3 * VOXEL_ML)
    assert fazekas_deep_from(f) == grade


def test_a_piece_inside_the_band_off_the_lining_is_periventricular(
        regions: np.ndarray, distance: np.ndarray) -> None:
    wmh = (distance > 4) & (distance <= 8)  # a ring 4-8 mm out, not touching the lining
    f = features(wmh, regions)
    assert f.deep_count == 0 and f.pv_ml == pytest.approx(wmh.sum() * VOXEL_ML)
    assert f.pv_lining_fraction == 0


def test_measure_counts_every_marker(regions: np.ndarray, distance: np.ndarray) -> None:
    grid = regions.copy()
    grid[0:10, 50:60, 30:40] = R["juxtacortical"]
    grid[50:60, 50:60, 0:10] = R["infratentorial"]
    grid[40:50, 0:10, 10:20] = R["basal_ganglia"]
    grid[0:10, 46:50, 30:40] = R["csf"]  # sulcal CSF beside the juxtacortical block
    grid[50:60, 46:50, 0:10] = R["csf"]  # cisternal CSF beside the infratentorial block
    lacune = np.zeros(SHAPE, bool)
    lacune[45, 45, 5] = lacune[46, 46, 6] = True  # one (26-connected) lacune of 2 voxels
    lacune[10, 10, 10:13] = True  # another of 3 voxels
    rssi = np.zeros(SHAPE, bool)
    halo = (distance > 0) & (distance <= 6)
    world = lambda *v: (np.array(v, float) * 2.0)  # noqa: E731  (voxel -> world, 2 mm)
    cmb = np.array([world(5, 55, 35), world(55, 55, 5), world(30, 10, 5),
                    world(5, 48, 35), world(30, 30, 20), world(55, 48, 5)])
    # Basal ganglia EPVS: 3 right ones in slice k = 12, 2 in slice 14, 1 left, and 4 on the
    # midline (on neither side: never counted).
    epvs = np.array([world(42, 2, 12), world(44, 4, 12), world(46, 6, 12), world(42, 2, 14),
                     world(44, 4, 14), world(48, 8, 12), *(world(43, 3 + i, 12) for i in range(4))])
    sides = ["R", "R", "R", "R", "R", "L", "M", "M", "M", "M"]
    m, extras = measure({"wmh": halo, "lacune": lacune, "rssi": rssi},
                        {"cmb": cmb, "epvs": epvs},
                        {"cmb": ["L"] * 6, "epvs": sides}, grid, AFFINE)
    assert (m.fazekas_pv, m.fazekas_deep) == (2, 0)
    assert (m.lacune_count, m.rssi_count) == (2, 0)
    assert extras["lacune_volume_ml"] == pytest.approx(5 * VOXEL_ML)
    assert sorted(extras["lacune_volumes_ml"]) == pytest.approx([2 * VOXEL_ML, 3 * VOXEL_ML])
    assert extras["rssi_volume_ml"] == 0
    # juxtacortical, infratentorial, deep WM, sulcal CSF next to cortex (lobar), a point deep
    # in the ventricle with no tissue within 4 mm (counted deep), CSF next to the cerebellum.
    assert (m.cmb_lobar, m.cmb_deep, m.cmb_infratentorial) == (2, 2, 2)
    assert m.epvs_bg_count == 3 and m.epvs_cso_count == 0
    assert extras["counts_by_region"]["epvs"] == {"basal_ganglia/R": 5, "basal_ganglia/L": 1,
                                                 "basal_ganglia/M": 4}
    assert extras["wmh_volume_ml"] == pytest.approx(halo.sum() * VOXEL_ML)
    assert extras["wmh_periventricular_ml"] == pytest.approx(halo.sum() * VOXEL_ML)
    assert extras["wmh_deep_ml"] == 0
    assert extras["counts_by_region"]["lacune"] == {"deep_wm": 2}


def test_unmeasured_markers_stay_none(regions: np.ndarray) -> None:
    m, extras = measure({}, {}, {}, regions, AFFINE)
    assert m.fazekas_pv is None and m.lacune_count is None and m.cmb_count is None
    assert m.epvs_bg_count is None and extras["counts_by_region"] == {}
