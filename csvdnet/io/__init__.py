"""Reading and writing what csvdnet exchanges with users: NIfTI images, labels, ratings, cohorts.

Everything a user hands csvdnet enters through this package, so every way a file can be unusable
ends here as a :class:`~csvdnet.errors.CsvdnetInputError` naming the file and the reason.

Modules, one concept each:

- :mod:`csvdnet.io.nifti`: :class:`Image`, :func:`load_nifti` (header, size and voxel checks,
  4-D diffusion series), :func:`read_grid` (header only), :func:`save_nifti`.
- :mod:`csvdnet.io.labels`: :func:`load_mask` (on the grid of its sequence), point labels
  (:func:`read_points`, :func:`write_points`).
- :mod:`csvdnet.io.ratings`: :class:`Ratings`, ``ratings.csv``.
- :mod:`csvdnet.io.cohort`: :func:`read_cohort` (subject folders or a manifest CSV, and the
  cohort's ``ratings.csv``), :func:`load_subject`; the two forms are read by
  :mod:`csvdnet.io.cohort_folder` (:func:`find_sequences`) and :mod:`csvdnet.io.cohort_manifest`.
- :mod:`csvdnet.io.subject`: :class:`Subject`, :class:`Cohort` (located, not loaded).
- :mod:`csvdnet.io.sequences`: sequence file names (:func:`sequence_of_file`, the
  :data:`SEQUENCE_ALIASES`, the NIfTI suffixes).
- :mod:`csvdnet.io.csvtable`: the CSV conventions shared by points, ratings and manifests.

Every public name is re-exported here: ``from csvdnet.io import load_nifti`` is the way to import.
"""

from csvdnet.io.cohort import (SEQUENCE_ALIASES, Cohort, Subject, find_sequences, load_subject,
                               read_cohort, sequence_of_file)
from csvdnet.io.labels import (KNOWN_LABELS, POINT_LABELS, check_on_grid, load_mask, read_points,
                               write_points)
from csvdnet.io.nifti import (B1000_RANGE, MAX_VOXELS, NIFTI_SUFFIXES, Image, ImageKind,
                              PathLike, load_nifti, read_grid, save_nifti)
from csvdnet.io.ratings import RATING_FIELDS, Ratings, read_ratings, write_ratings

__all__ = [
    "B1000_RANGE",
    "KNOWN_LABELS",
    "MAX_VOXELS",
    "NIFTI_SUFFIXES",
    "POINT_LABELS",
    "RATING_FIELDS",
    "SEQUENCE_ALIASES",
    "Cohort",
    "Image",
    "ImageKind",
    "PathLike",
    "Ratings",
    "Subject",
    "check_on_grid",
    "find_sequences",
    "load_mask",
    "load_nifti",
    "load_subject",
    "read_cohort",
    "read_grid",
    "read_points",
    "read_ratings",
    "save_nifti",
    "sequence_of_file",
    "write_points",
    "write_ratings",
]
