"""csvdnet.io.nifti: NIfTI load / save on tiny volumes; expectations computed by hand."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _nifti_files import LPS, RAMP, SHAPE, raises_input_error, write_nifti
from csvdnet.io import Image, load_nifti, read_grid, save_nifti

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
    (None, "dwi.nii.gz", r"is 4-D \(4 volumes\); a 3-D volume is needed, or, for a diffusion "
     r"series, a \.bval file beside it \(dwi\.bval\) to pick the b1000 volumes"),
    ("0 1000 1000", "dwi.bval", "has 3 b-values but dwi.nii.gz has 4 volumes"),
    ("0 500 2000 3000", "dwi.bval",
     r"no volume has a b-value within 800\.\.1200 .*0, 500, 2000, 3000"),
    ("0 1000 x 2000", "dwi.bval", "not an FSL .bval file"),
], ids=["no-bval", "count", "no-b1000", "not-numbers"])
def test_dwi_series_without_usable_bval_is_refused(tmp_path, bvals, at, reason):
    path = write_dwi(tmp_path, bvals)

    with raises_input_error(tmp_path / at, reason):
        load_nifti(path)


@pytest.mark.parametrize("name", ["flair.nii.gz", "T2_FLAIR.nii.gz", "t1w.nii.gz"])
def test_a_4d_structural_image_is_refused_as_such_not_asked_for_a_bval(tmp_path, name):
    path = write_dwi(tmp_path, None).rename(tmp_path / name)
    sequence = "t1" if name == "t1w.nii.gz" else "flair"

    with raises_input_error(path, rf"is 4-D \(4 volumes\), but a {sequence} image must be a 3-D "
                                  r"volume \(only a diffusion series, dwi, may be 4-D\)"):
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


def test_a_header_claiming_too_many_voxels_is_refused_before_reading(tmp_path):
    path = write_nifti(tmp_path / "huge.nii", np.zeros((2, 2, 2), np.float32) + RAMP[:2, :2, :2])
    raw = bytearray(path.read_bytes())
    dims = np.frombuffer(raw[40:56], dtype=np.int16).copy()
    dims[1:4] = 30000  # 30000^3 voxels claimed by a 2x2x2 file
    raw[40:56] = dims.tobytes()
    path.write_bytes(bytes(raw))

    with raises_input_error(path, r"the header claims shape \(30000, 30000, 30000\) = 2\.7e\+13 "
                                  r"voxels, more than the limit"):
        load_nifti(path)


def test_an_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    path = save_nifti(RAMP, LPS, tmp_path / "flair.nii.gz")

    def denied(*args, **kwargs):  # tests may run as root, whom file modes do not stop
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(nib, "load", denied)
    with raises_input_error(path, r"permission denied \(the file cannot be read\)"):
        load_nifti(path)


def test_read_grid_gives_load_niftis_grid_from_the_header(tmp_path):
    path = save_nifti(RAMP, LPS, tmp_path / "flair.nii.gz")

    shape, affine = read_grid(path)

    assert shape == SHAPE
    np.testing.assert_allclose(affine, load_nifti(path).affine)
    with raises_input_error(tmp_path / "absent.nii.gz", "file not found"):
        read_grid(tmp_path / "absent.nii.gz")
