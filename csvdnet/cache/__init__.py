"""The preprocessed cache: each subject of a cohort preprocessed once, then read by training.

One concept per module:

- :mod:`csvdnet.cache.format`: the on-disk layout, format names and versions, subject folders.
- :mod:`csvdnet.cache.write`: building a cache (:func:`preprocess_cohort`, and the
  :func:`plan_cache` / :func:`process_subject` / :func:`finish_cache` steps the Beam engine
  runs).
- :mod:`csvdnet.cache.read`: reading it (:func:`load_cache`, :func:`load_cached_subject`), checking
  it against a network's channels and stride (:func:`open_cache`, :func:`labelled_tasks`), and
  the preprocessing record a trained model keeps (:func:`preprocess_record`).

Every name is importable from ``csvdnet.cache`` as before.
"""

from csvdnet.cache.format import (INDEX_FORMAT, INDEX_VERSION, MASK_LABELS, PREPROCESS_FORMAT,
                                  PREPROCESS_VERSION, subject_dir)
from csvdnet.cache.read import (CachedSubject, labelled_tasks, load_cache, load_cached_subject,
                                open_cache, preprocess_record)
from csvdnet.cache.write import (CachePlan, CacheSummary, finish_cache, plan_cache,
                                 preprocess_cohort, process_subject)

__all__ = [
    "INDEX_FORMAT",
    "INDEX_VERSION",
    "MASK_LABELS",
    "PREPROCESS_FORMAT",
    "PREPROCESS_VERSION",
    "CachePlan",
    "CacheSummary",
    "CachedSubject",
    "finish_cache",
    "labelled_tasks",
    "load_cache",
    "load_cached_subject",
    "open_cache",
    "plan_cache",
    "preprocess_cohort",
    "preprocess_record",
    "process_subject",
    "subject_dir",
]
