"""Building the preprocessed cache: each subject of a cohort preprocessed once into its folder.

Each subject folder appears complete or not at all (:func:`csvdnet.fsutil.atomic_dir`), so a
killed run resumes where it stopped: a subject whose ``meta.json`` records the same
preprocessing config and channels is kept. ``index.json`` is written last
(:func:`finish_cache`). The layout is in :mod:`csvdnet.cache.format`; the Beam engine
(:mod:`csvdnet.beam.preprocess`) runs the same :func:`plan_cache`, :func:`process_subject` and
:func:`finish_cache`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from tqdm import tqdm

from csvdnet import DETECTION_TASKS, LABEL_NAMES
from csvdnet.cache.format import (INDEX_FORMAT, INDEX_VERSION, MASK_LABELS, _SUBJECT_FILES,
                                  _read_json, subject_dir)
from csvdnet.config import PreprocessConfig
from csvdnet.config import to_dict as config_to_dict
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_dir, remove_stale_parts, write_text_atomic
from csvdnet.io import check_on_grid, load_mask, load_nifti, read_points
from csvdnet.preprocessing import preprocess_labels, preprocess_subject

if TYPE_CHECKING:
    from csvdnet.io import Cohort, Image, Subject

__all__ = [
    "CachePlan",
    "CacheSummary",
    "finish_cache",
    "plan_cache",
    "preprocess_cohort",
    "process_subject",
]


@dataclasses.dataclass(frozen=True)
class CacheSummary:
    """What :func:`preprocess_cohort` did.

    Attributes:
        cache_dir: The cache folder.
        done: Subjects now in the cache (written or skipped), in cohort order; ``index.json``
            lists these.
        written: Subjects preprocessed by this run.
        skipped: Subjects already complete with the same config and channels, kept as they were.
        failed: Subject id -> message, for subjects whose input could not be used.
    """

    cache_dir: Path
    done: tuple[str, ...]
    written: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: dict[str, str]


def _is_complete(folder: Path, config: dict[str, Any], channels: Sequence[str]) -> bool:
    """Whether ``folder`` holds a subject preprocessed with ``config`` and ``channels``."""
    if not all((folder / name).is_file() for name in _SUBJECT_FILES):
        return False
    try:
        meta = _read_json(folder / "meta.json")
    except CsvdnetInputError:
        return False
    return (isinstance(meta, dict) and meta.get("config") == config
            and meta.get("channels") == list(channels))


def _check_channels(cohort: Cohort, channels: tuple[str, ...], cfg: PreprocessConfig) -> None:
    unknown = [c for c in channels if c not in cohort.sequences]
    if unknown:
        raise CsvdnetInputError(cohort.root, f"channel(s) {', '.join(unknown)} are not sequences "
                                             f"of the cohort ({', '.join(cohort.sequences)})")
    # A sequence no subject has is a wrong name, not a problem of every subject.
    absent = [c for c in channels if cohort.subjects
              and not any(c in subject.sequences for subject in cohort.subjects)]
    if absent:
        raise CsvdnetInputError(cohort.root, f"no subject has a {', '.join(absent)} image: is "
                                             f"the sequence name right?")
    if cfg.reference not in channels:
        raise CsvdnetInputError(cohort.root, f"the channels ({', '.join(channels)}) must include "
                                             f"the reference sequence {cfg.reference}")


def _load_inputs(subject: Subject, cfg: PreprocessConfig, channels: tuple[str, ...]):
    """Load and check everything a subject's preprocessing reads, before any expensive step:
    headers and voxels, each label on the grid of the sequence it is drawn on, points inside
    that image. Fails in about a second instead of after registration."""
    missing = [c for c in channels if c not in subject.sequences]
    if missing:
        where = next(iter(subject.sequences.values())).parent
        raise CsvdnetInputError(where, f"subject {subject.id} has no {', '.join(missing)} image "
                                       f"(channels: {', '.join(channels)})")
    images = {name: load_nifti(subject.sequences[name]) for name in channels}
    labels = subject.labels

    def drawn_on(label: str, path: Path) -> Image:
        name = subject.label_sequence.get(label, cfg.reference)
        if name not in images:
            raise CsvdnetInputError(path, f"{label} is drawn on sequence {name!r}, which is not "
                                          f"one of the channels ({', '.join(channels)})")
        return images[name]

    brain_mask = None
    if cfg.brain_mask == "label" and "brain_mask" in labels:
        brain_mask = load_mask(labels["brain_mask"], like=images[cfg.reference])
    masks = {}
    for name in MASK_LABELS:
        if name in labels:
            like = drawn_on(name, labels[name])
            masks[name] = (check_on_grid(load_nifti(labels[name], kind="labelmap"), like)
                           if name == "regions" else load_mask(labels[name], like=like))
    point_files = {task: labels[task] for task in DETECTION_TASKS if task in labels}
    points = {task: read_points(path, like=drawn_on(task, path))
              for task, path in point_files.items()}
    return images, brain_mask, masks, points, point_files


def _write_subject(subject: Subject, folder: Path, cfg: PreprocessConfig,
                   channels: tuple[str, ...]) -> None:
    """Preprocess one subject into ``folder`` (atomically)."""
    images, brain_mask, masks, points, point_files = _load_inputs(subject, cfg, channels)
    array, meta = preprocess_subject(images, cfg, brain_mask)
    masks, points = preprocess_labels(meta, masks, points, label_sequence=subject.label_sequence,
                                      point_sources=point_files)

    record = {
        "id": subject.id,
        "labels": [task for task in LABEL_NAMES if task in masks or task in points],
        "points": {task: coords.tolist() for task, coords in points.items()},
        "ratings": None if subject.ratings is None else dataclasses.asdict(subject.ratings),
        "spacing": list(meta.spacing),
    }
    with atomic_dir(folder) as tmp:
        np.save(tmp / "image.npy", array, allow_pickle=False)
        for name, mask in masks.items():
            np.save(tmp / f"{name}.npy", mask, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta.to_dict(), indent=1), encoding="utf-8")
        (tmp / "subject.json").write_text(json.dumps(record, indent=1), encoding="utf-8")


def _remove_stale(folder: Path) -> None:
    """Remove a cache subject folder left by an earlier run (never anything else)."""
    if all((folder / name).is_file() for name in ("meta.json", "subject.json")):
        shutil.rmtree(folder)


def process_subject(subject: Subject, folder: Path, cfg: PreprocessConfig,
                     channels: tuple[str, ...]) -> str | None:
    """Write one subject (in this or a worker process): None, or the message of the
    :class:`~csvdnet.errors.CsvdnetInputError` that made it fail (its old folder removed)."""
    try:
        _write_subject(subject, folder, cfg, channels)
    except CsvdnetInputError as exc:
        _remove_stale(folder)
        return str(exc)
    return None


def preprocess_cohort(cohort: Cohort, out_dir: str | os.PathLike, cfg: PreprocessConfig, *,
                      channels: Sequence[str] | None = None, progress: bool = True,
                      overwrite: bool = False, jobs: int = 1) -> CacheSummary:
    """Preprocess every subject of a cohort into a cache folder (layout in the module doc).

    A subject whose input cannot be used (:class:`~csvdnet.errors.CsvdnetInputError`, e.g. a
    missing channel or a label on another grid), like one ``read_cohort`` could not locate
    (``cohort.problems``), is recorded in ``index.json`` ``"failed"`` with its message, any
    older copy of it removed, and the run goes on; other exceptions propagate. Every input of
    a subject is loaded and checked before its expensive steps, so a bad label fails in about
    a second. Temporary entries left by a killed run are removed first; ``index.json`` is
    written last.

    Args:
        cohort: The cohort (:func:`csvdnet.io.read_cohort`).
        out_dir: The cache folder (created if needed).
        cfg: Preprocessing settings.
        channels: Sequences to stack, in channel order (default: the cohort's sequences); every
            subject must have them all, and they must include ``cfg.reference``.
        progress: Show a progress bar on stderr.
        overwrite: Redo every subject. Otherwise a subject already in the cache with the same
            config and channels is kept (a killed run resumes); set it after changing a
            subject's images or labels.
        jobs: Subjects preprocessed at once, each in its own worker process (1 = in this
            process). Workers write the subject folders (atomically); ``index.json`` is written
            by this process once all have finished.

    Returns:
        What was written, kept and failed.

    Raises:
        CsvdnetInputError: A channel is not a sequence of the cohort, no subject has it, or the
            reference is not among the channels.
    """
    plan = plan_cache(cohort, out_dir, cfg, channels=channels, overwrite=overwrite)
    written: list[str] = []
    failed: dict[str, str] = {}
    bar = tqdm(total=len(cohort.subjects), initial=len(plan.skipped), desc="preprocess",
               unit="subject", file=sys.stderr, disable=not progress)

    def record(subject_id: str, error: str | None) -> None:
        if error is None:
            written.append(subject_id)
        else:
            failed[subject_id] = error
            bar.set_postfix(failed=len(failed) + len(cohort.problems))
        bar.update(1)
        if progress:  # a line per finished subject: the bar alone sits at 0 % for minutes
            bar.write(f"{'failed' if error else 'done'} {subject_id} "
                      f"({len(written) + len(failed)} of {len(plan.todo)})",
                      file=sys.stderr)

    if jobs > 1 and len(plan.todo) > 1:
        # spawn, not fork: the parent may hold threads (TensorFlow, ITK) that fork would copy.
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=min(jobs, len(plan.todo)),
                mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(process_subject, subject, folder, cfg, plan.channels):
                       subject.id for subject, folder in plan.todo}
            try:
                for future in concurrent.futures.as_completed(futures):
                    record(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    else:
        for subject, folder in plan.todo:
            record(subject.id, process_subject(subject, folder, cfg, plan.channels))
    bar.close()
    return finish_cache(plan, written, failed)


@dataclasses.dataclass
class CachePlan:
    """What :func:`preprocess_cohort` has to do, decided before any subject is preprocessed
    (:func:`plan_cache`).

    Attributes:
        cohort: The cohort.
        cache_dir: The cache folder.
        cfg: Preprocessing settings.
        channels: Sequences stacked, in channel order.
        todo: ``(subject, its cache folder)`` to preprocess.
        skipped: Subjects already complete with the same config and channels.
    """

    cohort: Cohort
    cache_dir: Path
    cfg: PreprocessConfig
    channels: tuple[str, ...]
    todo: list[tuple[Subject, Path]]
    skipped: list[str]


def plan_cache(cohort: Cohort, out_dir: str | os.PathLike, cfg: PreprocessConfig, *,
               channels: Sequence[str] | None = None, overwrite: bool = False) -> CachePlan:
    """Check the channels, clear what a killed run left and the cached copies of subjects that
    could not be located, and sort the subjects into complete and to do (arguments as
    :func:`preprocess_cohort`).

    Raises:
        CsvdnetInputError: As :func:`preprocess_cohort`.
    """
    out_dir = Path(out_dir)
    channels = tuple(cohort.sequences if channels is None else channels)
    _check_channels(cohort, channels, cfg)
    config = config_to_dict(cfg)
    remove_stale_parts(out_dir)  # what a killed run was writing
    for subject_id in cohort.problems:
        _remove_stale(subject_dir(out_dir, subject_id))
    skipped: list[str] = []
    todo = []
    for subject in cohort.subjects:
        folder = subject_dir(out_dir, subject.id)
        if not overwrite and _is_complete(folder, config, channels):
            skipped.append(subject.id)
        else:
            todo.append((subject, folder))
    return CachePlan(cohort=cohort, cache_dir=out_dir, cfg=cfg, channels=channels, todo=todo,
                     skipped=skipped)


def finish_cache(plan: CachePlan, written: Sequence[str],
                 failed: dict[str, str]) -> CacheSummary:
    """Write ``index.json`` once every subject of ``plan.todo`` has been processed.

    Args:
        plan: The run's plan.
        written: Subjects written by this run (any order).
        failed: Subject -> message, for the subjects of this run that failed.

    Returns:
        The run's summary (subjects in cohort order).
    """
    cohort = plan.cohort
    order = [s.id for s in cohort.subjects]
    written = sorted(written, key=order.index)
    failed = {**{s: m for s, m in cohort.problems.items()},
              **{s.id: failed[s.id] for s in cohort.subjects if s.id in failed}}

    done = tuple(s.id for s in cohort.subjects if s.id not in failed)
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "channels": list(plan.channels),
        "preprocess": config_to_dict(plan.cfg),
        "subjects": list(done),
        "failed": failed,
    }
    write_text_atomic(plan.cache_dir / "index.json", json.dumps(index, indent=1))
    return CacheSummary(cache_dir=plan.cache_dir, done=done, written=tuple(written),
                        skipped=tuple(plan.skipped), failed=failed)

