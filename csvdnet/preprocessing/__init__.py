"""Bring a subject's sequences onto one normalised, channels-last working grid, invertibly.

Modules, one concept each (the pipeline is described in :mod:`csvdnet.preprocessing.subject`):

- :mod:`~csvdnet.preprocessing.grid`: working grid, resampling, bounding boxes, crops.
- :mod:`~csvdnet.preprocessing.meta`: :class:`PreprocessMeta`, the record that exactly inverts it.
- :mod:`~csvdnet.preprocessing.brain_mask`: :func:`auto_brain_mask`.
- :mod:`~csvdnet.preprocessing.registration`: :func:`register_sequences`, :func:`register_rigid`.
- :mod:`~csvdnet.preprocessing.subject`: :func:`preprocess_subject`, the pipeline.
- :mod:`~csvdnet.preprocessing.labels`: :func:`preprocess_labels` (masks and points).

Every public name is re-exported here: ``from csvdnet.preprocessing import preprocess_subject``.
"""

from csvdnet.preprocessing.brain_mask import auto_brain_mask
from csvdnet.preprocessing.labels import preprocess_labels
from csvdnet.preprocessing.meta import META_VERSION, PreprocessMeta
from csvdnet.preprocessing.registration import register_rigid, register_sequences
from csvdnet.preprocessing.subject import (MIN_OVERLAP, preprocess_subject,
                                           preprocess_subject_and_mask)

__all__ = [
    "META_VERSION",
    "MIN_OVERLAP",
    "PreprocessMeta",
    "auto_brain_mask",
    "preprocess_labels",
    "preprocess_subject",
    "preprocess_subject_and_mask",
    "register_rigid",
    "register_sequences",
]
