"""The subject pipeline: reference grid, resampling, crop, normalisation, meta record, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _phantom import (BRAIN, SHAPE, SPACING, cfg, expected_channel, grid, image, rotation,
                      truth_mask)
from csvdnet.errors import CsvdnetInputError
from csvdnet.io import Image
from csvdnet.preprocessing import PreprocessMeta, preprocess_labels, preprocess_subject


def test_meta_json_round_trip_inverts_identically():
    affine = grid(SHAPE, SPACING, "RAS", rotation(20, (0, 0, 1)))
    array, meta = preprocess_subject({"flair": image(affine, SHAPE)}, cfg())
    again = PreprocessMeta.from_dict(json.loads(json.dumps(meta.to_dict())))

    assert again.to_dict() == meta.to_dict()
    for order in (0, 1):
        np.testing.assert_array_equal(again.invert(array, order=order),
                                      meta.invert(array, order=order))
    points = np.array([[1.0, -2.0, 3.5], [10.0, 0.0, -7.0]])
    np.testing.assert_array_equal(again.world_to_working(points), meta.world_to_working(points))
    with pytest.raises(ValueError, match="not on the working grid"):
        meta.invert(array[1:])


def test_ras_lps_and_oblique_inputs_give_the_same_array():
    results = {}
    for name, orientation, turn in [("ras", "RAS", None), ("lps", "LPS", None),
                                    ("oblique", "RAS", rotation(20, (0, 0, 1)))]:
        affine = grid(SHAPE, SPACING, orientation, turn)
        results[name] = preprocess_subject({"flair": image(affine, SHAPE)}, cfg())

    (ras, ras_meta), (lps, lps_meta) = results["ras"], results["lps"]
    np.testing.assert_allclose(lps_meta.working_affine, ras_meta.working_affine, atol=1e-6)
    np.testing.assert_allclose(lps, ras, atol=1e-5)

    oblique, oblique_meta = results["oblique"]
    offset = np.linalg.inv(ras_meta.working_affine) @ oblique_meta.working_affine
    np.testing.assert_allclose(offset[:3, :3], np.eye(3), atol=1e-9)  # same lattice ...
    shift = offset[:3, 3]
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-6)  # ... up to whole voxels
    # Compare inside the brain, on the voxels both arrays hold.
    shift = np.round(shift).astype(int)
    lo = np.maximum(0, shift)
    hi = np.minimum(ras.shape[:3], shift + np.array(oblique.shape[:3]))
    a = ras[tuple(slice(l, h) for l, h in zip(lo, hi))][..., 0]
    b = oblique[tuple(slice(l - s, h - s) for l, h, s in zip(lo, hi, shift))][..., 0]
    brain = truth_mask(ras_meta.working_affine, ras_meta.working_shape, *BRAIN)
    brain = brain[tuple(slice(l, h) for l, h in zip(lo, hi))]
    # What differs is trilinear smoothing of the texture, sampled on turned 2 mm voxels.
    assert np.mean(np.abs(a - b)[brain]) < 0.15
    assert np.corrcoef(a[brain], b[brain])[0, 1] > 0.99


def test_sequences_on_other_grids_are_resampled_once_onto_the_working_grid():
    flair_affine = grid((60, 60, 24), (1.6, 1.6, 4.0), "LPS")
    t1_affine = grid((40, 44, 36), (2.5, 2.2, 2.8), "PIR", rotation(8, (1, 0, 1)))
    t1_affine[:3, 3] += [3.0, -2.0, 4.0]  # another field of view of the same session
    images = {"flair": image(flair_affine, (60, 60, 24)),
              "t1": image(t1_affine, (40, 44, 36), "t1")}
    array, meta = preprocess_subject(images, cfg())

    assert array.dtype == np.float32 and array.shape[-1] == 2
    assert meta.spacing == (2.0, 2.0, 2.0) and meta.channels == ["flair", "t1"]
    np.testing.assert_allclose(np.diag(meta.working_affine)[:3], 2.0)  # canonical RAS
    brain = truth_mask(meta.working_affine, meta.working_shape, *BRAIN)
    for c, name in enumerate(("flair", "t1")):
        expected = expected_channel(meta, name, name)
        assert np.corrcoef(array[..., c][brain], expected[brain])[0, 1] > 0.95


@pytest.mark.parametrize("multiple", [1, 8, 16])
def test_padding_to_a_multiple_keeps_the_brain_box_inside(multiple):
    affine = grid(SHAPE, SPACING)
    array, meta = preprocess_subject({"flair": image(affine, SHAPE)},
                                     cfg(pad_multiple=multiple, crop_margin_mm=4.0))
    assert all(n % multiple == 0 for n in array.shape[:3])
    start, stop = np.array(meta.brain_box[0]), np.array(meta.brain_box[1])
    assert np.all(start >= 2) and np.all(stop <= np.array(array.shape[:3]) - 2)  # 4 mm margin
    brain = truth_mask(meta.working_affine, meta.working_shape, *BRAIN)
    inside = np.zeros_like(brain)
    inside[tuple(slice(a, b) for a, b in zip(start, stop))] = True
    assert brain[~inside].sum() <= 0.02 * brain.sum()


def test_normalisation_gives_zero_mean_unit_std_inside_the_brain():
    affine = grid(SHAPE, SPACING, "LPS")
    brain = truth_mask(affine, SHAPE, *BRAIN)
    images = {"flair": image(affine, SHAPE), "t2": image(affine, SHAPE, "t2")}
    array, meta = preprocess_subject(images, cfg(brain_mask="label"),
                                     brain_mask=Image(brain.astype(np.float32), affine))
    masks, _ = preprocess_labels(meta, {"brain": Image(brain.astype(np.float32), affine)})
    inside = masks["brain"].astype(bool)
    for c, name in enumerate(images):
        values = array[..., c][inside]
        assert abs(values.mean()) < 1e-4 and abs(values.std() - 1) < 1e-4
        p = meta.normalisation[name]
        raw = images[name].data[brain]
        np.testing.assert_allclose([p["clip_low"], p["clip_high"]],
                                   np.percentile(raw, [0.5, 99.5]), rtol=1e-5)
        assert values.max() == pytest.approx((p["clip_high"] - p["mean"]) / p["std"], rel=1e-5)


def _flair(tmp_path) -> Image:
    return image(grid(SHAPE, SPACING), SHAPE, folder=tmp_path)


def test_error_sequence_not_covering_the_brain(tmp_path):
    far = grid(SHAPE, SPACING)
    far[:3, 3] += 500.0
    with pytest.raises(CsvdnetInputError, match=r"t1\.nii\.gz: field of view covers 0%"):
        preprocess_subject({"flair": _flair(tmp_path),
                            "t1": image(far, SHAPE, "t1", folder=tmp_path)}, cfg())
    slab_shape = (47, 47, 8)  # 16 mm of a ~60 mm brain
    slab = grid(slab_shape, SPACING)
    with pytest.raises(CsvdnetInputError, match=r"dwi\.nii\.gz: field of view covers 2\d% "
                                                r"of the brain box of the reference flair "
                                                r"\(needs >= 50%\)"):
        preprocess_subject({"flair": _flair(tmp_path),
                            "dwi": image(slab, slab_shape, "t2", name="dwi", folder=tmp_path)},
                           cfg())


def test_error_reference_missing(tmp_path):
    t1 = image(grid(SHAPE, SPACING), SHAPE, "t1", folder=tmp_path)
    with pytest.raises(CsvdnetInputError,
                       match=rf"{tmp_path}: reference sequence 'flair' is missing"):
        preprocess_subject({"t1": t1}, cfg())


def test_error_empty_or_misplaced_brain_mask(tmp_path):
    flair = _flair(tmp_path)
    empty = Image(np.zeros(SHAPE, np.float32), flair.affine, tmp_path / "brain_mask.nii.gz")
    with pytest.raises(CsvdnetInputError, match=r"brain_mask\.nii\.gz: brain mask is empty"):
        preprocess_subject({"flair": flair}, cfg(brain_mask="label"), brain_mask=empty)
    other = Image(np.ones((10, 10, 10), np.float32), flair.affine, empty.path)
    with pytest.raises(CsvdnetInputError, match=r"brain_mask\.nii\.gz: brain mask grid .* "
                                                r"differs from the reference flair"):
        preprocess_subject({"flair": flair}, cfg(brain_mask="label"), brain_mask=other)
    with pytest.raises(CsvdnetInputError, match="no brain_mask label was given"):
        preprocess_subject({"flair": flair}, cfg(brain_mask="label"))


def test_error_constant_image_has_no_brain(tmp_path):
    flat = Image(np.full(SHAPE, 7.0, np.float32), grid(SHAPE, SPACING), tmp_path / "flair.nii")
    with pytest.raises(CsvdnetInputError, match=r"flair\.nii: image is constant"):
        preprocess_subject({"flair": flat}, cfg())


def test_error_bad_config():
    flair = image(grid(SHAPE, SPACING), SHAPE)
    with pytest.raises(CsvdnetInputError, match="preprocess.spacing: must be positive"):
        preprocess_subject({"flair": flair}, cfg(spacing=(1.0, 0.0, 1.0)))
