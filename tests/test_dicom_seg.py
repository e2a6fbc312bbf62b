"""Which SEG a marker goes in, masks carried to a series' grid, a SEG on a multi-frame source."""

from __future__ import annotations

import datetime

import highdicom as hd
import numpy as np
import pytest

import _dicom_results_fixtures as fx
from csvdnet.dicom.geometry import read_series
from csvdnet.dicom.provenance import Provenance
from csvdnet.dicom.seg import build_seg, mask_on_grid, plan_segs

ALL = {"wmh", "lacune", "rssi", "cmb", "epvs"}


def _plans(channels, tasks=ALL):
    return [(p.channel, [m.task for m in p.markers], p.series_number, p.description)
            for p in plan_segs(set(channels), set(tasks))]


def test_each_marker_on_its_sequence():
    assert _plans({"flair", "t1", "t2", "swi", "dwi"}) == [
        ("flair", ["wmh", "lacune"], 9901, "csvdnet WMH+lacunes"),
        ("dwi", ["rssi"], 9902, "csvdnet RSSI"),
        ("swi", ["cmb"], 9903, "csvdnet microbleeds"),
        ("t2", ["epvs"], 9904, "csvdnet EPVS")]


def test_fallbacks_when_a_sequence_is_absent():
    assert _plans({"flair", "t2"}) == [
        ("flair", ["wmh", "lacune", "rssi"], 9901, "csvdnet WMH+lacunes+RSSI"),
        ("t2", ["cmb", "epvs"], 9903, "csvdnet microbleeds+EPVS")]
    assert _plans({"flair", "t1"}, {"wmh", "epvs"}) == [
        ("flair", ["wmh"], 9901, "csvdnet WMH"), ("t1", ["epvs"], 9904, "csvdnet EPVS")]
    assert _plans({"flair", "swi"}, {"wmh", "lacune"}) == [
        ("flair", ["wmh", "lacune"], 9901, "csvdnet WMH+lacunes")]  # not measured: no segment


def test_a_lesion_between_coarse_pixel_centres_keeps_one(tmp_path):
    grid = read_series("dwi", fx.write_series(tmp_path / "dwi", "dwi"))
    affine, shape = fx.flair_affine()
    mask = np.zeros(shape, bool)
    mask[fx.PLANTED["rssi"]] = True  # 3 x 4 x 3 mm, DWI pixels 3 x 3 x 5 mm
    assert not (grid.sample_labels(mask.astype(np.int32), affine) > 0).any()
    on_grid = mask_on_grid(grid, mask, affine)
    assert on_grid.sum() == 1
    big = np.zeros(shape, bool)
    big[fx.PLANTED["wmh"]] = True
    np.testing.assert_array_equal(mask_on_grid(grid, big, affine),
                                  grid.sample_labels(big.astype(np.int32), affine) > 0)


def test_seg_on_an_enhanced_multiframe_source(tmp_path):
    path = fx.write_enhanced(tmp_path / "t2", "swi")
    grid = read_series("t2", [path])
    (plan,) = plan_segs({"t2", "flair"}, {"epvs"})
    assert plan.channel == "t2"
    centre = grid.positions[4] + 20.0 * grid.row_dir + 30.0 * grid.col_dir
    provenance = Provenance(fx.STUDY, fx.MODEL_ID, fx.SHA,
                            datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc))
    seg = build_seg(plan, grid, {"epvs": grid.spheres(centre[None], 1.5)}, provenance)
    seg.save_as(tmp_path / "seg.dcm")
    read = hd.seg.segread(tmp_path / "seg.dcm")
    frames = read.get_pixels_by_source_frame(
        source_sop_instance_uid=grid.first.SOPInstanceUID,
        source_frame_numbers=list(range(1, grid.shape[0] + 1)), segment_numbers=[1],
        assert_missing_frames_are_empty=True)[..., 0]
    assert frames[4, 30, 25] == 1 and frames.sum() == grid.spheres(centre[None], 1.5).sum()


def test_plan_without_any_target_is_an_error():
    with pytest.raises(ValueError, match="no source series for wmh"):
        plan_segs({"t1"}, {"wmh"})
