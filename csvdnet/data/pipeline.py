"""``tf.data`` pipelines over the preprocessed cache.

Training (:func:`make_dataset` with ``training=True``) is an infinite stream of batches
``(inputs, targets, sample_weights)``:

- ``inputs``: float32 ``(B, X, Y, Z, C)``;
- ``targets``: dict by task: ``wmh, rssi, lacune`` masks and ``cmb, epvs`` heatmaps as float32
  ``(B, X, Y, Z, 1)``; ``score`` cumulative ordinal levels float32 ``(B, K - 1)``;
- ``sample_weights``: dict by task of float32 ``(B,)`` label masks, 1 where the sample has that
  label and 0 where not. A missing label's target is a zero placeholder: weight it out, never
  treat it as negatives. The score label is present only on whole-brain samples of subjects
  with a rated ``total_score``.

Keras ``Model.fit`` takes this triple as ``(x, y, sample_weight)``; a custom train step
unpacks the same triple.

Whole-brain batches. The ordinal score head needs whole-brain features, so every
``cfg.whole_brain_every``-th batch (batches ``N-1, 2N-1, ...`` counted from 0; ``0`` switches
them off) is made of whole volumes instead of patches. They are all padded (zeros, volume
centred) to ONE fixed shape: the largest extent over all subjects of the cache, rounded up to
the cache's ``pad_multiple`` (see :func:`whole_brain_shape`). A fixed shape means the train step
is traced for exactly two input shapes (patch and whole brain) whatever the subjects, and the
batch dimension stays static. Whole-brain samples are drawn from the subjects with a rated total
score when there are any (the score head learns only from those), else from all subjects; they
get the same augmentation as patches. The batch dimension is static; spatial dimensions are
``None`` in the element spec because the two kinds of batch differ.

Determinism and resuming. Patches and whole brains are two independent streams, each a pure
function of its position: the ``j``-th sample of a stream reads subject
``permutation(seed, epoch)[position]`` (every subject once per stream epoch) and draws all its
randomness from stateless ops seeded with ``(cfg.seed, global sample index)``. A fixed
schedule interleaves the streams batch by batch. ``start_step=k`` starts each stream at the
position it would have reached after ``k`` batches, so it yields exactly batch ``k`` onwards of
a fresh pipeline without reading anything before it. Pass the optimizer step when resuming.

Reading. A sample's spatial transform is drawn first; only the source region the transformed
patch covers is copied out of the memory-mapped arrays (``tf.numpy_function``), with zeros
where it lies outside the volume. Samples are mapped in parallel (``AUTOTUNE``, order kept),
batched with ``drop_remainder=True`` (a static global batch divisible by the replicas) and
prefetched.

Validation (:func:`make_validation_dataset`, or ``training=False``) yields every subject once, in
order, as a whole volume (the cache already pads it to ``pad_multiple``), unaugmented, batch 1,
with label masks as in the cache and the score label wherever the subject is rated.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS, TASK_EVIDENCE
from csvdnet.config import DataConfig
from csvdnet.data import augment, targets
from csvdnet.data.source import CacheSource, whole_brain_shape
from csvdnet.errors import CsvdnetInputError

TASKS = SEGMENTATION_TASKS + DETECTION_TASKS + ("score",)
SCORE_CLASSES = 5

# Purposes folded into the base seed so the streams of random numbers never overlap.
_SAMPLE_SEED, _PATCH_ORDER_SEED, _WHOLE_ORDER_SEED = 0, 1, 2

Batch = tuple[tf.Tensor, dict[str, tf.Tensor], dict[str, tf.Tensor]]


class BatchSchedule:
    """Which batches are whole-brain batches, and where each stream is at a given step.

    Batch ``b`` (from 0) is whole-brain when ``every > 0`` and ``b % every == every - 1``.

    Args:
        every: ``DataConfig.whole_brain_every`` (0 = never, 1 = always).
    """

    def __init__(self, every: int):
        if every < 0:
            raise CsvdnetInputError("data.whole_brain_every", f"must be >= 0, got {every}")
        self.every = every

    def is_whole(self, step: tf.Tensor) -> tf.Tensor:
        """Whether global batch ``step`` is a whole-brain batch (bool tensor)."""
        if self.every == 0:
            return tf.constant(False)
        return step % self.every == self.every - 1

    def whole_before(self, step: int) -> int:
        """Number of whole-brain batches among batches ``0 .. step - 1``."""
        return step // self.every if self.every else 0

    def global_batch(self, k: tf.Tensor, whole: bool) -> tf.Tensor:
        """Global batch index of the ``k``-th batch of the whole-brain or patch stream."""
        if whole:
            return k * self.every + self.every - 1
        if self.every == 0:
            return k
        # Patch batches fill the every - 1 slots before each whole-brain batch.
        return k + k // (self.every - 1)


# The graph code has no Python control flow on tensors (branches are explicit tf.cond), so
# AutoGraph's source conversion would only cost seconds of tracing per pipeline.
_no_autograph = tf.autograph.experimental.do_not_convert


def _stateless_seed(seed: int, purpose: int, index: tf.Tensor) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(
        tf.constant([seed, purpose], tf.int64), tf.cast(index, tf.int64))


class _SampleBuilder:
    """Turns (subject, sample seed) into one ``(image, targets, weights)`` sample, in graph."""

    def __init__(self, source: CacheSource, cfg: DataConfig, tasks: Sequence[str],
                 score_classes: int, augmentation: augment.Augmentation):
        self.source = source
        self.cfg = cfg
        self.tasks = tuple(tasks)
        self.score_classes = score_classes
        self.augmentation = augmentation
        self.shapes = tf.constant(source.shapes)
        self.spacing = tf.constant(source.spacing)
        self.present = tf.constant(source.present)
        self.total_score = tf.constant(source.total_score)

    def _read(self, subject: tf.Tensor, lo: tf.Tensor,
              size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        detection = self.source.detection
        out = tf.numpy_function(self.source.read, [subject, lo, size],
                                [tf.float32, tf.uint8] + [tf.float32] * len(detection))
        image, masks, points = out[0], out[1], out[2:]
        image.set_shape((None, None, None, len(self.source.channels)))
        masks.set_shape((None, None, None, len(self.source.segmentation)))
        for p in points:
            p.set_shape((None, 3))
        return image, masks, points

    def sample(self, subject: tf.Tensor, origin: tf.Tensor, out_shape: tf.Tensor,
               params: augment.SpatialParams, whole: tf.Tensor,
               seed: tf.Tensor | None) -> Batch:
        """Read, transform and label one sample.

        Args:
            subject: int scalar subject position.
            origin: int32 ``(3,)`` source voxel of the untransformed sample's first voxel.
            out_shape: int32 ``(3,)`` sample shape.
            params: Spatial transform (identity for validation).
            whole: bool scalar: a whole-brain sample (enables the score label).
            seed: Stateless seed for intensity augmentation and modality dropout; ``None``
                for validation (no random changes).

        Returns:
            ``(image, targets, weights)`` of one sample (no batch dimension).
        """
        lo, size, centre = augment.source_box(origin, out_shape, params)
        image, masks, points = self._read(subject, lo, size)
        channels = image.shape[-1]
        warped = augment.warp(tf.concat([image, tf.cast(masks, tf.float32)], axis=-1),
                              params, centre, out_shape)
        image, masks = warped[..., :channels], tf.cast(warped[..., channels:] > 0.5, tf.float32)
        dropped = tf.zeros([channels], tf.bool)
        if seed is not None:
            seeds = tf.random.experimental.stateless_split(seed, 2)
            if self.cfg.augment:
                image = augment.intensity(image, seeds[0], self.augmentation)
            if self.cfg.modality_dropout > 0:
                dropped = augment.dropped_channels(channels, seeds[1], self.cfg.modality_dropout)
                image = image * tf.cast(~dropped, image.dtype)

        sigma = targets.sigma_voxels(self.cfg.heatmap_sigma_mm, self.spacing[subject])
        present = self.present[subject]
        label_tasks = self.source.segmentation + self.source.detection
        out_targets: dict[str, tf.Tensor] = {}
        for i, task in enumerate(self.source.segmentation):
            out_targets[task] = masks[..., i:i + 1]
        for task, task_points in zip(self.source.detection, points):
            task_points = augment.transform_points(task_points, params, centre, out_shape)
            out_targets[task] = targets.render_heatmap(task_points, out_shape, sigma)[..., None]
        weights = {task: present[label_tasks.index(task)] * self._visible(task, dropped)
                   for task in label_tasks}
        if "score" in self.tasks:
            score = self.total_score[subject]
            out_targets["score"] = targets.ordinal_targets(score, self.score_classes)
            weights["score"] = tf.cast(whole & tf.math.is_finite(score), tf.float32)
        return image, out_targets, weights

    def _visible(self, task: str, dropped: tf.Tensor) -> tf.Tensor:
        """float32 scalar: 0 when dropout blanked every sequence the task is seen on
        (:data:`csvdnet.TASK_EVIDENCE`), else 1."""
        names = list(self.cfg.channels)
        evidence = [names.index(c) for c in TASK_EVIDENCE.get(task, ()) if c in names]
        if not evidence:
            return tf.constant(1.0)
        return 1.0 - tf.cast(tf.reduce_all(tf.gather(dropped, evidence)), tf.float32)

    def training_sample(self, j: tf.Tensor, whole: bool, batch_size: int,
                        schedule: BatchSchedule, subjects: tf.Tensor,
                        out_shape: tf.Tensor) -> Batch:
        """The ``j``-th sample of the patch or whole-brain stream.

        Args:
            j: int64 position in the stream.
            whole: The whole-brain stream (else patches).
            batch_size: Samples per batch.
            schedule: Maps the stream's batches to global batch indices.
            subjects: int64 subject positions this stream draws from.
            out_shape: int32 ``(3,)`` static sample shape.

        Returns:
            ``(image, targets, weights)`` of one sample with static shapes.
        """
        sample_index = schedule.global_batch(j // batch_size, whole) * batch_size + j % batch_size
        spatial_seed, origin_seed, sample_seed = tf.unstack(
            tf.random.experimental.stateless_split(
                _stateless_seed(self.cfg.seed, _SAMPLE_SEED, sample_index), 3))
        # Each stream epoch visits every subject once, in an order that depends only on it.
        count = tf.shape(subjects, out_type=tf.int64)[0]
        order_seed = _stateless_seed(self.cfg.seed,
                                     _WHOLE_ORDER_SEED if whole else _PATCH_ORDER_SEED, j // count)
        subject = tf.random.experimental.stateless_shuffle(subjects, order_seed)[j % count]
        params = (augment.draw_spatial(spatial_seed, self.spacing[subject], self.augmentation)
                  if self.cfg.augment else augment.identity_params())
        if whole:
            origin = (self.shapes[subject] - out_shape) // 2
        else:
            draws = tf.random.stateless_uniform([6], origin_seed)
            origin = tf.numpy_function(self.source.patch_origin,
                                       [subject, draws[0] < self.cfg.lesion_oversample,
                                        draws[1:], out_shape], tf.int32)
            origin.set_shape((3,))
        image, out_targets, weights = self.sample(subject, origin, out_shape, params,
                                                  tf.constant(whole), sample_seed)
        static = tuple(tf.get_static_value(out_shape))
        image.set_shape(static + (image.shape[-1],))
        for task in out_targets:
            if task != "score":
                out_targets[task].set_shape(static + (1,))
        return image, out_targets, weights


def _check(cfg: DataConfig, tasks: Sequence[str], batch_size: int) -> None:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise CsvdnetInputError("tasks", f"unknown task {unknown[0]!r} (known: {', '.join(TASKS)})")
    if batch_size < 1:
        raise CsvdnetInputError("train.batch_size", f"must be >= 1, got {batch_size}")
    # The ranges of cfg's own keys were checked when it was built (DataConfig.__post_init__).


def make_dataset(cache_dir: str | os.PathLike, subject_ids: Sequence[str], cfg: DataConfig, *,
                 batch_size: int, training: bool = True, start_step: int = 0,
                 tasks: Sequence[str] = TASKS, score_classes: int = SCORE_CLASSES,
                 augmentation: augment.Augmentation = augment.Augmentation()) -> tf.data.Dataset:
    """The training pipeline (or, with ``training=False``, :func:`make_validation_dataset`).

    Args:
        cache_dir: The preprocessed cache.
        subject_ids: Subjects to train on.
        cfg: Patch size, oversampling, whole-brain schedule, augmentation switches, seed.
        batch_size: Global batch size (training only; validation batches are single volumes).
        training: ``False`` returns the validation dataset.
        start_step: Number of batches already consumed (the optimizer step when resuming).
        tasks: Tasks to produce targets and label masks for (subset of :data:`TASKS`).
        score_classes: Ordinal classes ``K`` of the score (``ModelConfig.score_classes``).
        augmentation: Augmentation probabilities and ranges (used when ``cfg.augment``).

    Returns:
        An infinite dataset of ``(inputs, targets, sample_weights)`` batches (training) or a
        finite one (validation); see the module docstring.

    Raises:
        CsvdnetInputError: Unknown subject, channel or task, or an invalid size.
    """
    if not training:
        return make_validation_dataset(cache_dir, subject_ids, cfg, tasks=tasks,
                                       score_classes=score_classes)
    _check(cfg, tasks, batch_size)
    if start_step < 0:
        raise CsvdnetInputError("start_step", f"must be >= 0, got {start_step}")
    source = CacheSource(cache_dir, subject_ids, cfg.channels, tasks, cfg.lesion_task_weights)
    builder = _SampleBuilder(source, cfg, tasks, score_classes, augmentation)
    schedule = BatchSchedule(cfg.whole_brain_every)
    rated = np.flatnonzero(np.isfinite(source.total_score))

    def stream(whole: bool, first_batch: int) -> tf.data.Dataset:
        shape = whole_brain_shape(cache_dir) if whole else cfg.patch_size
        use_rated = whole and "score" in tasks and rated.size > 0
        subjects = tf.constant(rated if use_rated else np.arange(len(source)), tf.int64)
        out_shape = tf.constant(shape, tf.int32)
        samples = tf.data.Dataset.range(first_batch * batch_size, tf.int64.max)
        samples = samples.map(
            _no_autograph(lambda j: builder.training_sample(j, whole, batch_size, schedule,
                                                            subjects, out_shape)),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return samples.batch(batch_size, drop_remainder=True)

    whole_before = schedule.whole_before(start_step)
    if schedule.every == 1:
        dataset = stream(True, whole_before)
    elif schedule.every == 0:
        dataset = stream(False, start_step)
    else:
        choice = tf.data.Dataset.range(start_step, tf.int64.max).map(
            _no_autograph(lambda b: tf.cast(schedule.is_whole(b), tf.int64)))
        dataset = tf.data.Dataset.choose_from_datasets(
            [stream(False, start_step - whole_before), stream(True, whole_before)], choice)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_validation_dataset(cache_dir: str | os.PathLike, subject_ids: Sequence[str],
                            cfg: DataConfig, *, tasks: Sequence[str] = TASKS,
                            score_classes: int = SCORE_CLASSES) -> tf.data.Dataset:
    """Every subject once, in order: whole volume, no augmentation, batch 1.

    Args:
        cache_dir: The preprocessed cache.
        subject_ids: Subjects to validate on.
        cfg: Channels and heatmap sigma.
        tasks: Tasks to produce targets and label masks for.
        score_classes: Ordinal classes ``K`` of the score.

    Returns:
        A finite dataset of ``(inputs, targets, sample_weights)`` batches of one volume.

    Raises:
        CsvdnetInputError: Unknown subject, channel or task.
    """
    _check(cfg, tasks, 1)
    source = CacheSource(cache_dir, subject_ids, cfg.channels, tasks)
    builder = _SampleBuilder(source, cfg, tasks, score_classes, augment.Augmentation())

    def sample(subject: tf.Tensor) -> Batch:
        return builder.sample(subject, tf.zeros(3, tf.int32), builder.shapes[subject],
                              augment.identity_params(), tf.constant(True), None)

    dataset = tf.data.Dataset.range(len(source)).map(
        _no_autograph(sample), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(1).prefetch(tf.data.AUTOTUNE)
