"""Automatic brain mask on the phantom, skull on and skull stripped."""

from __future__ import annotations

from _phantom import BRAIN, SHAPE, SPACING, dice, grid, image, truth_mask
from csvdnet.preprocessing import auto_brain_mask


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
