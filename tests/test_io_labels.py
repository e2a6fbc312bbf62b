"""csvdnet.io.labels: masks and point labels on tiny volumes; expectations computed by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest

from _nifti_files import LPS, RAMP, SHAPE, raises_input_error, write_nifti
from csvdnet.io import Image, load_mask, load_nifti, read_points, write_points

# --------------------------------------------------------------------------------------------
# Masks

def test_all_zero_mask_is_valid_and_mask_is_thresholded_at_half(tmp_path, caplog):
    values = np.zeros(SHAPE, np.float32)
    values[0, 0, :5] = [0.4, 0.5, 0.6, 1, 1]
    empty = write_nifti(tmp_path / "empty.nii.gz", np.zeros(SHAPE, np.uint8))
    graded = write_nifti(tmp_path / "graded.nii.gz", values)

    assert load_nifti(empty, kind="mask").data.max() == 0
    assert load_mask(empty).data.max() == 0
    with caplog.at_level("WARNING", logger="csvdnet.io.labels"):
        mask = load_mask(graded)
    assert "holding fractions (0, 0.4, 0.5, 0.6, 1) is kept where > 0.5" in caplog.text
    assert mask.data.dtype == np.float32
    assert mask.data[0, 0, :5].tolist() == [0, 0, 1, 1, 1]
    assert mask.data.sum() == 3


def test_a_label_map_given_as_a_mask_is_refused_naming_its_values(tmp_path):
    values = np.zeros(SHAPE, np.uint8)
    values[0, 0, :3] = [1, 2, 3]  # e.g. the WMH challenge's label 2 "other pathology"
    path = write_nifti(tmp_path / "wmh.nii.gz", values)

    with raises_input_error(path, r"a mask must hold 0 and 1, this one holds 0, 1, 2, 3: a "
                                  r"label map\?"):
        load_mask(path)


def test_four_d_mask_is_refused(tmp_path):
    path = write_nifti(tmp_path / "wmh.nii.gz", np.zeros(SHAPE + (2,), np.uint8))

    with raises_input_error(path, "is 4-D with shape .*; a label must be 3-D"):
        load_mask(path)


@pytest.mark.parametrize("shape, shift, axes, reason", [
    (SHAPE, 1e-4, 0.0, None),  # float32 header round-off is fine
    ((8, 9, 11), 0.0, 0.0, r"shape \(8, 9, 11\) vs \(8, 9, 10\)"),
    (SHAPE, 0.01, 0.0, r"same shape, but the affine origin differs by up to 0.01 mm \(label "
                       r"affine \[-1\.5 0 0 90\.01; 0 -2 0 120; 0 0 2\.5 -59\.99\], image "
                       r"affine \[-1\.5 0 0 90; 0 -2 0 120; 0 0 2\.5 -60\]"),
    (SHAPE, 0.0, 1e-3, "same shape, but the affine voxel axes differ by up to 0.001"),
])
def test_mask_must_share_the_grid_of_its_sequence(tmp_path, shape, shift, axes, reason):
    flair = Image(RAMP, LPS, tmp_path / "flair.nii.gz")
    affine = LPS.copy()
    affine[:3, 3] += shift
    affine[0, 0] += axes
    path = write_nifti(tmp_path / "wmh.nii.gz", np.zeros(shape, np.uint8), affine)

    if reason is None:
        assert load_mask(path, like=flair).shape == SHAPE
    else:
        with raises_input_error(path, f"not on the grid of {re.escape(str(flair.path))}: {reason}"):
            load_mask(path, like=flair)


# --------------------------------------------------------------------------------------------
# Points

def test_points_from_csv_ignore_extra_columns(tmp_path):
    path = tmp_path / "cmb.csv"
    path.write_text("id,z,y,x,confidence\n1,3,-2,1.5,0.9\n\n2, -30 ,20.25,-10,0.5\n")

    points = read_points(path)

    assert points.dtype == np.float64
    np.testing.assert_array_equal(points, [[1.5, -2, 3], [-10, 20.25, -30]])


def test_points_from_empty_csv_with_header(tmp_path):
    path = tmp_path / "cmb.csv"
    path.write_text("x,y,z\n")

    assert read_points(path).shape == (0, 3)


@pytest.mark.parametrize("text, reason", [
    ("x,y,confidence\n1,2,0.5\n", r"missing column\(s\) z \(header: x, y, confidence\)"),
    ("", r"missing column\(s\) x, y, z \(header: none\)"),
    ("x,y,z\n1,2,3\n4,abc,6\n", "row 3, column y: 'abc' is not a finite number"),
    ("x,y,z\n1,2,\n", "row 2, column z: an empty cell is not a finite number"),
    ("x,y,z\n1,2,nan\n", "row 2, column z: 'nan' is not a finite number"),
    ("x,y,z\n1,2,3,4\n", "row 2 has 4 cells, the header 3"),
])
def test_bad_point_csv_is_refused_naming_row_and_column(tmp_path, text, reason):
    path = tmp_path / "cmb.csv"
    path.write_text(text)

    with raises_input_error(path, reason):
        read_points(path)


def test_binary_label_map_gives_one_point_per_26_connected_component(tmp_path):
    blobs = np.zeros(SHAPE, np.uint8)
    blobs[1, 1, 1] = blobs[2, 2, 2] = 1  # touch at a corner only: one component
    blobs[5, 6, 7] = blobs[5, 6, 8] = 1
    affine = np.diag([2.0, 2, 2, 1])
    affine[:3, 3] = [-10, -20, -30]
    path = write_nifti(tmp_path / "cmb.nii.gz", blobs, affine)

    points = read_points(path)

    # centres (1.5, 1.5, 1.5) and (5, 6, 7.5) -> world 2 * ijk + (-10, -20, -30)
    np.testing.assert_allclose(sorted(points.tolist()), [[-7, -17, -27], [0, -8, -15]])


def test_integer_label_map_gives_one_point_per_label_value(tmp_path):
    labels = np.zeros(SHAPE, np.int16)
    labels[0, 0, 0] = labels[4, 0, 0] = 1  # one label in two pieces: still one point
    labels[6, 6, 6] = labels[6, 6, 7] = 2
    affine = np.diag([-1.0, -1, 1, 1])
    affine[:3, 3] = [10, 10, 0]
    path = write_nifti(tmp_path / "epvs.nii", labels, affine)

    points = read_points(path)

    # label 1 centre (2, 0, 0) -> (8, 10, 0); label 2 centre (6, 6, 6.5) -> (4, 4, 6.5)
    np.testing.assert_allclose(points, [[8, 10, 0], [4, 4, 6.5]])


def test_label_map_with_fractional_values_is_refused(tmp_path):
    values = np.zeros(SHAPE, np.float32)
    values[1, 1, 1] = 0.5
    path = write_nifti(tmp_path / "cmb.nii.gz", values)

    with raises_input_error(path, "a label map must hold non-negative integers"):
        read_points(path)


def test_empty_label_map_gives_no_points(tmp_path):
    path = write_nifti(tmp_path / "cmb.nii.gz", np.zeros(SHAPE, np.uint8))

    assert read_points(path).shape == (0, 3)


def test_points_must_lie_in_the_field_of_view(tmp_path):
    flair = Image(RAMP, np.eye(4), tmp_path / "flair.nii.gz")
    inside = tmp_path / "inside.csv"
    inside.write_text("x,y,z\n-0.4,0,0\n7.5,8.5,9.5\n")  # within half a voxel of the grid
    outside = tmp_path / "outside.csv"
    outside.write_text("x,y,z\n0,0,0\n0,-0.6,0\n9,0,0\n")

    assert read_points(inside, like=flair).shape == (2, 3)
    with raises_input_error(outside, r"point 2 of 3 at \(0, -0.6, 0\) mm is outside the field of "
                                     f"view of {re.escape(str(flair.path))}"):
        read_points(outside, like=flair)


def test_write_points_adds_voxel_and_extra_columns_and_reads_back(tmp_path):
    world = np.array([[1.5, -2, 3], [-10, 20.25, -30]])
    path = tmp_path / "out" / "cmb_points.csv"

    write_points(path, world, affine=LPS,
                 columns={"confidence": np.array([0.9, 0.25], np.float32),
                          "region": ["deep", "lobar"]})

    # i = (x - 90) / -1.5, j = (y - 120) / -2, k = (z + 60) / 2.5
    assert path.read_text().splitlines() == [
        "x,y,z,i,j,k,confidence,region",
        "1.5,-2.0,3.0,59.0,61.0,25.2,0.9,deep",
        "-10.0,20.25,-30.0,66.667,49.875,12.0,0.25,lobar",
    ]
    np.testing.assert_array_equal(read_points(path), world)


def test_write_points_without_points_or_affine(tmp_path):
    path = write_points(tmp_path / "epvs_points.csv", np.zeros((0, 3)))

    assert path.read_text() == "x,y,z\n"
    assert read_points(path).shape == (0, 3)


def test_write_points_rejects_mismatched_columns(tmp_path):
    with pytest.raises(ValueError, match="column 'confidence' has 1 values for 2 points"):
        write_points(tmp_path / "p.csv", np.zeros((2, 3)), columns={"confidence": [0.5]})
    with pytest.raises(ValueError, match="reserved"):
        write_points(tmp_path / "p.csv", np.zeros((2, 3)), columns={"i": [1, 2]})


# --------------------------------------------------------------------------------------------
