"""The synthetic cohort: layout and readers, determinism, ratings, marker placement and contrast."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.atlas import REGION_CODES
from csvdnet.config import PreprocessConfig
from csvdnet.errors import CsvdnetInputError
from csvdnet.inference.measure import wmh_features
from csvdnet.io import load_mask, load_nifti, load_subject, read_cohort, read_points, read_ratings
from csvdnet.preprocessing import preprocess_subject
from csvdnet.scoring import fazekas_deep_from, fazekas_pv_from
from csvdnet.synth import (PROFILES, generate_cohort, generate_subject, resolve_profile,
                           write_preview)
from csvdnet.synth.geometry import Grid, SmoothField, box_average, rigid_matrix
from csvdnet.synth.ratings import (DEFAULT_PREVALENCE, Plan, check_prevalence, epvs_grade,
                                   fazekas_grades, recount, sample_plan, staals_total)
from csvdnet.synth.sequences import _box_kernel, partial_volume

N_SUBJECTS = 50
SEED = 11
R = REGION_CODES
FULL = np.ones((3, 3, 3))  # 26-connectivity
# Where lacunes may lie: deep grey nuclei and deep / periventricular white matter.
DEEP_PLACES = (R["basal_ganglia"], R["thalamus"], R["centrum_semiovale"], R["periventricular"],
               R["deep_wm"])


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    generate_cohort(out, N_SUBJECTS, SEED, profile="tiny", progress=False)
    return out


def _load(cohort_dir: Path) -> list[dict]:
    """Every subject's files, loaded once."""
    loaded = []
    for subject in read_cohort(cohort_dir / "manifest.csv"):
        images = load_subject(subject)
        flair = images["flair"]
        masks = {name: load_mask(subject.labels[name], like=flair).data > 0
                 for name in ("wmh", "rssi", "lacune", "brain_mask")}
        tables = {}
        for name in ("cmb", "epvs"):
            with subject.labels[name].open(newline="") as f:
                tables[name] = list(csv.DictReader(f))
        record = json.loads((cohort_dir / subject.id / "synth.json").read_text())
        regions = load_nifti(subject.labels["regions"], kind="labelmap").data.astype(int)
        points = {n: read_points(subject.labels[n], like=flair) for n in ("cmb", "epvs")}
        loaded.append(dict(id=subject.id, images=images, masks=masks, tables=tables, record=record,
                           regions=regions, points=points, ratings=subject.ratings))
    return loaded


@pytest.fixture(scope="session")
def subjects(cohort_dir) -> list[dict]:
    return _load(cohort_dir)


@pytest.fixture(scope="session")
def sharp_subjects(tmp_path_factory) -> list[dict]:
    """Subjects at the working spacing (1.5 mm) with every marker: contrast at a useful scale."""
    out = tmp_path_factory.mktemp("synth") / "sharp"
    profile = dataclasses.replace(resolve_profile("tiny", spacing=1.5), rssi_prevalence=1.0)
    generate_cohort(out, 2, SEED, profile=profile, prevalence=(0, 0, 0, 0, 1), progress=False)
    return _load(out)


# Contrast limits per cohort (ratios to the surroundings). The 3.5-5 mm voxels of "tiny", drawn on a
# 3 mm anatomy grid, blur small markers: there a lacune's bright gliotic rim can cancel its dark
# FLAIR centre, so its FLAIR darkness is checked on the 1.5 mm subjects only (None = not checked).
LIMITS = {
    "tiny": dict(wmh=1.25, lacune_flair=None, lacune_t1=0.97, lacune_t2=1.02, rssi_dwi=1.05,
                 rssi_dwi_mean=1.2, cmb_mean=0.8, cmb_large=0.7, epvs_t2=1.0, epvs_flair=0.97,
                 lacunes=10, rssi=5, cmb=20, epvs=200),
    "sharp": dict(wmh=1.5, lacune_flair=0.75, lacune_t1=0.75, lacune_t2=1.3, rssi_dwi=1.5,
                  rssi_dwi_mean=1.6, cmb_mean=0.6, cmb_large=0.5, epvs_t2=1.15, epvs_flair=0.85,
                  lacunes=2, rssi=2, cmb=2, epvs=30),
}


@pytest.fixture(scope="session", params=sorted(LIMITS))
def cohort(request) -> tuple[list[dict], dict]:
    fixture = "subjects" if request.param == "tiny" else "sharp_subjects"
    return request.getfixturevalue(fixture), LIMITS[request.param]


def _sample(image, world: np.ndarray, reference_to_sequence: np.ndarray) -> np.ndarray:
    """Trilinear values of a sequence at reference-frame world points (through the true motion)."""
    world = np.asarray(world, dtype=np.float64).reshape(-1, 3)
    to_voxel = np.linalg.inv(image.affine) @ reference_to_sequence
    voxels = world @ to_voxel[:3, :3].T + to_voxel[:3, 3]
    return ndimage.map_coordinates(image.data, voxels.T, order=1, mode="nearest")


def _voxel_world(image, mask: np.ndarray) -> np.ndarray:
    voxels = np.argwhere(mask)
    return voxels @ image.affine[:3, :3].T + image.affine[:3, 3]


def _transform(subject, sequence: str) -> np.ndarray:
    return np.array(subject["record"]["sequence_transforms"][sequence])


# ----------------------------------------------------------------------------------------------
# Layout, readers, preprocessing, determinism

def test_cohort_passes_csvdnet_readers(cohort_dir, subjects):
    by_manifest = read_cohort(cohort_dir / "manifest.csv")
    by_folder = read_cohort(cohort_dir)
    ids = [f"sub-{i:04d}" for i in range(N_SUBJECTS)]
    assert [s.id for s in by_manifest] == [s.id for s in by_folder] == ids
    labels = {"wmh", "rssi", "lacune", "cmb", "epvs", "regions", "brain_mask"}
    for subject in by_folder:
        assert tuple(subject.sequences) == DEFAULT_SEQUENCES
        assert set(subject.present_labels()) == labels
        assert set(subject.label_sequence.values()) == {"flair"}
    assert read_ratings(cohort_dir / "ratings.csv").keys() == {s["id"] for s in subjects}
    for subject in subjects:
        assert subject["ratings"] is not None
        for name, image in subject["images"].items():
            assert image.data.max() > 0 and np.isfinite(image.data).all(), name


def test_sequences_have_their_own_grids_and_orientations(subjects):
    expected = {p.name: (p.axcodes, p.spacing) for p in PROFILES["tiny"].sequences}
    images = subjects[0]["images"]
    for name, image in images.items():
        axcodes, spacing = expected[name]
        assert "".join(nib.aff2axcodes(image.affine)) == axcodes
        assert np.allclose(image.spacing, spacing)
    assert len({image.shape for image in images.values()}) >= 4
    # No two subjects share a reference grid (own head size, pose and field of view).
    grids = {(s["images"]["flair"].shape, s["images"]["flair"].affine.tobytes()) for s in subjects}
    assert len(grids) == len(subjects)


def test_preprocessing_accepts_the_subjects(cohort_dir):
    cohort = read_cohort(cohort_dir)
    for subject in cohort.subjects[:2]:
        images = load_subject(subject)
        brain = load_mask(subject.labels["brain_mask"], like=images["flair"])
        for brain_mask, mask in (("auto", None), ("label", brain)):
            cfg = PreprocessConfig(spacing=(4.0, 4.0, 4.0), register=False, brain_mask=brain_mask)
            array, _ = preprocess_subject(images, cfg, brain_mask=mask)
            assert array.ndim == 4 and array.shape[-1] == len(DEFAULT_SEQUENCES)
            assert np.isfinite(array).all() and array.std() > 0


def test_same_seed_same_bytes(cohort_dir, tmp_path):
    profile = resolve_profile("tiny")
    index = 3
    again = tmp_path / "again"
    generate_subject(again, profile, SEED, index, check_prevalence(None))
    original = cohort_dir / f"sub-{index:04d}"
    files = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (original / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    generate_subject(other, profile, SEED + 1, index, check_prevalence(None))
    assert (other / "flair.nii.gz").read_bytes() != (original / "flair.nii.gz").read_bytes()


# ----------------------------------------------------------------------------------------------
# Ratings: a recount from the written files and the Staals rule

def _bg_epvs_count(subject) -> int:
    flair = subject["images"]["flair"]
    rows = subject["tables"]["epvs"]
    if not rows:
        return 0
    world = np.array([[float(r[a]) for a in "xyz"] for r in rows])
    to_voxel = np.linalg.inv(flair.affine)
    voxels = np.rint(world @ to_voxel[:3, :3].T + to_voxel[:3, 3]).astype(int)
    axis = int(np.argmax(np.abs(flair.affine[2, :3])))
    counts: dict[tuple[str, int], int] = {}
    for row, voxel in zip(rows, voxels):
        if subject["regions"][tuple(voxel)] == R["basal_ganglia"]:
            key = (row["side"], int(voxel[axis]))
            counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


def test_ratings_agree_with_a_recount_of_the_labels(subjects):
    for subject in subjects:
        ratings = subject["ratings"]
        masks = subject["masks"]
        for name in ("lacune", "rssi"):
            components = ndimage.label(masks[name], structure=FULL)[1]
            assert getattr(ratings, f"{name}_count") == components, (subject["id"], name)
        assert ratings.cmb_count == len(subject["points"]["cmb"])
        count = _bg_epvs_count(subject)
        assert ratings.epvs_bg_grade == (0 if count == 0 else 1 if count <= 10 else 2 if count <= 20
                                         else 3 if count <= 40 else 4)
        staals = (int(ratings.lacune_count > 0) + int(ratings.cmb_count > 0)
                  + int(ratings.fazekas_pv == 3 or ratings.fazekas_deep >= 2)
                  + int(ratings.epvs_bg_grade >= 2))
        assert ratings.total_score == staals  # RSSI never counted
        # The Fazekas grades are what the written WMH label shows, by predict's rule.
        flair = subject["images"]["flair"]
        features = wmh_features(masks["wmh"], subject["regions"], flair.affine)
        assert (ratings.fazekas_pv, ratings.fazekas_deep) == (
            fazekas_pv_from(features), fazekas_deep_from(features)), subject["id"]


def test_fazekas_ratings_follow_the_drawing_not_the_plan():
    # 1 mm voxels; ventricles x 10..19, the periventricular band beside them, deep WM beyond.
    regions = np.full((60, 30, 30), R["deep_wm"], dtype=np.uint8)
    regions[10:20] = R["ventricles"]
    regions[20:30] = R["periventricular"]
    affine = np.eye(4)
    wmh = np.zeros(regions.shape, dtype=np.uint8)
    for z in (5, 15, 25):  # three punctate foci 1 voxel each, 30+ mm from the ventricles
        wmh[50, 15, z] = 1
    plan = Plan(target_score=1, fazekas_pv=0, fazekas_deep=2, epvs_bg_count=0, epvs_cso_count=0,
                cmb_count=0, cmb_lobar_fraction=0.0, lacune_count=0, rssi_count=0)
    empty = np.zeros(regions.shape, dtype=np.uint8)
    args = (empty, empty, 0, np.zeros((0, 3)), [], regions, affine)
    ratings = recount(plan, wmh, *args)
    # The plan said "beginning confluence"; the label shows punctate foci: grade 1, no point.
    assert (ratings.fazekas_pv, ratings.fazekas_deep, ratings.total_score) == (0, 1, 0)
    wmh[44:51, 12:19, 12:19] = 1  # a 343 mm^3 cluster: beginning confluence (>= 0.125 ml)
    assert fazekas_grades(wmh, regions, affine) == (0, 2)
    assert recount(plan, wmh, *args).total_score == 1
    wmh[:] = 0
    wmh[20:23, 5:25, 5:25] = 1  # 3 mm thick over 1200 of the lining's 2700 voxels: a halo
    assert fazekas_grades(wmh, regions, affine) == (2, 0)


def test_generator_honours_its_plan(subjects):
    agree = [s["ratings"].total_score == s["record"]["plan"]["target_score"]
             and s["ratings"].lacune_count == s["record"]["plan"]["lacune_count"]
             and s["ratings"].cmb_count == s["record"]["plan"]["cmb_count"] for s in subjects]
    assert np.mean(agree) >= 0.9


def test_score_distribution_covers_every_score(subjects):
    scores = np.bincount([s["ratings"].total_score for s in subjects], minlength=5)
    assert np.all(scores > 0), scores
    assert scores.max() <= 0.4 * len(subjects)
    with_rssi = [s["ratings"].rssi_count > 0 for s in subjects]
    assert any(with_rssi) and not all(with_rssi)


def test_points_carry_side_and_region(subjects):
    for subject in subjects:
        flair = subject["images"]["flair"]
        midline = _voxel_world(flair, subject["masks"]["brain_mask"])[:, 0].mean()
        to_voxel = np.linalg.inv(flair.affine)
        for name in ("cmb", "epvs"):
            for row, point in zip(subject["tables"][name], subject["points"][name]):
                voxel = tuple(np.rint(to_voxel[:3, :3] @ point + to_voxel[:3, 3]).astype(int))
                assert R[row["region"]] == subject["regions"][voxel]
                if abs(point[0] - midline) > 15:
                    assert row["side"] == ("L" if point[0] < midline else "R")
        assert all(2.0 <= float(r["diameter_mm"]) <= 10.0 for r in subject["tables"]["cmb"])
        assert all(float(r["diameter_mm"]) < 3.0 for r in subject["tables"]["epvs"])


# ----------------------------------------------------------------------------------------------
# Where the markers are and how they look

def test_fazekas_grades_match_where_the_wmh_are(subjects):
    volumes = {}
    for subject in subjects:
        # The grades the generator drew to (the ratings are what the drawing shows).
        ratings = Plan(**subject["record"]["plan"])
        wmh, regions = subject["masks"]["wmh"], subject["regions"]
        in_band = (wmh & (regions == R["periventricular"])).sum()
        # Deep WM proper; juxtacortical voxels can also be cortex next to a periventricular cap.
        deep = (wmh & np.isin(regions, [R["centrum_semiovale"], R["deep_wm"]])).sum()
        beyond_band = deep + (wmh & (regions == R["juxtacortical"])).sum()
        if ratings.fazekas_pv == 0 and ratings.fazekas_deep < 3:
            assert in_band == 0, subject["id"]
        if ratings.fazekas_deep == 0 and ratings.fazekas_pv < 3:
            assert deep == 0, subject["id"]
        if ratings.fazekas_pv:
            assert in_band > 0, subject["id"]
        if ratings.fazekas_deep:
            assert beyond_band > 0, subject["id"]
        volumes.setdefault(max(ratings.fazekas_pv, ratings.fazekas_deep), []).append(wmh.sum())
    means = [np.mean(volumes[g]) for g in sorted(volumes)]
    assert means == sorted(means)  # more WMH with a higher grade


def test_wmh_are_bright_on_flair_and_t2(cohort):
    subjects, limits = cohort
    for subject in subjects:
        wmh = subject["masks"]["wmh"]
        if wmh.sum() < 10:
            continue
        lesions = wmh | subject["masks"]["lacune"] | subject["masks"]["rssi"]
        white = np.isin(subject["regions"], DEEP_PLACES[2:])
        normal = white & ~ndimage.binary_dilation(lesions, iterations=2)
        flair = subject["images"]["flair"]
        assert flair.data[wmh].mean() > limits["wmh"] * flair.data[normal].mean(), subject["id"]
        t2, transform = subject["images"]["t2"], _transform(subject, "t2")
        inside, outside = (_sample(t2, _voxel_world(flair, m), transform).mean()
                           for m in (wmh, normal))
        assert inside > limits["wmh"] * outside, subject["id"]


def _shell(mask: np.ndarray, width: int = 2) -> np.ndarray:
    return ndimage.binary_dilation(mask, iterations=width) & ~ndimage.binary_dilation(mask)


def _components(mask: np.ndarray):
    labels, n = ndimage.label(mask, structure=FULL)
    return [labels == index for index in range(1, n + 1)]


def test_lacunes_are_fluid_filled_cavities_in_deep_regions(cohort):
    subjects, limits = cohort
    checked = 0
    for subject in subjects:
        flair = subject["images"]["flair"]
        for lacune in _components(subject["masks"]["lacune"]):
            around = _shell(lacune) & subject["masks"]["brain_mask"]
            for name, dark in (("flair", True), ("t1", True), ("t2", False)):
                limit = limits[f"lacune_{name}"]
                if limit is None:
                    continue
                image, transform = subject["images"][name], _transform(subject, name)
                ratio = (_sample(image, _voxel_world(flair, lacune), transform).mean()
                         / _sample(image, _voxel_world(flair, around), transform).mean())
                assert ratio < limit if dark else ratio > limit, (subject["id"], name, ratio)
            region = np.bincount(subject["regions"][lacune]).argmax()
            assert region in DEEP_PLACES, subject["id"]
            axial = np.ptp(_voxel_world(flair, lacune)[:, :2], axis=0).max()
            extent = axial + max(flair.spacing[:2])
            assert 3.0 <= extent <= 15.0 + 2 * max(flair.spacing), subject["id"]
            checked += 1
    assert checked >= limits["lacunes"]


def test_rssi_are_bright_on_dwi_and_small(cohort):
    subjects, limits = cohort
    ratios = []
    for subject in subjects:
        flair, dwi = subject["images"]["flair"], subject["images"]["dwi"]
        for rssi in _components(subject["masks"]["rssi"]):
            around = _shell(rssi) & subject["masks"]["brain_mask"]
            transform = _transform(subject, "dwi")
            inside, outside = (_sample(dwi, _voxel_world(flair, m), transform).mean()
                               for m in (rssi, around))
            ratios.append(inside / outside)
            assert flair.data[rssi].mean() > flair.data[around].mean(), subject["id"]
            axial = np.ptp(_voxel_world(flair, rssi)[:, :2], axis=0).max()  # voxel centres
            assert axial < 20.0, subject["id"]
    assert len(ratios) >= limits["rssi"]
    assert min(ratios) > limits["rssi_dwi"] and np.mean(ratios) > limits["rssi_dwi_mean"]


def _sphere(radius: float) -> np.ndarray:
    """26 points at ``radius`` around the origin."""
    directions = np.array([d for d in itertools.product((-1, 0, 1), repeat=3) if any(d)], float)
    return radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)


def test_microbleeds_are_dark_blooming_dots_on_swi(cohort):
    subjects, limits = cohort
    ratios, large = [], []
    for subject in subjects:
        swi, t2 = subject["images"]["swi"], subject["images"]["t2"]
        for row, centre in zip(subject["tables"]["cmb"], subject["points"]["cmb"]):
            diameter = float(row["diameter_mm"])
            ring = centre + _sphere(diameter / 2 + 6.0)
            ratio = (_sample(swi, centre, _transform(subject, "swi"))[0]
                     / _sample(swi, ring, _transform(subject, "swi")).mean())
            ratios.append(ratio)
            if diameter >= 5:
                large.append(ratio)
                # Blooming: darker on SWI than on T2, relative to the surroundings.
                t2_ratio = (_sample(t2, centre, _transform(subject, "t2"))[0]
                            / _sample(t2, ring, _transform(subject, "t2")).mean())
                assert ratio < t2_ratio, subject["id"]
    assert len(ratios) >= limits["cmb"]
    assert np.mean(ratios) < limits["cmb_mean"] and np.max(large, initial=0) < limits["cmb_large"]


def test_epvs_are_csf_like(cohort):
    subjects, limits = cohort
    t2_ratios, flair_ratios = [], []
    for subject in subjects:
        for centre in subject["points"]["epvs"]:
            ring = centre + _sphere(5.0)
            for name, ratios in (("t2", t2_ratios), ("flair", flair_ratios)):
                image, transform = subject["images"][name], _transform(subject, name)
                at = _sample(image, centre, transform)[0]
                ratios.append(at / _sample(image, ring, transform).mean())
    assert len(t2_ratios) >= limits["epvs"]
    assert np.mean(t2_ratios) > limits["epvs_t2"] and np.mean(flair_ratios) < limits["epvs_flair"]


def test_basal_ganglia_epvs_follow_the_grade(subjects):
    by_grade = {}
    for subject in subjects:
        bg = [r for r in subject["tables"]["epvs"] if r["region"] == "basal_ganglia"]
        by_grade.setdefault(subject["ratings"].epvs_bg_grade, []).append(len(bg))
    assert set(by_grade) >= {0, 1, 2, 3}
    means = [np.mean(by_grade[g]) for g in sorted(by_grade)]
    assert means == sorted(means)
    assert max(by_grade[0]) == 0


# ----------------------------------------------------------------------------------------------
# Preview, arguments, rules and geometry

def test_write_preview(subjects, cohort_dir, tmp_path):
    subject = max(subjects, key=lambda s: s["masks"]["wmh"].sum())
    png = write_preview(cohort_dir / subject["id"], tmp_path / "preview.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread
    pixels = imread(png)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 800
    assert pixels[..., :3].std() > 0.1


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(CsvdnetInputError, match="profile"):
        resolve_profile("huge")
    with pytest.raises(CsvdnetInputError, match="spacing"):
        resolve_profile("tiny", spacing=0)
    with pytest.raises(CsvdnetInputError, match="prevalence"):
        check_prevalence([0.5, 0.5])
    with pytest.raises(CsvdnetInputError, match="n_subjects"):
        generate_cohort(tmp_path / "c", 0, 1, profile="tiny", progress=False)
    (tmp_path / "d" / "patient-7").mkdir(parents=True)
    with pytest.raises(CsvdnetInputError, match="patient-7"):
        generate_cohort(tmp_path / "d", 1, 1, profile="tiny", progress=False)


def test_spacing_override_makes_every_grid_isotropic():
    profile = resolve_profile("demo", spacing=1.5)
    assert all(p.spacing == (1.5, 1.5, 1.5) for p in profile.sequences)
    assert profile.anatomy_mm == PROFILES["demo"].anatomy_mm
    assert [p.axcodes for p in profile.sequences] == [p.axcodes for p in PROFILES["demo"].sequences]


def test_plans_hit_their_target_score():
    rng = np.random.default_rng(0)
    for target in range(5):
        prevalence = np.eye(5)[target]
        for _ in range(40):
            plan = sample_plan(rng, prevalence, 0.35)
            assert plan.target_score == target
            assert staals_total(plan.fazekas_pv, plan.fazekas_deep, epvs_grade(plan.epvs_bg_count),
                                plan.cmb_count, plan.lacune_count) == target
    prevalence = np.asarray(DEFAULT_PREVALENCE)
    scores = [sample_plan(rng, prevalence, 0.35).target_score for _ in range(500)]
    assert np.all(np.bincount(scores, minlength=5) > 70)


def test_scoring_rules_by_hand():
    assert [epvs_grade(n) for n in (0, 1, 10, 11, 20, 21, 40, 41)] == [0, 1, 1, 2, 2, 3, 3, 4]
    assert staals_total(3, 0, 0, 0, 0) == 1
    assert staals_total(2, 1, 1, 0, 0) == 0
    assert staals_total(0, 2, 2, 1, 1) == 4
    assert staals_total(2, 1, 2, 0, 3) == 2


def test_grids_fields_and_partial_volume():
    grid = Grid.covering([-10, -20, -30], [10, 20, 30], [2.0, 2.0, 5.0], "LPS")
    assert np.allclose(np.diag(grid.affine)[:3], [-2, -2, 5])
    assert np.allclose(grid.voxel_to_world((np.array(grid.shape)[None] - 1) / 2), 0)
    field = SmoothField.random(np.random.default_rng(1), np.array([-10, -20, -30]),
                               np.array([10, 20, 30]), channels=2, order=4, rms=3.0)
    values = field.on_grid(grid)
    voxels = np.array([[0, 0, 0], [3, 7, 2], [9, 19, 11]])
    on_grid = values[:, voxels[:, 0], voxels[:, 1], voxels[:, 2]].T
    assert np.allclose(on_grid, field.at(grid.voxel_to_world(voxels)), atol=1e-4)
    assert np.allclose(_box_kernel(3.0), [1 / 3] * 3) and np.isclose(_box_kernel(2.0).sum(), 1)
    fine = Grid.covering([-20] * 3, [20] * 3, [1.0] * 3)
    target = Grid.covering([-10] * 3, [10] * 3, [2.0, 2.0, 4.0], "PIR")
    motion = rigid_matrix([2, -1, 1], [1, 0, -1])
    ones = partial_volume(np.ones(fine.shape, np.float32), fine, target, motion)
    assert np.allclose(ones, 1, atol=1e-5)
    half = np.zeros(fine.shape, np.float32)
    half[:, :, :20] = 1  # world z < 0
    z = target.voxel_to_world(np.argwhere(np.ones(target.shape)))[:, 2].reshape(target.shape)
    pv = partial_volume(half, fine, target)
    assert np.allclose(pv[z < -3], 1) and np.allclose(pv[z > 3], 0)


def test_box_average_is_the_exact_partial_volume():
    fine = Grid.covering([-6.0] * 3, [6.0] * 3, [1.0] * 3)
    volume = np.random.default_rng(2).random(fine.shape).astype(np.float32)
    target = Grid.covering([-4.3, -3.9, -5.2], [4.1, 4.6, 3.9], [2.0, 3.0, 2.5], "LPS")
    average = box_average(volume, fine, target)
    edges = [fine.affine[a, 3] - 0.5 + np.arange(fine.shape[a] + 1) for a in range(3)]
    for voxel in [(0, 0, 0), (2, 1, 3), (3, 2, 1)]:
        centre = target.voxel_to_world(np.array([voxel]))[0]
        half = np.array([1.0, 1.5, 1.25])  # the LPS grid's i, j, k run along x, y, z
        # Overlap of the target voxel with each fine voxel, axis by axis.
        overlap = [np.clip(np.minimum(centre[a] + half[a], edges[a][1:])
                           - np.maximum(centre[a] - half[a], edges[a][:-1]), 0, None)
                   for a in range(3)]
        expected = np.einsum("i,j,k,ijk->", *overlap, volume) / np.prod(2 * half)
        assert np.isclose(average[voxel], expected, rtol=1e-5)


def test_a_killed_synth_resumes_with_the_same_ratings(tmp_path):
    out = tmp_path / "cohort"
    generate_cohort(out, 2, SEED, profile="tiny", progress=False)
    ratings = (out / "ratings.csv").read_bytes()
    kept = (out / "sub-0000" / "flair.nii.gz").stat().st_mtime_ns
    # as a run killed during its second subject leaves it: one folder, no tables
    shutil.rmtree(out / "sub-0001")
    (out / "ratings.csv").unlink()
    (out / "manifest.csv").unlink()
    generate_cohort(out, 2, SEED, profile="tiny", progress=False)
    assert (out / "ratings.csv").read_bytes() == ratings
    assert (out / "sub-0000" / "flair.nii.gz").stat().st_mtime_ns == kept
    # a folder of another seed is made again, not kept
    generate_cohort(out, 2, SEED + 1, profile="tiny", progress=False)
    assert (out / "sub-0000" / "flair.nii.gz").stat().st_mtime_ns != kept
