"""Labels onto the working grid and back: masks, label maps, points, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from _phantom import LESION, SHAPE, SPACING, apply, cfg, grid, image, truth_mask
from csvdnet.errors import CsvdnetInputError
from csvdnet.io import Image
from csvdnet.preprocessing import preprocess_labels, preprocess_subject
from csvdnet.preprocessing.labels import keep_volume


@pytest.mark.parametrize("orientation, spacing, world_spacing", [
    ("RAS", SPACING, SPACING), ("LPS", SPACING, SPACING),
    ("LPS", (1.6, 2.0, 3.0), (1.6, 2.0, 3.0)), ("PIR", (1.6, 2.0, 3.0), (3.0, 1.6, 2.0))])
def test_label_map_round_trip_is_identical_at_reference_spacing(orientation, spacing,
                                                                world_spacing):
    shape = (40, 36, 30)
    affine = grid(shape, spacing, orientation)
    flair = image(affine, shape)
    labels = np.random.default_rng(0).integers(0, 6, size=shape).astype(np.float32)
    array, meta = preprocess_subject({"flair": flair}, cfg(spacing=None, brain_mask="none"))

    assert meta.spacing == pytest.approx(world_spacing)
    masks, _ = preprocess_labels(meta, {"regions": Image(labels, affine)})
    back = meta.invert(masks["regions"], order=0)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, labels)

    p = meta.normalisation["flair"]
    expected = (np.clip(flair.data, p["clip_low"], p["clip_high"]) - p["mean"]) / p["std"]
    np.testing.assert_allclose(meta.invert(array)[..., 0], expected, atol=1e-4)


def test_round_trip_of_a_cropped_brain_keeps_everything_inside_the_crop():
    affine = grid(SHAPE, SPACING, "LPS")
    flair = image(affine, SHAPE)
    lesion = truth_mask(affine, SHAPE, *LESION).astype(np.float32)
    array, meta = preprocess_subject({"flair": flair}, cfg(spacing=None))

    assert array.shape[:3] != SHAPE  # cropped to the brain and padded
    masks, _ = preprocess_labels(meta, {"wmh": Image(lesion, affine)})
    np.testing.assert_array_equal(meta.invert(masks["wmh"], order=0), lesion)
    channels = meta.invert(np.stack([masks["wmh"]] * 3, axis=-1), order=0)
    assert channels.shape == SHAPE + (3,)


@pytest.mark.parametrize("orientation, spacing, n_marked", [
    ("RAS", 2.0, 1), ("LPS", 0.8, 27), ("PIR", 2.0, 1)])
def test_points_map_both_ways_within_half_a_voxel(orientation, spacing, n_marked):
    shape = (31, 31, 31)
    affine = grid(shape, SPACING, orientation)
    _, meta = preprocess_subject({"flair": image(affine, shape)},
                                 cfg(spacing=(spacing,) * 3, brain_mask="none"))
    voxel = np.array([19, 9, 13])  # 4, 6 and 2 voxels off centre: on the 0.8 mm lattice too
    world = apply(affine, voxel)
    marker = np.zeros(shape, np.float32)
    marker[tuple(voxel)] = 1

    masks, points = preprocess_labels(meta, {"lacune": Image(marker, affine)},
                                      {"cmb": world})
    working = points["cmb"][0]
    np.testing.assert_allclose(working, meta.world_to_working(world)[0])
    np.testing.assert_allclose(meta.working_to_world(points["cmb"]), world, atol=1e-9)
    # The 2 mm marker voxel covers the working voxels whose centres are within 1 mm of it.
    marked = np.argwhere(masks["lacune"])
    assert len(marked) == n_marked
    assert np.all(np.abs(marked.mean(axis=0) - working) < 0.5)


def test_downsampled_masks_keep_their_volume():
    shape = (33, 33, 33)  # 1 mm; working voxels (2 mm) are centred on even native indices
    affine = grid(shape, (1.0, 1.0, 1.0))
    _, meta = preprocess_subject({"flair": image(affine, shape)},
                                 cfg(brain_mask="none", pad_multiple=1))
    cube = np.zeros(shape, np.float32)
    cube[13:20, 13:20, 13:20] = 1  # 7 mm, centred on a working voxel: 3 x 3 x 3 fully covered
    speck = np.zeros(shape, np.float32)
    speck[16, 16, 16] = 1  # 1/8 of the working voxel it sits in the centre of

    masks, _ = preprocess_labels(meta, {"wmh": Image(cube, affine),
                                        "lacune": Image(speck, affine)})
    centre = np.round(meta.world_to_working(apply(affine, [16, 16, 16]))[0]).astype(int)
    core = tuple(slice(c - 1, c + 2) for c in centre)
    # 343 mm^3 = 42.9 working voxels of 8 mm^3: the 27 fully covered ones and 16 of the shell
    # (a 0.5 threshold kept the 27 alone: 216 mm^3).
    assert masks["wmh"].sum() == 43 and masks["wmh"][core].all()
    shell = np.zeros(meta.working_shape, bool)
    shell[tuple(slice(c - 2, c + 3) for c in centre)] = True
    assert not masks["wmh"][~shell].any()
    assert masks["lacune"].sum() == 0  # 1 mm^3: less than half a working voxel


def test_small_lesions_on_thick_slices_keep_their_volume():
    # A clinical FLAIR: 0.9 x 0.9 mm in plane, 4 mm slices; working grid 1.5 mm.
    shape, spacing = (60, 60, 12), (0.9, 0.9, 4.0)
    affine = grid(shape, spacing)
    _, meta = preprocess_subject({"flair": image(affine, shape)},
                                 cfg(brain_mask="none", pad_multiple=1, spacing=(1.5, 1.5, 1.5)))
    rng = np.random.default_rng(3)
    foci = np.zeros(shape, np.float32)
    index = np.indices(shape[:2])
    for n in range(6):  # deep foci of 3-5 mm across, on one or two slices
        centre = rng.uniform(12, 48, 2)
        radius = rng.uniform(1.5, 2.5) / 0.9
        disc = ((index[0] - centre[0]) ** 2 + (index[1] - centre[1]) ** 2) <= radius ** 2
        if n < 3:
            disc[int(centre[0]) // 20 * 20:] = False  # partial discs: not only round ones
        foci[disc, 2 + n: 3 + n + n % 2] = 1
    masks, _ = preprocess_labels(meta, {"wmh": Image(foci, affine)})
    true_mm3 = foci.sum() * 0.9 * 0.9 * 4.0
    working_mm3 = masks["wmh"].sum() * 1.5 ** 3
    assert abs(working_mm3 - true_mm3) <= 0.5 * 6 * 1.5 ** 3, (working_mm3, true_mm3)


def test_keep_volume_keeps_each_part_its_volume_from_its_highest_fractions():
    fraction = np.zeros((9, 5, 5))
    fraction[1:4, 2, 2] = (0.4, 0.9, 0.4)  # 1.7 voxels: the 0.9 and one 0.4 (the first in order)
    fraction[6, 1:4, 1:4] = 0.3  # 2.7 voxels of 0.3 each: 3 of them, though all are below 0.5
    kept = keep_volume(fraction)
    assert kept[1:4, 2, 2].tolist() == [True, True, False]
    assert kept[6].sum() == 3 and kept.sum() == 5
    np.testing.assert_array_equal(keep_volume(fraction), kept)  # deterministic
    assert not keep_volume(np.zeros((3, 3, 3))).any()


def _flair(tmp_path) -> Image:
    return image(grid(SHAPE, SPACING), SHAPE, folder=tmp_path)


def test_error_labels_on_another_grid_or_outside_the_image(tmp_path):
    flair = _flair(tmp_path)
    _, meta = preprocess_subject({"flair": flair}, cfg())
    shifted = flair.affine.copy()
    shifted[:3, 3] += 1.0
    mask = Image(np.zeros(SHAPE, np.float32), shifted, tmp_path / "labels" / "wmh.nii.gz")
    with pytest.raises(CsvdnetInputError, match=r"wmh\.nii\.gz: grid .* differs from its "
                                                r"sequence flair"):
        preprocess_labels(meta, {"wmh": mask})

    csv = tmp_path / "labels" / "cmb.csv"
    with pytest.raises(CsvdnetInputError, match=r"cmb\.csv: 1 of 2 points lie outside the "
                                                r"flair image \(first: 0, 0, 200 mm\)"):
        preprocess_labels(meta, points={"cmb": [[0.0, 0.0, 0.0], [0.0, 0.0, 200.0]]},
                          point_sources={"cmb": csv})
    with pytest.raises(CsvdnetInputError, match=r"rssi\.nii\.gz: rssi is drawn on sequence "
                                                r"'dwi', which was not preprocessed"):
        preprocess_labels(meta, {"rssi": Image(np.zeros(SHAPE), flair.affine,
                                               tmp_path / "rssi.nii.gz")},
                          label_sequence={"rssi": "dwi"})
    values = np.zeros(SHAPE, np.float32)
    values[0, 0, 0] = 2.5
    with pytest.raises(CsvdnetInputError, match=r"regions\.nii\.gz: not a mask or label map"):
        preprocess_labels(meta, {"regions": Image(values, flair.affine,
                                                  tmp_path / "regions.nii.gz")})
