"""Rule sets on hand-written boundary cases, the EPVS count rule and the ordinal decoding."""

import math

import numpy as np
import pytest

from csvdnet.errors import CsvdnetInputError
from csvdnet.scoring import (RULE_SETS, SLICE_TIE_VOXELS, Measurements, epvs_grade,
                             max_side_slice_count, ordinal_class, ordinal_probabilities, score,
                             side_slice_keys, slices_of, staals_total)

# A subject with nothing: every point of every rule set is 0.
NONE = Measurements(fazekas_pv=0, fazekas_deep=0, epvs_bg_count=0, epvs_cso_count=0, cmb_lobar=0,
                    cmb_deep=0, cmb_infratentorial=0, lacune_count=0, rssi_count=0)


def _with(**changes) -> Measurements:
    return Measurements(**{**NONE.__dict__, **changes})


# (rule set, changes from NONE, expected points that differ from 0, expected total)
CASES = [
    # Staals 2014: each point on both sides of its boundary.
    ("staals-2014", {"epvs_bg_count": 10}, {}, 0),  # grade 1
    ("staals-2014", {"epvs_bg_count": 11}, {"epvs": 1}, 1),  # grade 2
    ("staals-2014", {"epvs_cso_count": 40}, {}, 0),  # centrum semiovale EPVS do not count
    ("staals-2014", {"fazekas_pv": 2}, {}, 0),
    ("staals-2014", {"fazekas_pv": 3}, {"wmh": 1}, 1),
    ("staals-2014", {"fazekas_deep": 1}, {}, 0),
    ("staals-2014", {"fazekas_deep": 2}, {"wmh": 1}, 1),
    ("staals-2014", {"fazekas_pv": 3, "fazekas_deep": 3}, {"wmh": 1}, 1),  # one WMH point
    ("staals-2014", {"lacune_count": 0}, {}, 0),
    ("staals-2014", {"lacune_count": 1}, {"lacunes": 1}, 1),
    ("staals-2014", {"cmb_deep": 1}, {"microbleeds": 1}, 1),
    ("staals-2014", {"cmb_lobar": 5, "cmb_infratentorial": 2}, {"microbleeds": 1}, 1),
    ("staals-2014", {"rssi_count": 3}, {}, 0),  # RSSI never added
    ("staals-2014", {"fazekas_pv": 3, "epvs_bg_count": 41, "cmb_lobar": 1, "lacune_count": 2,
                     "rssi_count": 1}, {"wmh": 1, "epvs": 1, "microbleeds": 1, "lacunes": 1}, 4),
    # CAA-SVD 2016: lobar CMB 1 / 2 / 4 / 5, CSO EPVS 20 / 21, WMH.
    ("caa-svd-2016", {"cmb_lobar": 1}, {}, 0),
    ("caa-svd-2016", {"cmb_lobar": 2}, {"lobar_microbleeds": 1}, 1),
    ("caa-svd-2016", {"cmb_lobar": 4}, {"lobar_microbleeds": 1}, 1),
    ("caa-svd-2016", {"cmb_lobar": 5}, {"lobar_microbleeds": 2}, 2),
    ("caa-svd-2016", {"cmb_deep": 9, "cmb_infratentorial": 9}, {}, 0),  # only lobar ones count
    ("caa-svd-2016", {"epvs_cso_count": 20}, {}, 0),
    ("caa-svd-2016", {"epvs_cso_count": 21}, {"cso_epvs": 1}, 1),
    ("caa-svd-2016", {"epvs_bg_count": 40}, {}, 0),  # basal ganglia EPVS do not count
    ("caa-svd-2016", {"fazekas_pv": 2, "fazekas_deep": 1}, {}, 0),
    ("caa-svd-2016", {"fazekas_pv": 3}, {"wmh": 1}, 1),
    ("caa-svd-2016", {"fazekas_deep": 2}, {"wmh": 1}, 1),
    ("caa-svd-2016", {"lacune_count": 3, "rssi_count": 2}, {}, 0),  # neither is part of it
    ("caa-svd-2016", {"cmb_lobar": 12, "epvs_cso_count": 30, "fazekas_pv": 3},
     {"lobar_microbleeds": 2, "cso_epvs": 1, "wmh": 1}, 4),
]


@pytest.mark.parametrize("rule_set, changes, positive, total", CASES)
def test_rule_set_boundary_cases(rule_set, changes, positive, total):
    result = score(rule_set, _with(**changes))
    assert result.rule_set == rule_set and result.version == RULE_SETS[rule_set].version
    assert result.points == {item: positive.get(item, 0) for item in result.points}
    assert set(positive) <= set(result.points)
    assert result.total == total
    assert result.maximum == {"staals-2014": 4, "caa-svd-2016": 6}[rule_set]


def test_staals_rule_set_is_staals_total():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = Measurements(*(int(v) for v in rng.integers(0, [4, 4, 45, 45, 4, 3, 2, 3, 3])))
        assert score("staals-2014", m).total == staals_total(
            m.fazekas_pv, m.fazekas_deep, m.epvs_bg_grade, m.cmb_count, m.lacune_count)


def test_unmeasured_quantities_give_no_total_and_say_why():
    result = score("staals-2014", _with(lacune_count=None))
    assert result.total is None and "lacunes" not in result.points
    assert any("lacune_count not measured" in note for note in result.notes)
    # One measured location with a microbleed decides the point; with none found it cannot.
    assert score("staals-2014", _with(cmb_deep=None, cmb_lobar=1)).points["microbleeds"] == 1
    undecided = score("staals-2014", _with(cmb_deep=None))
    assert "microbleeds" not in undecided.points and undecided.total is None
    assert undecided.undecided == ("microbleeds",) and score("staals-2014", _with()).undecided == ()
    assert any("cmb_deep" in note for note in undecided.notes)
    # Fazekas PV 3 decides the WMH point without the deep grade; PV 2 does not.
    assert score("caa-svd-2016", _with(fazekas_deep=None, fazekas_pv=3)).points["wmh"] == 1
    assert score("caa-svd-2016", _with(fazekas_deep=None, fazekas_pv=2)).total is None
    empty = score("caa-svd-2016", Measurements())
    assert empty.total is None and empty.points == {}
    assert Measurements(cmb_lobar=2).cmb_count is None


def test_notes_name_what_is_left_out():
    caa = score("caa-svd-2016", NONE)
    assert caa.total == 0 and caa.maximum == 6
    assert any("cortical superficial siderosis" in note for note in caa.notes)
    assert score("staals-2014", NONE).notes == ()
    assert any("RSSI" in note for note in score("staals-2014", _with(rssi_count=1)).notes)


def test_unknown_rule_set_is_an_input_error():
    with pytest.raises(CsvdnetInputError, match="staals2014.*caa-svd-2016, staals-2014"):
        score("staals2014", NONE)


def test_epvs_grades():
    assert [epvs_grade(n) for n in (0, 1, 10, 11, 20, 21, 40, 41)] == [0, 1, 1, 2, 2, 3, 3, 4]
    assert _with(epvs_bg_count=11).epvs_bg_grade == 2
    assert _with(epvs_cso_count=21).epvs_cso_grade == 3


def test_max_side_slice_count():
    # 2 mm axial slices along voxel axis 2 (world z); region 2 left of x = 4 mm, region 4 right.
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    regions = np.zeros((8, 8, 8), np.uint8)
    regions[:4] = 2
    regions[4:] = 4
    world = np.array([[1, 1, 4], [2, 3, 4.9], [1, 6, 4], [3, 3, 6],  # region 2: 3 in slice 2
                      [5, 5, 4], [6, 6, 4],  # region 4, slice 2
                      [1, 1, 40]])  # outside the grid
    sides = ["L", "L", "L", "L", "R", "R", "L"]
    assert max_side_slice_count(world, sides, regions, affine, 2) == 3
    assert max_side_slice_count(world, sides, regions, affine, 4) == 2
    assert max_side_slice_count(world, sides, regions, affine, (2, 4)) == 3
    # The same points split over two sides count apart.
    assert max_side_slice_count(world, ["L", "R", "L", "L", "R", "R", "L"], regions, affine,
                                2) == 2
    assert max_side_slice_count(np.zeros((0, 3)), [], regions, affine, 2) == 0
    # An oblique-free permuted grid: world z along voxel axis 0 slices by voxel axis 0.
    permuted = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])
    regions_p = np.full((8, 8, 8), 2, np.uint8)
    points = np.array([[1, 1, 2], [5, 1, 2], [1, 1, 4]])  # z = 2, 2, 4 -> voxel i = 1, 1, 2
    assert max_side_slice_count(points, ["L"] * 3, regions_p, permuted, 2) == 2


def test_a_point_on_a_slice_boundary_counts_in_both_slices():
    # 3 mm slices along world z; a 1.5 mm working grid puts every second plane exactly on a
    # boundary (slice coordinate 2.5), or a hair off it by float noise (2.4999999999999996):
    # round-half-to-even would put the first in slice 2 and the second in slice 2 as well, a
    # point at 3.5 in slice 4, so a rater's count depended on the rounding, not on the EPVS.
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    regions = np.full((8, 8, 8), 2, np.uint8)
    boundary = [[1, 1, 7.5], [2, 1, 3 * 2.4999999999999996], [3, 1, 10.5]]  # 2|3, 2|3, 3|4
    inside = [[4, 1, 9.0]]  # slice 3 only
    world = np.array(boundary + inside)
    keys = side_slice_keys(world, ["L"] * 4, regions, affine, 2)
    assert keys == [[("L", 2), ("L", 3)], [("L", 2), ("L", 3)], [("L", 3), ("L", 4)],
                    [("L", 3)]]
    assert max_side_slice_count(world, ["L"] * 4, regions, affine, 2) == 4  # slice 3
    assert list(slices_of(2.5 - 0.9 * SLICE_TIE_VOXELS)) == [2, 3]
    assert list(slices_of(2.5 - 2 * SLICE_TIE_VOXELS)) == [2]
    assert list(slices_of(-0.5)) == [-1, 0]


def test_a_boundary_point_counts_where_each_slice_has_the_region():
    # The region is looked up in each slice the point counts in: basal ganglia (2) in slice 2
    # only, so a point on the 2|3 boundary counts in slice 2 alone; midline points never count.
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    regions = np.zeros((8, 8, 8), np.uint8)
    regions[:, :, 2] = 2
    keys = side_slice_keys(np.array([[1, 1, 7.5], [1, 1, 7.5]]), ["R", "M"], regions, affine, 2)
    assert keys == [[("R", 2)], []]


def test_a_point_in_a_ventricle_voxel_counts_in_the_tissue_beside_it_on_its_slice():
    # 1 mm in-plane, 3 mm slices. Slice 2: basal ganglia (2) at x <= 5, a ventricle (1) at
    # x 6-7, then x >= 8 background. An EPVS at x = 6 (a ventricle voxel: the map is a voxel
    # off, the EPVS itself is CSF-like) takes the tissue within 4 mm in its slice: the basal
    # ganglia; one at x = 12 has no tissue within 4 mm (x 8-16 background) and counts nowhere.
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    regions = np.zeros((20, 8, 6), np.uint8)
    regions[:6, :, 2] = 2
    regions[6:8, :, 2] = 1
    regions[:, :, 3] = 4  # the slice above: centrum semiovale everywhere
    world = np.array([[6.0, 3.0, 6.0], [12.0, 3.0, 6.0], [3.0, 3.0, 6.0]])
    keys = side_slice_keys(world, ["L"] * 3, regions, affine, 2)
    assert keys == [[("L", 2)], [], [("L", 2)]]
    assert max_side_slice_count(world, ["L"] * 3, regions, affine, 2) == 2
    # Tissue in another slice does not count: the search stays in the slice's plane.
    regions[6:8, :, 2] = 9
    regions[:6, :, 2] = 0
    assert side_slice_keys(world[:1], ["L"], regions, affine, (2, 4)) == [[]]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_ordinal_probabilities_hand_computed():
    probabilities, cumulative = ordinal_probabilities(
        np.array([_logit(p) for p in (0.9, 0.6, 0.3, 0.1)]))
    np.testing.assert_allclose(probabilities, [0.1, 0.3, 0.3, 0.2, 0.1], atol=1e-12)
    np.testing.assert_allclose(cumulative, [0.9, 0.6, 0.3, 0.1], atol=1e-12)
    assert ordinal_class(np.array([_logit(p) for p in (0.9, 0.6, 0.3, 0.1)])) == 2
    # Not rank-consistent: the class probabilities as the TF decoding gives them, and cumulative
    # probabilities that agree with them (non-increasing).
    probabilities, cumulative = ordinal_probabilities(
        np.array([_logit(p) for p in (0.3, 0.6, 0.2, 0.1)]))
    np.testing.assert_allclose(probabilities, np.array([0.7, 0, 0.4, 0.1, 0.1]) / 1.3, atol=1e-12)
    np.testing.assert_allclose(cumulative, np.array([0.6, 0.6, 0.2, 0.1]) / 1.3, atol=1e-12)
    assert np.all(np.diff(cumulative) <= 0)


def test_ordinal_probabilities_match_the_tf_decoding():
    from csvdnet.models.coral_head import ordinal_decode

    rng = np.random.default_rng(1)
    consistent = -np.sort(-rng.normal(0, 3, (64, 4)), axis=1)  # what a CORAL head gives
    arbitrary = rng.normal(0, 3, (64, 4))
    for logits in (consistent, arbitrary):
        classes, tf_probabilities = ordinal_decode(logits.astype("float32"))
        probabilities, cumulative = ordinal_probabilities(logits)
        np.testing.assert_allclose(probabilities, np.asarray(tf_probabilities), atol=1e-5)
        np.testing.assert_array_equal(ordinal_class(logits), np.asarray(classes))
        assert probabilities.shape == (64, 5) and cumulative.shape == (64, 4)
    np.testing.assert_allclose(ordinal_probabilities(consistent)[1],
                               1 / (1 + np.exp(-consistent)), atol=1e-12)
    np.testing.assert_array_equal(np.sum(ordinal_probabilities(consistent)[1] > 0.5, axis=1),
                                  ordinal_class(consistent))


def test_config_names_rule_sets_that_exist():
    from csvdnet.config import load_config

    assert load_config(None).inference.rule_sets == tuple(RULE_SETS)
    chosen = load_config(None, ["inference.rule_sets=[caa-svd-2016]"]).inference.rule_sets
    assert chosen == ("caa-svd-2016",)
    with pytest.raises(CsvdnetInputError, match=r"inference.rule_sets\[0\].*'staals-2014'"):
        load_config(None, ["inference.rule_sets=[staals2014]"])
