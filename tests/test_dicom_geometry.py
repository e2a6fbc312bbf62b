"""Source series grids: reading and checking headers, labels and balls on a series' pixels."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

import _dicom_results_fixtures as fx
from csvdnet.dicom.geometry import lps_of_ras, read_series
from csvdnet.errors import CsvdnetInputError


def _pixel_world(grid):
    """LPS of every pixel centre, ``(frames, rows, cols, 3)``, computed the slow way."""
    f, r, c = np.indices(grid.shape)
    return (grid.positions[f] + (c * grid.spacing[1])[..., None] * grid.row_dir
            + (r * grid.spacing[0])[..., None] * grid.col_dir)


def test_frames_sorted_along_the_normal(tmp_path):
    paths = fx.write_series(tmp_path / "swi", "swi")
    grid = read_series("swi", paths)
    depth = grid.positions @ grid.normal
    assert np.all(np.diff(depth) > 0)
    assert [int(d.InstanceNumber) for d in grid.datasets] == list(range(1, len(paths) + 1))
    assert grid.shape == (16, 60, 70) and grid.spacing == (1.0, 0.8)


def test_labels_sampled_at_pixel_centres_of_an_oblique_grid(tmp_path):
    grid = read_series("swi", fx.write_series(tmp_path / "swi", "swi"))
    affine, shape = fx.flair_affine()
    labels = np.zeros(shape, np.int32)
    labels[5:30, 4:30, 1:9] = np.arange(1, 26)[:, None, None]  # a label per i column
    sampled = grid.sample_labels(labels, affine)
    world = lps_of_ras(_pixel_world(grid).reshape(-1, 3))
    voxel = np.rint((world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)
    inside = np.all((voxel >= 0) & (voxel < shape), axis=1)
    expected = np.zeros(len(voxel), np.int32)
    expected[inside] = labels[tuple(voxel[inside].T)]
    np.testing.assert_array_equal(sampled.reshape(-1), expected)
    assert sampled.any()


def test_balls_have_their_radius_and_a_tiny_one_keeps_its_pixel(tmp_path):
    grid = read_series("swi", fx.write_series(tmp_path / "swi", "swi"))
    centre = grid.positions[5] + 20.3 * grid.row_dir + 30.6 * grid.col_dir + 0.4 * grid.normal
    ball = grid.spheres(centre[None], 2.5)
    distance = np.linalg.norm(_pixel_world(grid) - centre, axis=-1)
    np.testing.assert_array_equal(ball, distance <= 2.5)
    tiny = grid.spheres(centre[None], 0.1)
    assert tiny.sum() == 1 and tiny[5, 31, 25]
    outside = grid.spheres((grid.positions[0] - 50 * grid.normal)[None], 2.5)
    assert not outside.any()


def test_enhanced_multiframe_keeps_its_frame_order(tmp_path):
    grid = read_series("swi", [fx.write_enhanced(tmp_path / "t2", "swi")])
    single = read_series("swi", fx.write_series(tmp_path / "single", "swi"))
    np.testing.assert_allclose(grid.positions, single.positions[::-1])
    assert len(grid.datasets) == 1 and grid.shape == single.shape


@pytest.mark.parametrize("change, reason", [
    (lambda ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 0, 0, -1]), "oriented unlike"),
    (lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.3"), "SeriesInstanceUID"),
    (lambda ds: setattr(ds, "ImagePositionPatient", [-31.0, -37.0, -7.5]), "same position"),
    (lambda ds: delattr(ds, "ImagePositionPatient"), "ImagePositionPatient"),
])
def test_inconsistent_series_named_by_file(tmp_path, change, reason):
    paths = fx.write_series(tmp_path / "dwi", "dwi")
    bad = sorted(paths)[3]
    ds = pydicom.dcmread(bad)
    change(ds)
    ds.save_as(bad)
    with pytest.raises(CsvdnetInputError, match=reason) as error:
        read_series("dwi", paths)
    assert bad.name in str(error.value)


def test_unreadable_file_named(tmp_path):
    paths = fx.write_series(tmp_path / "dwi", "dwi")
    paths[0].write_bytes(b"not dicom at all")
    with pytest.raises(CsvdnetInputError, match=f"{paths[0].name}.*not a readable DICOM"):
        read_series("dwi", paths)
    shutil.rmtree(tmp_path / "dwi")
