"""Rigid co-registration: a planted head motion is recovered; nothing to register, nothing run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _phantom import (BRAIN, LESION, SHAPE, SPACING, apply, cfg, dice, expected_channel, grid,
                      image, rotation, rotation_error_degrees, truth_mask)
from csvdnet.io import Image
from csvdnet.preprocessing import (preprocess_labels, preprocess_subject, register_sequences,
                                   subject)


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


def test_registration_is_the_same_whatever_the_machine_s_threads(tmp_path):
    # The metric is summed over work units in the order they finish; the default number of
    # units follows ITK's thread count, so a 1-core and an 8-core machine co-registered the same
    # images differently (and rated them differently) until one unit was fixed.
    import SimpleITK as sitk

    affine = grid(SHAPE, SPACING)
    motion = rotation(3.0, (1.0, 0.5, 0.3))
    motion[:3, 3] = [3.0, -2.0, 2.0]
    fixed = image(affine, SHAPE, folder=tmp_path)
    moving = {"t1": image(affine, SHAPE, "t1", motion=motion, folder=tmp_path)}
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    found = []
    try:
        for threads in (1, 3, 8):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
            found.append(register_sequences(fixed, moving, workers=1)["t1"])
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    np.testing.assert_array_equal(found[0], found[1])
    np.testing.assert_array_equal(found[0], found[2])


def test_registration_runs_only_when_there_is_something_to_register(monkeypatch):
    def fail(*_):
        raise AssertionError("registration should not run")

    monkeypatch.setattr(subject, "register_sequences", fail)
    affine = grid(SHAPE, SPACING)
    _, meta = preprocess_subject({"flair": image(affine, SHAPE)}, cfg(register=True))
    assert list(meta.sequence_transforms) == ["flair"]
    _, meta = preprocess_subject({"flair": image(affine, SHAPE),
                                  "t1": image(affine, SHAPE, "t1")}, cfg(register=False))
    np.testing.assert_array_equal(meta.sequence_transforms["t1"], np.eye(4))


@pytest.mark.slow
def test_registration_of_a_synthetic_subject_in_every_orientation_it_writes(tmp_path):
    """The tiny profile writes FLAIR as LPS, T1 as PIR (sagittal), T2 as RAS, SWI as LPS and DWI
    as LAS, each moved by its own planted head motion (synth.json)."""
    from csvdnet.io import load_nifti
    from csvdnet.synth import generate_subject, resolve_profile

    generate_subject(tmp_path, resolve_profile("tiny"), 0, 0, np.full(5, 0.2))
    images = {n: load_nifti(tmp_path / f"{n}.nii.gz") for n in ("flair", "t1", "t2", "swi", "dwi")}
    truth = json.loads((tmp_path / "synth.json").read_text())["sequence_transforms"]
    reference = images.pop("flair")

    found = register_sequences(reference, images)

    head = np.argwhere(reference.data > np.percentile(reference.data, 60))
    low, high = head.min(axis=0), head.max(axis=0)
    corners = apply(reference.affine, [np.where(bits, high, low) for bits in np.ndindex(2, 2, 2)])
    for name, image in images.items():
        true = np.array(truth[name])
        shift = np.linalg.norm(apply(found[name], corners) - apply(true, corners), axis=1).max()
        # 3.5-4.5 mm voxels: a looser angle than the 0.5 degrees of the clinical benchmark.
        assert rotation_error_degrees(found[name], true) < 1.0, name
        assert shift < max(image.spacing) / 2, name
