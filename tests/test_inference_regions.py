"""The region atlas on a subject: template registration, region map, region and side of points."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from csvdnet.atlas import REGION_CODES, load_atlas
from csvdnet.errors import CsvdnetInputError
from csvdnet.inference.regions import region_and_side, subject_regions, template_to_subject
from csvdnet.io import Image, load_nifti
from csvdnet.synth import generate_cohort

# Mean Dice over the nine regions of the registered region map against the true one, on the
# tiny subject below: measured 0.76-0.77 (auto mask and true mask), and 0.67-0.79 over five
# tiny subjects with the true mask; demo-profile figures are in benchmarks/RESULTS.md.
MEAN_DICE_BAR = 0.70


@pytest.fixture(scope="module")
def tiny_subject(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("regions_cohort")
    generate_cohort(root, 1, seed=3, profile="tiny", progress=False)
    folder = root / "sub-0000"
    return {"flair": load_nifti(folder / "flair.nii.gz"),
            "regions": np.asarray(nib.load(folder / "labels" / "regions.nii.gz").dataobj),
            "brain": np.asarray(nib.load(folder / "labels" / "brain_mask.nii.gz").dataobj),
            "record": json.loads((folder / "synth.json").read_text())}


def _mean_dice(pred: np.ndarray, true: np.ndarray) -> float:
    scores = [2 * np.sum((pred == c) & (true == c)) / (np.sum(pred == c) + np.sum(true == c))
              for c in range(1, 10)]
    return float(np.mean(scores))


def test_identity_on_the_atlas_grid_gives_the_atlas() -> None:
    atlas = load_atlas(2)
    regions = subject_regions(atlas.shape, atlas.affine, np.eye(4))
    assert regions.dtype == np.uint8
    np.testing.assert_array_equal(regions, atlas.regions)


def test_region_and_side_from_the_map_and_the_mni_x() -> None:
    regions = np.zeros((10, 10, 10), dtype=np.uint8)
    regions[2:8, 2:8, 2:8] = REGION_CODES["basal_ganglia"]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    world_to_mni = np.eye(4)
    world_to_mni[0, 3] = -10.0  # MNI x = world x - 10
    points = np.array([[10.0, 10, 10],  # MNI x 0: midline
                       [11.9, 10, 10],  # 1.9 mm: still midline
                       [14.0, 10, 10],  # 4 mm: right
                       [4.0, 10, 10],  # -6 mm: left, voxel (2, 5, 5) in the basal ganglia
                       [2.0, 10, 10],  # voxel (1, 5, 5): background
                       [40.0, 10, 10]])  # off the grid: background
    names, sides = region_and_side(points, regions, affine, world_to_mni)
    assert sides == ["M", "M", "R", "L", "L", "R"]
    assert names == ["basal_ganglia"] * 4 + ["background"] * 2
    assert region_and_side(np.zeros((0, 3)), regions, affine, world_to_mni) == ([], [])


@pytest.mark.slow  # ~2.5 s idle, 7.5 s on a loaded machine: the template is a large moving image
def test_template_moved_by_a_known_affine_is_recovered() -> None:
    atlas = load_atlas(2)
    moved = np.eye(4)
    moved[:3, :3] = np.diag([1.05, 0.97, 1.0])
    moved[:3, 3] = (6.0, -4.0, 5.0)
    world_to_mni = template_to_subject(Image(atlas.t1, moved @ atlas.affine))
    mni = np.argwhere(atlas.brain)[::500] @ atlas.affine[:3, :3].T + atlas.affine[:3, 3]
    world = mni @ moved[:3, :3].T + moved[:3, 3]
    error = np.linalg.norm(world @ world_to_mni[:3, :3].T + world_to_mni[:3, 3] - mni, axis=1)
    assert error.max() < 1.0  # mm (measured 0.08)


@pytest.mark.parametrize("given_mask", [False, True])
def test_registered_regions_match_a_synthetic_subject(tiny_subject: dict,
                                                      given_mask: bool) -> None:
    flair = tiny_subject["flair"]
    world_to_mni = template_to_subject(flair, tiny_subject["brain"] if given_mask else None)
    pred = subject_regions(flair.shape, flair.affine, world_to_mni)
    assert _mean_dice(pred, tiny_subject["regions"]) > MEAN_DICE_BAR
    # No worse than the synthetic warp's own linear part (what the best affine would give) by
    # more than 0.05: a registration that wandered off would fall far below it.
    oracle = subject_regions(flair.shape, flair.affine,
                             np.array(tiny_subject["record"]["world_to_mni_affine"]))
    assert _mean_dice(pred, tiny_subject["regions"]) > _mean_dice(
        oracle, tiny_subject["regions"]) - 0.05


def test_registration_gives_the_same_affine_every_run_whatever_the_threads(
        tiny_subject: dict) -> None:
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(4)  # as on a 4-core machine
    try:
        runs = [template_to_subject(tiny_subject["flair"], tiny_subject["brain"])
                for _ in range(3)]
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert all(np.array_equal(runs[0], other) for other in runs[1:])


def test_an_image_without_a_brain_is_refused() -> None:
    with pytest.raises(CsvdnetInputError, match="no brain"):
        template_to_subject(Image(np.zeros((20, 20, 20)), np.eye(4)))
