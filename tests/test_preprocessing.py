"""Preprocessing: reference grid, resampling, registration, brain mask, normalisation, inversion.

The subject is an analytic phantom (nested ellipsoids with smooth edges: scalp, skull, CSF,
brain with a gyral texture, ventricles, nuclei, a lesion and small blobs) defined in world mm,
so it can be sampled exactly on any grid: RAS, LPS, oblique, anisotropic, or after a planted
head motion.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from csvdnet import preprocessing
from csvdnet.config import PreprocessConfig
from csvdnet.errors import CsvdnetInputError
from csvdnet.io import Image
from csvdnet.preprocessing import (PreprocessMeta, auto_brain_mask, preprocess_labels,
                                   preprocess_subject)

# centre (mm), radii (mm), intensity per contrast; painted in order, later tissues on top.
BRAIN = ((0.0, 1.0, 0.0), (28.0, 33.0, 26.0))
LESION = ((10.0, 14.0, 9.0), (4.0, 4.0, 4.0))
TISSUES = [
    ((0.0, 0.0, 0.0), (40.0, 45.0, 38.0), {"flair": 0.8, "t1": 0.9, "t2": 0.7}),  # scalp
    ((0.0, 0.0, 0.0), (36.0, 41.0, 34.0), {"flair": 0.05, "t1": 0.05, "t2": 0.05}),  # skull
    ((0.0, 0.0, 0.0), (30.0, 35.0, 28.0), {"flair": 0.1, "t1": 0.15, "t2": 1.0}),  # CSF
    (*BRAIN, {"flair": 0.55, "t1": 0.8, "t2": 0.45}),
    ((-6.0, 2.0, 4.0), (4.0, 11.0, 5.0), {"flair": 0.1, "t1": 0.15, "t2": 1.0}),  # ventricles
    ((6.0, 3.0, 3.0), (3.5, 9.0, 5.0), {"flair": 0.1, "t1": 0.15, "t2": 1.0}),
    ((-13.0, -4.0, -3.0), (5.0, 6.0, 5.0), {"flair": 0.7, "t1": 0.6, "t2": 0.6}),  # nuclei
    ((12.0, -2.0, -2.0), (4.0, 7.0, 4.0), {"flair": 0.7, "t1": 0.6, "t2": 0.6}),
    (*LESION, {"flair": 1.0, "t1": 0.4, "t2": 0.9}),
    ((0.0, -20.0, -12.0), (9.0, 7.0, 8.0), {"flair": 0.65, "t1": 0.7, "t2": 0.5}),  # pons
]
_rng = np.random.default_rng(7)
for _ in range(16):  # small blobs all over the brain, so that every rotation shows
    _direction = _rng.normal(size=3)
    _centre = _direction / np.linalg.norm(_direction) * _rng.uniform(12, 20) * [1.0, 1.2, 0.9]
    _value = float(_rng.choice([0.15, 0.9]))
    TISSUES.append((tuple(_centre), (3.5, 3.5, 3.5),
                    {"flair": _value, "t1": 1.1 - _value, "t2": _value}))
TEXTURE = {"flair": 0.2, "t1": -0.16, "t2": 0.2}  # gyral pattern in the brain


def _inside(world: np.ndarray, centre, radii, edge: float = 1.0) -> np.ndarray:
    """Smooth membership of an ellipsoid (a sigmoid of the distance to its surface, ~mm)."""
    q = np.sqrt((((world - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(-1))
    return 1.0 / (1.0 + np.exp(np.clip((q - 1.0) * np.mean(radii) / edge, -50, 50)))


def phantom(world: np.ndarray, contrast: str = "flair") -> np.ndarray:
    """Intensity of the phantom at (N, 3) world points (RAS mm)."""
    value = np.zeros(len(world))
    for centre, radii, values in TISSUES:
        m = _inside(world, centre, radii)
        value = value * (1 - m) + values[contrast] * m
        if (centre, radii) == BRAIN:
            texture = np.prod(np.sin(world / [2.46, 2.82, 2.34] + [0.3, 1.1, 0.7]), axis=1)
            value = value + m * TEXTURE[contrast] * texture
    return 1000.0 * value


def grid_world(affine: np.ndarray, shape) -> np.ndarray:
    """World coordinates (N, 3) of every voxel centre of a grid, C order."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return index.reshape(-1, 3) @ affine[:3, :3].T + affine[:3, 3]


def rotation(degrees: float, axis) -> np.ndarray:
    """4x4 rotation about the world origin."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = np.deg2rad(degrees)
    out = np.eye(4)
    out[:3, :3] = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    return out


def apply(matrix: np.ndarray, points) -> np.ndarray:
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def grid(shape, spacing, orientation: str = "RAS", turn: np.ndarray | None = None) -> np.ndarray:
    """Affine of a grid centred on the world origin, stored RAS, LPS or axes permuted (PIR),
    optionally turned (oblique)."""
    shape, spacing = np.asarray(shape), np.asarray(spacing, dtype=float)
    axes = {"RAS": np.eye(3), "LPS": np.diag([-1.0, -1.0, 1.0]),
            "PIR": np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, -1.0, 0]])}[orientation]
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing
    affine[:3, 3] = -affine[:3, :3] @ ((shape - 1) / 2)
    return affine if turn is None else turn @ affine


def image(affine, shape, contrast="flair", motion=None, name=None, folder=None) -> Image:
    """The phantom sampled on a grid; ``motion`` (4x4, world -> world) moves the head first."""
    world = grid_world(affine, shape)
    if motion is not None:
        world = apply(np.linalg.inv(motion), world)
    path = None if folder is None else folder / f"{name or contrast}.nii.gz"
    return Image(phantom(world, contrast).reshape(shape), affine, path)


def truth_mask(affine, shape, centre, radii, motion=None) -> np.ndarray:
    world = grid_world(affine, shape)
    if motion is not None:
        world = apply(np.linalg.inv(motion), world)
    return (_inside(world, centre, radii) > 0.5).reshape(shape)


def cfg(**changes) -> PreprocessConfig:
    """Fast settings for 2 mm phantoms: 2 mm working spacing, no registration."""
    return PreprocessConfig(**{"spacing": (2.0, 2.0, 2.0), "register": False,
                               "pad_multiple": 8, **changes})


def expected_channel(meta: PreprocessMeta, contrast: str, name: str) -> np.ndarray:
    """The phantom sampled straight on the working grid, normalised with ``meta``'s values."""
    values = phantom(grid_world(meta.working_affine, meta.working_shape), contrast)
    p = meta.normalisation[name]
    clipped = np.clip(values, p["clip_low"], p["clip_high"])
    return ((clipped - p["mean"]) / p["std"]).reshape(meta.working_shape)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def rotation_error_degrees(a: np.ndarray, b: np.ndarray) -> float:
    r = a[:3, :3].T @ b[:3, :3]
    return float(np.rad2deg(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


SHAPE = (47, 47, 47)  # odd: the centre voxel is at the origin in every orientation
SPACING = (2.0, 2.0, 2.0)


# --------------------------------------------------------------------------------------------
# Round trips.

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


# --------------------------------------------------------------------------------------------
# Geometry.

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


def test_downsampled_masks_keep_voxels_more_than_half_covered():
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
    expected = np.zeros(meta.working_shape, np.uint8)
    expected[tuple(slice(c - 1, c + 2) for c in centre)] = 1
    np.testing.assert_array_equal(masks["wmh"], expected)
    assert masks["lacune"].sum() == 0


# --------------------------------------------------------------------------------------------
# Registration.

def test_registration_recovers_a_planted_head_motion(tmp_path):
    affine = grid(SHAPE, SPACING)
    motion = rotation(3.0, (1.0, 0.5, 0.3))
    motion[:3, 3] = [3.0, -2.0, 2.0]  # 4.1 mm
    images = {"flair": image(affine, SHAPE, folder=tmp_path),
              "t1": image(affine, SHAPE, "t1", motion=motion, folder=tmp_path)}
    array, meta = preprocess_subject(images, cfg(register=True))

    found = meta.sequence_transforms["t1"]
    np.testing.assert_array_equal(meta.sequence_transforms["flair"], np.eye(4))
    assert rotation_error_degrees(found, motion) < 1.0
    extremes = np.array(BRAIN[0]) + np.concatenate([np.diag(BRAIN[1]), -np.diag(BRAIN[1])])
    assert np.max(np.linalg.norm(apply(found, extremes) - apply(motion, extremes), axis=1)) < 1.0

    brain = truth_mask(meta.working_affine, meta.working_shape, *BRAIN)
    assert np.corrcoef(array[..., 1][brain], expected_channel(meta, "t1", "t1")[brain])[0, 1] > 0.95
    # Labels drawn on t1 (in t1's scanner frame) follow its registration.
    brain_t1 = truth_mask(affine, SHAPE, *BRAIN, motion=motion).astype(np.float32)
    masks, points = preprocess_labels(
        meta, {"wmh": Image(brain_t1, affine)}, {"cmb": apply(motion, [LESION[0]])},
        label_sequence={"wmh": "t1", "cmb": "t1"})
    unmoved, _ = preprocess_labels(meta, {"wmh": Image(brain_t1, affine)})  # taken as flair's
    assert dice(masks["wmh"], brain) > 0.95 > dice(unmoved["wmh"], brain) + 0.05
    assert np.all(np.abs(points["cmb"][0] - meta.world_to_working([LESION[0]])[0]) < 0.5)


def test_registration_runs_only_when_there_is_something_to_register(monkeypatch):
    def fail(*_):
        raise AssertionError("registration should not run")

    monkeypatch.setattr(preprocessing, "register_rigid", fail)
    affine = grid(SHAPE, SPACING)
    _, meta = preprocess_subject({"flair": image(affine, SHAPE)}, cfg(register=True))
    assert list(meta.sequence_transforms) == ["flair"]
    _, meta = preprocess_subject({"flair": image(affine, SHAPE),
                                  "t1": image(affine, SHAPE, "t1")}, cfg(register=False))
    np.testing.assert_array_equal(meta.sequence_transforms["t1"], np.eye(4))


# --------------------------------------------------------------------------------------------
# Brain mask and normalisation.

def test_auto_brain_mask_on_skull_on_and_skull_stripped_images():
    affine = grid(SHAPE, SPACING)
    flair = image(affine, SHAPE).data
    brain = truth_mask(affine, SHAPE, *BRAIN)
    for volume in (flair, flair * brain):
        assert dice(auto_brain_mask([volume], SPACING), brain) > 0.9
    # With T2 (bright CSF) the mask takes in the CSF around the brain: intracranial.
    intracranial = truth_mask(affine, SHAPE, (0, 0, 0), (30.0, 35.0, 28.0))
    mask = auto_brain_mask([flair, image(affine, SHAPE, "t2").data], SPACING)
    assert dice(mask, intracranial) > 0.9


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


# --------------------------------------------------------------------------------------------
# Errors name the file and the reason.

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


def test_error_bad_config():
    flair = image(grid(SHAPE, SPACING), SHAPE)
    with pytest.raises(CsvdnetInputError, match="preprocess.spacing must be positive"):
        preprocess_subject({"flair": flair}, cfg(spacing=(1.0, 0.0, 1.0)))
