"""Synthetic cohorts of cerebral small vessel disease with exact ground truth.

Each subject is the MNI152 atlas (:mod:`csvdnet.atlas`) warped into a head of its own
(:mod:`~csvdnet.synth.anatomy`), given the markers of a sampled plan
(:mod:`~csvdnet.synth.ratings`, :mod:`~csvdnet.synth.lesions`), imaged as FLAIR, T1, T2, SWI and
DWI on clinical grids (:mod:`~csvdnet.synth.sequences`) and written in the cohort layout with
labels and ratings (:mod:`~csvdnet.synth.cohort`). :func:`write_preview` draws a montage.
"""

from csvdnet.synth.cohort import generate_cohort, generate_subject, subject_ids
from csvdnet.synth.preview import write_preview
from csvdnet.synth.profiles import (PROFILES, WORKING_SPACING_MM, Profile, SequenceProtocol,
                                     resolve_profile)

__all__ = ["PROFILES", "WORKING_SPACING_MM", "Profile", "SequenceProtocol", "generate_cohort",
           "generate_subject", "resolve_profile", "subject_ids", "write_preview"]
