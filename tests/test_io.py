"""Tests of csvdnet.io on tiny volumes written in tmp_path; expectations are computed by hand."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csvdnet.errors import CsvdnetInputError
from csvdnet.io import (Image, Ratings, load_mask, load_nifti, load_subject, read_cohort,
                        read_points, read_ratings, save_nifti, write_points, write_ratings)

SHAPE = (8, 9, 10)
RAMP = np.arange(720, dtype=np.float32).reshape(SHAPE)  # RAMP[i, j, k] = 90 i + 10 j + k
# Left-posterior-superior voxel axes: i runs to the left, j to the back, in RAS world mm.
LPS = np.array([[-1.5, 0, 0, 90], [0, -2, 0, 120], [0, 0, 2.5, -60], [0, 0, 0, 1]])


def write_nifti(path: Path, data: np.ndarray, sform: np.ndarray | None = np.eye(4), *,
                qform: np.ndarray | None = None, cls: type = nib.Nifti1Image) -> Path:
    """Write ``data`` with exactly these header transforms (code 1 each, code 0 when None)."""
    data = np.asarray(data)
    header = cls.header_class()
    header.set_data_dtype(data.dtype)
    header.set_sform(sform, code=0 if sform is None else 1)  # written as is, even if invalid
    header.set_qform(qform, code=0 if qform is None else 1)
    nib.save(cls(data, None, header=header), path)
    return path


def raises_input_error(path: Path, reason: str):
    """pytest.raises for a CsvdnetInputError whose message is ``<path>: <reason regex>``."""
    return pytest.raises(CsvdnetInputError, match=re.escape(str(path)) + ": " + reason)


# --------------------------------------------------------------------------------------------
# NIfTI load / save

@pytest.mark.parametrize("name", ["image.nii", "image.nii.gz"])
def test_save_then_load_round_trips_values_and_lps_affine(tmp_path, name):
    path = save_nifti(RAMP, LPS, tmp_path / name)

    image = load_nifti(path)

    assert image.path == path and image.shape == SHAPE
    assert image.data.dtype == np.float32 and np.array_equal(image.data, RAMP)
    np.testing.assert_allclose(image.affine, LPS, atol=1e-6)
    assert image.spacing == pytest.approx((1.5, 2.0, 2.5))
    header = nib.load(path).header
    assert (header["sform_code"], header["qform_code"]) == (1, 1)
    np.testing.assert_allclose(header.get_qform(), LPS, atol=1e-5)
    assert header.get_xyzt_units() == ("mm", "sec")
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")  # gzip magic
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


@pytest.mark.parametrize("data, dtype, stored, values", [
    (np.array([True, False]), None, np.uint8, [1, 0]),
    (np.array([0.25, 1.5], np.float32), None, np.float32, [0.25, 1.5]),
    (np.array([-3, 7], np.int16), None, np.int16, [-3, 7]),
    (np.array([0.2, 2.6, 254.9]), np.uint8, np.uint8, [0, 3, 255]),  # rounded, not truncated
])
def test_save_keeps_or_applies_dtype(tmp_path, data, dtype, stored, values):
    volume = np.zeros((len(data), 1, 1), dtype=data.dtype)
    volume[:, 0, 0] = data

    path = save_nifti(volume, np.eye(4), tmp_path / "out.nii.gz", dtype=dtype)

    img = nib.load(path)
    assert img.get_data_dtype() == stored
    assert np.asanyarray(img.dataobj)[:, 0, 0].tolist() == values


def test_save_rejects_other_extensions_and_invalid_affines(tmp_path):
    with raises_input_error(tmp_path / "out.mgz", "a NIfTI output must end in .nii or .nii.gz"):
        save_nifti(RAMP, np.eye(4), tmp_path / "out.mgz")
    parallel_axes = np.array([[1.0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="singular"):
        save_nifti(RAMP, parallel_axes, tmp_path / "out.nii")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cls", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_load_applies_slope_and_intercept_to_int16(tmp_path, cls, suffix):
    raw = RAMP.astype(np.int16)
    img = cls(raw, LPS)
    img.header.set_slope_inter(2, 10)
    path = tmp_path / f"scaled{suffix}"
    nib.save(img, path)
    on_disk = nib.load(path)
    assert type(on_disk) is cls and on_disk.dataobj.slope == 2  # really a scaled NIfTI-1 / 2

    image = load_nifti(path)

    assert image.data.dtype == np.float32
    assert image.data[0, 0, 0] == 10  # 2 * 0 + 10
    assert image.data[1, 2, 3] == 236  # raw 90 + 20 + 3 = 113 -> 2 * 113 + 10
    assert image.data[7, 8, 9] == 1448  # raw 719 -> 2 * 719 + 10
    np.testing.assert_allclose(image.affine, LPS, atol=1e-6)


# 90 degrees about z, voxel sizes 2, 3, 4: i runs along +y, j along -x.
ROTATED = np.array([[0, -3, 0, 5], [2, 0, 0, 6], [0, 0, 4, 7], [0, 0, 0, 1.0]])
# nibabel's fallback for pixdim 1: the grid centred on the origin, i flipped (radiological).
FALLBACK = np.array([[-1, 0, 0, 3.5], [0, 1, 0, -4], [0, 0, 1, -4.5], [0, 0, 0, 1.0]])


@pytest.mark.parametrize("sform, qform, expected", [
    (None, ROTATED, ROTATED),  # qform only
    (np.diag([2.0, 2, 2, 1]), ROTATED, np.diag([2.0, 2, 2, 1])),  # sform wins over qform
    (None, None, FALLBACK),
], ids=["qform-only", "sform-first", "fallback"])
def test_affine_is_sform_else_qform_else_fallback(tmp_path, sform, qform, expected):
    path = write_nifti(tmp_path / "image.nii", RAMP, sform, qform=qform)

    image = load_nifti(path)

    np.testing.assert_allclose(image.affine, expected, atol=1e-6)


def test_spacing_of_a_rotated_grid_is_the_column_lengths():
    assert Image(RAMP, ROTATED).spacing == pytest.approx((2.0, 3.0, 4.0))


def test_trailing_singleton_dimensions_are_dropped(tmp_path):
    path = write_nifti(tmp_path / "image.nii.gz", RAMP[..., None, None])

    assert load_nifti(path).shape == SHAPE


def write_dwi(folder: Path, bvals: str | None) -> Path:
    """Four DWI volumes: RAMP + 100, + 50, + 70, + 20, with an optional .bval text."""
    series = np.stack([RAMP + offset for offset in (100, 50, 70, 20)], axis=-1)
    path = write_nifti(folder / "dwi.nii.gz", series)
    if bvals is not None:
        (folder / "dwi.bval").write_text(bvals)
    return path


def test_dwi_series_becomes_the_mean_of_its_b1000_volumes(tmp_path):
    path = write_dwi(tmp_path, "0 1000\n995   2000\n")  # 995: b-values as scanners round them

    image = load_nifti(path)

    assert image.shape == SHAPE
    np.testing.assert_array_equal(image.data, RAMP + 60)  # (50 + 70) / 2


@pytest.mark.parametrize("bvals, at, reason", [
    (None, "dwi.nii.gz", r"is 4-D \(4 volumes\); a \.bval file beside it \(dwi\.bval\) is needed "
                         "to pick the b1000 volumes"),
    ("0 1000 1000", "dwi.bval", "has 3 b-values but dwi.nii.gz has 4 volumes"),
    ("0 500 2000 3000", "dwi.bval",
     r"no volume has a b-value within 800\.\.1200 .*0, 500, 2000, 3000"),
    ("0 1000 x 2000", "dwi.bval", "not an FSL .bval file"),
], ids=["no-bval", "count", "no-b1000", "not-numbers"])
def test_dwi_series_without_usable_bval_is_refused(tmp_path, bvals, at, reason):
    path = write_dwi(tmp_path, bvals)

    with raises_input_error(tmp_path / at, reason):
        load_nifti(path)


def _gz_cut(tmp_path: Path) -> Path:
    noise = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)  # incompressible
    path = save_nifti(noise, np.eye(4), tmp_path / "image.nii.gz")
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) * 2 // 3])
    return path


def _cut(tmp_path: Path, n_bytes: int) -> Path:
    path = save_nifti(RAMP, np.eye(4), tmp_path / "image.nii")
    path.write_bytes(path.read_bytes()[:n_bytes])
    return path


def _text(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("subject,flair\ns01,flair.nii.gz\n")
    return path


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "image.nii"
    path.write_bytes(np.random.default_rng(1).bytes(2000))
    return path


def _sform(matrix: list[list[float]]):
    sform = np.eye(4)
    sform[:3, :3] = matrix
    return lambda tmp_path: write_nifti(tmp_path / "image.nii", RAMP, sform)


def _data(data: np.ndarray):
    return lambda tmp_path: write_nifti(tmp_path / "image.nii.gz", data)


def _nan_and_inf() -> np.ndarray:
    data = RAMP.copy()
    data[0, 0, 0] = data[1, 1, 1] = np.nan
    data[2, 2, 2] = -np.inf
    return data


@pytest.mark.parametrize("make, reason", [
    (lambda tmp_path: tmp_path / "absent.nii.gz", "file not found"),
    (lambda tmp_path: _text(tmp_path, "image.txt"),
     r"not a NIfTI file \(expected a .nii or .nii.gz name\)"),
    (lambda tmp_path: _text(tmp_path, "image.nii"), "not a readable NIfTI-1/NIfTI-2 file"),
    (lambda tmp_path: _text(tmp_path, "image.nii.gz"), "not a readable NIfTI-1/NIfTI-2 file"),
    (_random_bytes, "not a readable NIfTI-1/NIfTI-2 file"),
    (lambda tmp_path: _cut(tmp_path, 200), "not a readable NIfTI-1/NIfTI-2 file"),  # in the header
    (lambda tmp_path: _cut(tmp_path, 352 + 1000), "image data is truncated or corrupt"),
    (_gz_cut, "image data is truncated or corrupt"),
    (_data(RAMP[:, :, 0]), r"is 2-D with shape \(8, 9\); a 3-D volume is needed"),
    (_data(RAMP[:, 0, 0]), r"is 1-D with shape \(8,\); a 3-D volume is needed"),
    (_data(np.ones((8, 9, 10, 2, 2), np.float32)), "is 5-D with shape"),
    (_data(np.zeros(SHAPE, np.float32)), r"all voxels are zero \(an empty image\)"),
    (_data(np.full(SHAPE, 7, np.int16)), r"all voxels have the same value 7 \(a constant image\)"),
    (_data(_nan_and_inf()), "3 of 720 voxels are NaN or infinite"),
    (_data(RAMP.astype(np.complex64)), "unsupported voxel type complex64"),
    (_sform([[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]]),
     "the sform is unusable: it has NaN or infinite"),
    (_sform([[1, 1, 0], [0, 0, 0], [0, 0, 1]]), r"the sform is unusable: it is singular"),
    (_sform([[1, 0, 0], [0, 0, 0], [0, 0, 1]]), "the sform is unusable: voxel size 0 along axis 1"),
], ids=["missing", "txt", "text-nii", "text-gz", "random", "cut-header", "cut-data", "cut-gz",
        "2d", "1d", "5d", "zero", "constant", "nan-inf", "complex", "nan-sform", "singular",
        "zero-voxel"])
def test_bad_images_are_refused_naming_file_and_reason(tmp_path, make, reason):
    path = make(tmp_path)

    with raises_input_error(path, reason):
        load_nifti(path)


# --------------------------------------------------------------------------------------------
# Masks

def test_all_zero_mask_is_valid_and_mask_is_thresholded_at_half(tmp_path):
    values = np.zeros(SHAPE, np.float32)
    values[0, 0, :5] = [0.4, 0.5, 0.6, 1, 255]
    empty = write_nifti(tmp_path / "empty.nii.gz", np.zeros(SHAPE, np.uint8))
    graded = write_nifti(tmp_path / "graded.nii.gz", values)

    assert load_nifti(empty, kind="mask").data.max() == 0
    assert load_mask(empty).data.max() == 0
    mask = load_mask(graded)
    assert mask.data.dtype == np.float32
    assert mask.data[0, 0, :5].tolist() == [0, 0, 1, 1, 1]
    assert mask.data.sum() == 3


def test_four_d_mask_is_refused(tmp_path):
    path = write_nifti(tmp_path / "wmh.nii.gz", np.zeros(SHAPE + (2,), np.uint8))

    with raises_input_error(path, "is 4-D with shape .*; a label must be 3-D"):
        load_mask(path)


@pytest.mark.parametrize("shape, shift, axes, reason", [
    (SHAPE, 1e-4, 0.0, None),  # float32 header round-off is fine
    ((8, 9, 11), 0.0, 0.0, r"shape \(8, 9, 11\) vs \(8, 9, 10\)"),
    (SHAPE, 0.01, 0.0, "affine origin differs by up to 0.01 mm"),
    (SHAPE, 0.0, 1e-3, "affine voxel axes differ by up to 0.001"),
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
# Ratings

def test_ratings_round_trip(tmp_path):
    ratings = {"s01": Ratings(1, 2, 3, 0, 4, 1, 2), "s02": Ratings(fazekas_pv=3)}
    path = tmp_path / "ratings.csv"

    write_ratings(path, ratings)

    assert path.read_text().splitlines() == [
        "subject,fazekas_pv,fazekas_deep,epvs_bg_grade,cmb_count,lacune_count,rssi_count,"
        "total_score",
        "s01,1,2,3,0,4,1,2",
        "s02,3,,,,,,",
    ]
    assert read_ratings(path) == ratings


def test_ratings_accept_integral_decimals_and_a_subset_of_columns(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("\ufeffsubject,cmb_count,fazekas_pv\ns01,12.0,\n")  # a spreadsheet's BOM

    assert read_ratings(path) == {"s01": Ratings(cmb_count=12)}


@pytest.mark.parametrize("rows, reason", [
    ("s01,4,,,,,,", r"row 2, column fazekas_pv: 4 is out of range \(0\.\.3\)"),
    ("s01,,-1,,,,,", r"row 2, column fazekas_deep: -1 is out of range \(0\.\.3\)"),
    ("s01,,,5,,,,", r"row 2, column epvs_bg_grade: 5 is out of range \(0\.\.4\)"),
    ("s01,,,,-2,,,", r"row 2, column cmb_count: -2 is out of range \(>= 0\)"),
    ("s01,,,,,,,5", r"row 2, column total_score: 5 is out of range \(0\.\.4\)"),
    ("s01,2.5,,,,,,", "row 2, column fazekas_pv: '2.5' is not an integer"),
    ("s01,,,,,many,,", "row 2, column lacune_count: 'many' is not an integer"),
    ("s01,1,,,,,,\ns02,1,,,,,,\ns01,2,,,,,,", r"row 4: subject s01 is rated twice \(also row 2\)"),
    (",1,,,,,,", "row 2, column subject: an empty cell is not a usable subject id"),
    ("../s01,1,,,,,,", "row 2, column subject: '../s01' is not a usable subject id"),
])
def test_bad_ratings_are_refused_naming_row_and_column(tmp_path, rows, reason):
    path = tmp_path / "ratings.csv"
    path.write_text("subject,fazekas_pv,fazekas_deep,epvs_bg_grade,cmb_count,lacune_count,"
                    f"rssi_count,total_score\n{rows}\n")

    with raises_input_error(path, reason):
        read_ratings(path)


@pytest.mark.parametrize("header, reason", [
    ("subject,fazekas", r"unknown column 'fazekas' \(known: subject, fazekas_pv, fazekas_deep, "),
    ("id,fazekas_pv", r"missing column\(s\) subject"),
    ("subject,cmb_count,cmb_count", "column 'cmb_count' appears more than once"),
])
def test_ratings_with_bad_columns_are_refused(tmp_path, header, reason):
    path = tmp_path / "ratings.csv"
    path.write_text(f"{header}\ns01,1\n")

    with raises_input_error(path, reason):
        read_ratings(path)


def test_ratings_values_are_validated_in_code_too():
    with pytest.raises(ValueError, match=r"fazekas_pv: 4 is out of range"):
        Ratings(fazekas_pv=4)


# --------------------------------------------------------------------------------------------
# Cohorts: folder form

def touch(root: Path, *names: str) -> None:
    """Empty files: discovery only locates files, it must never read them."""
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()


def make_cohort_folder(root: Path) -> Path:
    touch(root, "s02/flair.nii.gz", "s02/t1.nii", "s02/dwi.nii.gz", "s02/labels/wmh.nii.gz",
          "s02/labels/rssi@dwi.nii.gz", "s02/labels/cmb.csv", "s02/labels/notes.txt",
          "s01/flair.nii", "s01/flair.nii.bak", "backup/flair.nii.bak", "docs/readme.txt",
          ".s03.part/flair.nii.gz")
    (root / "s01" / "labels").mkdir()
    (root / "ratings.csv").write_text("subject,fazekas_pv,cmb_count\ns02,2,3\n")
    return root


def test_cohort_folder_discovery(tmp_path):
    root = make_cohort_folder(tmp_path / "cohort")

    cohort = read_cohort(root)

    assert [s.id for s in cohort] == ["s01", "s02"] and len(cohort) == 2
    assert cohort.root == root and cohort.manifest is None
    assert cohort.sequences == ("flair", "t1", "t2", "swi", "dwi") and cohort.reference == "flair"
    s01, s02 = cohort["s01"], cohort["s02"]
    assert s01.sequences == {"flair": root / "s01" / "flair.nii"}
    assert s01.labels == {} and s01.present_labels() == () and s01.ratings is None
    assert list(s02.sequences) == ["flair", "t1", "dwi"]  # cohort order, not file order
    assert s02.sequences["dwi"] == root / "s02" / "dwi.nii.gz"
    assert s02.labels == {"wmh": root / "s02/labels/wmh.nii.gz",
                          "rssi": root / "s02/labels/rssi@dwi.nii.gz",
                          "cmb": root / "s02/labels/cmb.csv"}
    assert s02.label_sequence == {"wmh": "flair", "rssi": "dwi", "cmb": "flair"}
    assert s02.present_labels() == ("wmh", "rssi", "cmb")  # lacune, epvs absent, not faked
    assert s02.ratings == Ratings(fazekas_pv=2, cmb_count=3)
    with pytest.raises(KeyError, match="s03"):
        cohort["s03"]


def test_cohort_folder_with_fewer_sequences(tmp_path):
    root = make_cohort_folder(tmp_path / "cohort")
    (root / "s02" / "labels" / "rssi@dwi.nii.gz").unlink()

    cohort = read_cohort(root, sequences=("t1", "flair"))

    assert list(cohort["s02"].sequences) == ["t1", "flair"]


@pytest.mark.parametrize("change, at, reason", [
    (lambda root: (root / "s01/flair.nii").rename(root / "s01/t1.nii"), "s01",
     r"no flair image \(the reference sequence\)"),
    (lambda root: touch(root, "s01/labels/wmh_mask.nii.gz"), "s01/labels/wmh_mask.nii.gz",
     "unknown label 'wmh_mask' .*wmh, rssi, lacune, cmb, epvs, regions, brain_mask"),
    (lambda root: touch(root, "s01/labels/rssi@dwi.nii.gz"), "s01",
     r"label rssi \(rssi@dwi.nii.gz\) is drawn on dwi, but the subject has no dwi image"),
    (lambda root: touch(root, "s01/labels/rssi@adc.nii.gz"), "s01/labels/rssi@adc.nii.gz",
     "label 'rssi@adc' is drawn on 'adc', which is not one of the sequences"),
    (lambda root: touch(root, "s01/labels/wmh.csv"), "s01/labels",
     "wmh.csv: label wmh must be a .nii/.nii.gz file"),
    (lambda root: touch(root, "s01/labels/cmb.csv", "s01/labels/cmb.nii.gz"), "s01/labels",
     "two files for label cmb: cmb.csv and cmb.nii.gz"),
    (lambda root: touch(root, "s01/flair.nii.gz"), "s01", "both flair.nii.gz and flair.nii"),
    (lambda root: (root / "ratings.csv").write_text("subject,cmb_count\ns09,1\n"), "ratings.csv",
     "subject s09 is rated but not in the cohort"),
], ids=["no-reference", "unknown-label", "label-sequence-absent", "label-sequence-unknown",
        "mask-as-csv", "two-files", "two-flairs", "stranger-rated"])
def test_bad_cohort_folders_are_refused(tmp_path, change, at, reason):
    root = make_cohort_folder(tmp_path / "cohort")
    change(root)

    with raises_input_error(root / at, reason):
        read_cohort(root)


def test_cohort_path_must_exist_and_hold_subjects(tmp_path):
    with raises_input_error(tmp_path / "absent", "cohort folder or manifest not found"):
        read_cohort(tmp_path / "absent")
    touch(tmp_path, "docs/flair.nii.bak")
    with raises_input_error(tmp_path, "no subject folders"):
        read_cohort(tmp_path)
    with raises_input_error(tmp_path, "reference sequence 'flair' is not one of the sequences"):
        read_cohort(tmp_path, sequences=("t1",))


def test_load_subject_loads_sequences_in_cohort_order(tmp_path):
    root = tmp_path / "cohort"
    (root / "s01").mkdir(parents=True)
    save_nifti(RAMP + 1, np.eye(4), root / "s01" / "t1.nii.gz")
    save_nifti(RAMP, LPS, root / "s01" / "flair.nii.gz")

    images = load_subject(read_cohort(root)["s01"])

    assert list(images) == ["flair", "t1"]
    assert np.array_equal(images["t1"].data, RAMP + 1)
    np.testing.assert_allclose(images["flair"].affine, LPS, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Cohorts: manifest form

MANIFEST_FILES = ("data/s01_flair.nii.gz", "data/s01_t1.nii", "data/s01_wmh.nii.gz",
                  "data/s01_cmb.csv", "data/s02_flair.nii.gz", "data/s02_dwi.nii.gz",
                  "data/s02_rssi.nii.gz")


def make_manifest(tmp_path: Path, rows: str, header: str | None = None) -> Path:
    study = tmp_path / "study"
    touch(study, *MANIFEST_FILES)
    manifest = study / "manifest.csv"
    header = "subject,flair,t1,dwi,wmh,rssi@dwi,cmb" if header is None else header
    manifest.write_text(f"{header}\n{rows}")
    return manifest


def test_manifest_paths_resolve_against_the_manifest(tmp_path, monkeypatch):
    study = tmp_path / "study"
    manifest = make_manifest(tmp_path, "s01,data/s01_flair.nii.gz,data/s01_t1.nii,,"
                                       "data/s01_wmh.nii.gz,,./data/s01_cmb.csv\n"
                                       f"s02,data/s02_flair.nii.gz,,{study}/data/s02_dwi.nii.gz,,"
                                       "data/s02_rssi.nii.gz,\n")
    (study / "ratings.csv").write_text("subject,total_score\ns01,1\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")

    cohort = read_cohort(Path("..") / "study" / "manifest.csv")

    data = study / "data"
    assert cohort.root == study and cohort.manifest == manifest
    assert [s.id for s in cohort] == ["s01", "s02"]
    s01, s02 = cohort["s01"], cohort["s02"]
    assert s01.sequences == {"flair": data / "s01_flair.nii.gz", "t1": data / "s01_t1.nii"}
    assert s01.labels == {"wmh": data / "s01_wmh.nii.gz", "cmb": data / "s01_cmb.csv"}
    assert s01.label_sequence == {"wmh": "flair", "cmb": "flair"}
    assert s01.ratings == Ratings(total_score=1)
    assert s02.sequences == {"flair": data / "s02_flair.nii.gz", "dwi": data / "s02_dwi.nii.gz"}
    assert s02.labels == {"rssi": data / "s02_rssi.nii.gz"}
    assert s02.label_sequence == {"rssi": "dwi"}
    assert s02.ratings is None


def test_manifest_sequences_follow_cohort_order_and_unused_ones_are_ignored(tmp_path):
    manifest = make_manifest(tmp_path, "s01,data/s01_t1.nii,data/s02_dwi.nii.gz,"
                                       "data/s01_flair.nii.gz\n", "subject,t1,dwi,flair")

    cohort = read_cohort(manifest, sequences=("flair", "t1"))

    assert list(cohort["s01"].sequences) == ["flair", "t1"]


@pytest.mark.parametrize("header, rows, reason", [
    (None, "s01,data/s01_flair.nii.gz,,,,,\ns01,data/s02_flair.nii.gz,,,,,\n",
     r"row 3: subject s01 is listed twice \(also row 2\)"),
    ("subject,flare", "s01,data/s01_flair.nii.gz\n",
     r"unknown column 'flare' \(known: subject, flair, t1, t2, swi, dwi, wmh, rssi, lacune, cmb, "
     "epvs, regions, brain_mask, or <label>@<sequence>\\)"),
    ("id,flair", "s01,data/s01_flair.nii.gz\n", r"missing column\(s\) subject"),
    (None, "s01,data/s01_flair.nii.gz,,,data/s01_lacune.nii.gz,,\n",
     r"row 2 \(subject s01\): column wmh: .*s01_lacune.nii.gz does not exist"),
    (None, "", r"no subjects \(the manifest has no data rows\)"),
    ("", "", r"missing column\(s\) subject \(header: none\)"),
    (None, "s01,,data/s01_t1.nii,,,,\n", r"row 2 \(subject s01\): no flair image"),
    (None, "s01,data/s01_flair.nii.gz,,,data/s01_cmb.csv,,\n",
     r"row 2 \(subject s01\): column wmh: s01_cmb.csv: label wmh must be a .nii/.nii.gz file"),
    (None, "s01,data/s01_cmb.csv,,,,,\n",
     r"row 2 \(subject s01\): column flair: s01_cmb.csv: a sequence must be a .nii/.nii.gz file"),
    (None, "s01,data/s01_flair.nii.gz,,,,data/s02_rssi.nii.gz,\n",
     r"row 2 \(subject s01\): label rssi \(s02_rssi.nii.gz\) is drawn on dwi, but the subject has "
     "no dwi image"),
    ("subject,flair,rssi@adc", "s01,data/s01_flair.nii.gz,\n",
     "column 'rssi@adc': label 'rssi@adc' is drawn on 'adc', which is not one of the sequences"),
], ids=["duplicate", "unknown-column", "no-subject-column", "missing-file", "no-rows", "empty-file",
        "no-reference", "mask-as-csv", "sequence-as-csv", "label-sequence-absent",
        "label-sequence-unknown"])
def test_bad_manifests_are_refused_naming_the_manifest_and_row(tmp_path, header, rows, reason):
    manifest = make_manifest(tmp_path, rows, header)

    with raises_input_error(manifest, reason):
        read_cohort(manifest)


def test_manifest_ratings_for_unknown_subject_are_refused(tmp_path):
    manifest = make_manifest(tmp_path, "s01,data/s01_flair.nii.gz,,,,,\n")
    ratings = manifest.parent / "ratings.csv"
    ratings.write_text("subject,cmb_count\ns01,0\ns02,1\n")

    with raises_input_error(ratings, "subject s02 is rated but not in the cohort"):
        read_cohort(manifest)
