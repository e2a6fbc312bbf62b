"""One subject's MRI in, every marker found, measured and rated out: :class:`Predictor`.

``Predictor.from_dir(model_dir)`` loads a trained run directory (``csvdnet train``) or an
exported model (``csvdnet export``, optionally served by TF Serving); its working spacing,
channels and normalisation come from the run's ``preprocess.json`` (the cache's record) or the
export's ``metadata.json`` (a copy of it), never from a config that could disagree with the
cache. ``predict(subject)``
then runs, timing each stage:

1. **load** the subject's sequences (the model's channels; a missing one is an error naming it,
   unless the model was trained with modality dropout: then the channel is blanked as training
   blanked it, and the report flags it);
2. **preprocess** exactly as the cache was made (co-registration, working grid, normalisation);
3. **network**: dense outputs by Gaussian-blended sliding windows of the training patch size,
   the ordinal score from one whole-volume pass (``csvdnet.inference.sliding_window``);
   optional left-right flip test-time augmentation averages both passes;
4. **invert**: probabilities back onto the reference grid by trilinear interpolation (written
   as float maps);
5. **postprocess**: segmentation masks thresholded on the working grid, where calibration and
   validation decide them (smallest lesions removed there, never above the smallest lesion the
   definition admits: ``postprocess.SMALLEST_LESION_MM3``), then carried back to the reference
   grid keeping each lesion whole (:func:`csvdnet.inference.postprocess.mask_to_reference`;
   thresholding the interpolated probabilities shrank small lacunes below the size floor);
   components of the masks; heatmap peaks of CMB / EPVS at sub-voxel positions (found on the
   isotropic working grid, as validation finds them, then mapped to world mm);
6. **regions**: the MNI152 region atlas placed on the subject's own anatomy by an affine then a
   deformable registration (``csvdnet.inference.regions.place_regions``), or the subject's own
   parcellation (``regions="labels"``); region and side of every finding; EPVS peaks on a
   higher one's ridge dropped outside the basal ganglia (``inference.peak_ridge``);
7. **scoring**: measured quantities (``csvdnet.inference.measure``), every rule set
   (``csvdnet.scoring``), the ordinal head's class probabilities and the agreement flag.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS, TASK_EVIDENCE
from csvdnet.errors import CsvdnetInputError
from csvdnet.inference import postprocess
from csvdnet.inference.agreement import head_contradicts
from csvdnet.inference.region_source import REGION_SOURCES, check_region_source, region_map
from csvdnet.inference.result import Finding, ModelInfo, OrdinalScore, SubjectResult

__all__ = ["Predictor", "Prepared", "REGION_SOURCES", "flip_average", "unmeasured_tasks"]

STAALS = "staals-2014"
"""The rule set the ordinal head is compared with (the head is trained on the Staals total)."""

LR_AXIS = 0
"""The working grid is canonical RAS: axis 0 runs left -> right, the axis a flip mirrors."""



class _Clock:
    """Seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def flip_average(predict: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                 batch: np.ndarray, axis: int = LR_AXIS) -> dict[str, np.ndarray]:
    """Average ``predict`` over ``batch`` and its mirror image along spatial ``axis``.

    Dense outputs of the mirrored pass are mirrored back before averaging; the score logits
    (not spatial) are averaged as they are.
    """
    plain = predict(batch)
    mirrored = predict(np.flip(batch, axis=axis + 1).copy())
    out = {}
    for task, value in plain.items():
        other = np.asarray(mirrored[task])
        if other.ndim == 5:
            other = np.flip(other, axis=axis + 1)
        out[task] = (np.asarray(value) + other) / 2.0
    return out


@dataclasses.dataclass(eq=False)  # array fields: element-wise equality has no single truth
class Prepared:
    """One subject loaded and preprocessed (:meth:`Predictor.prepare`): the network's input and
    what :meth:`Predictor.finish` needs beside the network's outputs.

    Attributes:
        subject: The :class:`csvdnet.io.Subject`.
        images: Sequence -> loaded :class:`csvdnet.io.Image` (the model's channels present).
        array: float32 ``(X, Y, Z, C)`` working-grid volume in the model's channel order (a
            missing channel blanked).
        meta: The :class:`csvdnet.preprocessing.PreprocessMeta` that inverts it.
        brain_working: bool brain mask on the working grid.
        flags: Report warnings so far (a blanked channel).
        timings: ``load`` and ``preprocess`` seconds.
        missing: The model's channels the subject lacks (blanked in ``array``).
    """

    subject: Any
    images: dict[str, Any]
    array: np.ndarray
    meta: Any
    brain_working: np.ndarray
    flags: list[str]
    timings: dict[str, float]
    missing: tuple[str, ...] = ()


def unmeasured_tasks(missing: Sequence[str]) -> tuple[str, ...]:
    """The markers that cannot be seen without the ``missing`` sequences
    (:data:`csvdnet.TASK_EVIDENCE`: microbleeds without SWI, RSSI without DWI): their outputs on a
    blanked channel are not measurements, so they are reported as not measured (``null``), never
    as 0, and a rule that needs them stays undecided."""
    gone = set(missing)
    return tuple(task for task in SEGMENTATION_TASKS + DETECTION_TASKS
                 if TASK_EVIDENCE.get(task) and gone.issuperset(TASK_EVIDENCE[task]))


class Predictor:
    """A loaded model and everything needed to rate a subject with it.

    Build it with :meth:`from_dir`. ``forward`` maps a ``(1, X, Y, Z, C)`` float32 batch to the
    network's outputs by task; the rest is plain numpy.
    """

    def __init__(self, forward: Callable[[Any], Mapping[str, Any]], info: ModelInfo,
                 preprocess_cfg: Any, *, window: Sequence[int], overlap: float,
                 gaussian: bool, rule_sets: Sequence[str], score_classes: int = 5,
                 tta: bool = False, regions: str = "registered") -> None:
        from csvdnet.inference.sliding_window import windowed_predictor
        from csvdnet.scoring import RULE_SETS

        unknown = [name for name in rule_sets if name not in RULE_SETS]
        if unknown:
            raise CsvdnetInputError("--rules", f"unknown rule set(s) {', '.join(unknown)}; "
                                               f"known: {', '.join(RULE_SETS)}")
        self.info = info
        self.preprocess_cfg = preprocess_cfg
        self.rule_sets = tuple(rule_sets)
        self.score_classes = int(score_classes)
        self.window = tuple(int(w) for w in window)
        self.overlap = float(overlap)
        self.regions = check_region_source(regions)
        self.tta = tta
        self._windowed = windowed_predictor(forward, window, overlap, gaussian)

    # ------------------------------------------------------------------------------------
    # Loading.

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, weights: str = "best",
                 rule_sets: Sequence[str] | None = None, tta: bool = False,
                 serving_url: str | None = None, serving_form: str = "bytes",
                 regions: str = "registered") -> Predictor:
        """Load a model directory: a training run or an exported model.

        A training run holds ``config.yaml``, ``best/`` / ``last/``; an exported model
        (``csvdnet export``) is ``NAME/<version>/``, or ``NAME/`` for its highest version,
        every checksum verified before use.

        Args:
            model_dir: The directory.
            weights: ``"best"`` (falls back to ``"last"`` when the run never validated) or
                ``"last"`` (training runs only).
            rule_sets: Rule sets to score (default: the model's).
            tta: Left-right flip test-time augmentation.
            serving_url: TF Serving REST URL serving the same exported model: the network step
                goes there (``csvdnet.inference.serving``); everything else runs here.
            serving_form: REST request form: ``"bytes"``, ``"inputs"`` or ``"instances"``.
            regions: Where each subject's region map comes from (:data:`csvdnet.inference.region_source.REGION_SOURCES`).

        Raises:
            CsvdnetInputError: Not a model directory, missing or unreadable weights, a run
                whose preprocessing record is unusable, an export that fails verification, an
                unreachable server.
        """
        from csvdnet.inference.model_loading import load_model_dir

        predictor = load_model_dir(cls, Path(model_dir), weights=weights, rule_sets=rule_sets,
                                   tta=tta, serving_url=serving_url, serving_form=serving_form)
        predictor.regions = check_region_source(regions)
        return predictor

    # ------------------------------------------------------------------------------------
    # Prediction.

    def _network(self, array: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.asarray(array, np.float32)[None]
        if self.tta:
            return flip_average(self._windowed, batch)
        return dict(self._windowed(batch))

    def _load(self, subject: Any) -> tuple[dict[str, Any], list[str]]:
        """The subject's images in the model's channel order, and the channels it lacks."""
        from csvdnet.io import load_nifti

        channels = self.info.channels
        missing = [name for name in channels if name not in subject.sequences]
        reference = self.preprocess_cfg.reference
        if reference in missing:
            raise CsvdnetInputError(subject.id, f"the reference sequence {reference!r} is "
                                                f"missing: nothing to put the outputs on")
        if missing and not self.info.modality_dropout:
            raise CsvdnetInputError(
                subject.id, f"sequence(s) {', '.join(missing)} missing: the model "
                            f"{self.info.id} needs {', '.join(channels)} and was trained "
                            f"without modality dropout")
        images = {name: load_nifti(subject.sequences[name])
                  for name in channels if name not in missing}
        return images, missing

    def predict(self, subject: Any) -> SubjectResult:
        """Predict, measure and rate one subject (a :class:`csvdnet.io.Subject`).

        The three stages :meth:`prepare`, :meth:`run_network` and :meth:`finish` in turn (a
        distributed engine runs them as separate steps, ``csvdnet.beam``).

        Raises:
            CsvdnetInputError: Any problem with the subject's files or sequences.
        """
        prepared = self.prepare(subject)
        started = time.perf_counter()
        outputs = self._network(prepared.array)
        return self.finish(prepared, outputs, time.perf_counter() - started)

    def run_network(self, array: np.ndarray) -> dict[str, np.ndarray]:
        """The network's outputs for a preprocessed ``(X, Y, Z, C)`` working-grid volume:
        dense maps ``(1, X, Y, Z, 1)`` by task and the ``score`` logits (stage 3)."""
        return self._network(array)

    def prepare(self, subject: Any) -> Prepared:
        """Stages 1-2: load the subject's sequences and preprocess them onto the working grid.

        Raises:
            CsvdnetInputError: Any problem with the subject's files or sequences.
        """
        from csvdnet.preprocessing import preprocess_subject_and_mask

        clock = _Clock()
        flags: list[str] = []
        with clock("load"):
            images, missing = self._load(subject)
        with clock("preprocess"):
            array, meta, brain_working = preprocess_subject_and_mask(images,
                                                                     self.preprocess_cfg)
            if missing:  # blank, as modality dropout blanks a channel in training
                present = list(images)
                full = np.zeros(array.shape[:3] + (len(self.info.channels),), np.float32)
                for c, name in enumerate(self.info.channels):
                    if name in images:
                        full[..., c] = array[..., present.index(name)]
                array = full
                unseen = unmeasured_tasks(missing)
                flags.append(f"sequence(s) {', '.join(missing)} missing: predicted without "
                             f"them (the model was trained with modality dropout); "
                             f"findings they show best may be missed"
                             + (f"; {', '.join(unseen)} not measured (null, never 0): a total "
                                f"that needs {'them' if len(unseen) > 1 else 'it'} is undecided"
                                if unseen else ""))
        return Prepared(subject=subject, images=images, array=array, meta=meta,
                        brain_working=brain_working, flags=flags, timings=dict(clock.seconds),
                        missing=tuple(missing))

    def finish(self, prepared: Prepared, outputs: Mapping[str, Any],
               network_seconds: float) -> SubjectResult:
        """Stages 4-7 on the network's ``outputs`` for ``prepared``: invert to the reference
        grid, postprocess, place regions, measure and score.

        Args:
            prepared: What :meth:`prepare` returned for the subject.
            outputs: What :meth:`run_network` returned for ``prepared.array``.
            network_seconds: How long the network step took (the report's timing).
        """
        from csvdnet.inference import measure as measuring
        from csvdnet.inference import regions as regioning
        from csvdnet.scoring import ordinal_class, ordinal_probabilities, score

        clock = _Clock()
        clock.seconds.update(prepared.timings)
        clock.seconds["network"] = clock.seconds.get("network", 0.0) + float(network_seconds)
        subject, images, array = prepared.subject, prepared.images, prepared.array
        meta, brain_working = prepared.meta, prepared.brain_working
        flags = list(prepared.flags)
        reference = images[meta.reference]
        affine = np.asarray(reference.affine, np.float64)
        unseen = unmeasured_tasks(prepared.missing)
        dense = [t for t in SEGMENTATION_TASKS + DETECTION_TASKS
                 if t in outputs and t not in unseen]
        with clock("invert"):
            probabilities = {t: meta.invert(outputs[t][0, ..., 0], order=1).astype(np.float32)
                             for t in dense}
            sequences = meta.invert(array, order=1).astype(np.float32)
            sequences = {name: sequences[..., c] for c, name in enumerate(self.info.channels)
                         if name in images}
            brain = meta.invert(brain_working.astype(np.float32), order=1) >= 0.5
        thresholds = self.info.thresholds
        masks: dict[str, np.ndarray] = {}
        raw: dict[str, list[tuple[np.ndarray, float, float | None]]] = {}
        ridged: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}
        working_voxel_mm3 = float(np.prod(meta.spacing))
        working_to_reference = np.linalg.inv(affine) @ np.asarray(meta.working_affine, np.float64)
        with clock("postprocess"):
            for task in dense:
                if task in SEGMENTATION_TASKS:
                    # Decided on the working grid, as calibration and validation decide it,
                    # then carried back whole (a small lacune survives the resampling).
                    floor = postprocess.size_floor_mm3(task,
                                                       self.info.min_lesion_mm3.get(task, 0.0))
                    min_voxels = floor / working_voxel_mm3
                    decided = postprocess.threshold_mask(np.asarray(outputs[task])[0, ..., 0],
                                                         thresholds[task], min_voxels)
                    masks[task] = postprocess.mask_to_reference(decided, meta.invert,
                                                                working_to_reference)
                    raw[task] = [(c.centroid_world, c.max_prob, c.volume_mm3) for c in
                                 postprocess.components(masks[task], probabilities[task], affine)]
                else:
                    heatmap = outputs[task][0, ..., 0]
                    around = self.info.peak_neighbourhood.get(task, "cube")
                    peaks, values = postprocess.find_peaks(
                        heatmap, thresholds[task], spacing=meta.spacing,
                        min_distance_mm=postprocess.PEAK_MIN_DISTANCE_MM[around],
                        neighbourhood=around)
                    if self.info.peak_ridge.get(task, 0.0) > 0.0:
                        ridged[task] = (heatmap, peaks, values, self.info.peak_ridge[task])
                    world = meta.working_to_world(peaks) if len(peaks) else np.zeros((0, 3))
                    raw[task] = [(w, float(v), None) for w, v in zip(world, values)]
                    masks[task] = postprocess.threshold_mask(probabilities[task],
                                                             thresholds[task], 0)
        with clock("regions"):
            regions, world_to_mni = region_map(self.regions, subject, images, meta,
                                               brain_working, flags)
            findings = {}
            for task, items in raw.items():
                items = sorted(items, key=lambda item: -item[1])
                world = np.asarray([w for w, _, _ in items], np.float64).reshape(-1, 3)
                names, sides = regioning.region_and_side(world, regions, affine, world_to_mni)
                if task in ridged:  # one long EPVS is one finding (items in peak order)
                    keep = postprocess.off_ridges(*ridged[task], meta.spacing, names)
                    items, names, sides = ([x for x, k in zip(seq, keep) if k]
                                           for seq in (items, names, sides))
                    world = world[keep]
                voxels = _world_to_voxel(world, affine)
                findings[task] = [
                    Finding(task=task, index=i + 1, world=tuple(map(float, w)),
                            voxel=tuple(map(float, v)), confidence=float(conf),
                            volume_mm3=None if vol is None else float(vol), region=region,
                            side=side)
                    for i, ((w, conf, vol), v, region, side) in enumerate(
                        zip(items, voxels, names, sides))]
        with clock("scoring"):
            points = {t: np.asarray([f.world for f in findings[t]], np.float64).reshape(-1, 3)
                      for t in DETECTION_TASKS if t in findings}
            point_sides = {t: [f.side for f in findings[t]] for t in points}
            measurements, quantities = measuring.measure(
                {t: masks[t] for t in SEGMENTATION_TASKS if t in masks}, points, point_sides,
                regions, affine)
            scores = {name: score(name, measurements) for name in self.rule_sets}
            logits = np.asarray(outputs["score"])[0]
            class_probs, cumulative = ordinal_probabilities(logits)
            ordinal = OrdinalScore(total=int(ordinal_class(logits)),
                                   class_probabilities=tuple(map(float, class_probs)),
                                   cumulative=tuple(map(float, cumulative)))
            staals = scores.get(STAALS) or score(STAALS, measurements)
            agreement = None if staals.total is None else ordinal.total == staals.total
            if head_contradicts(agreement, ordinal.class_probabilities, staals.total):
                flags.append(f"the ordinal head's total SVD score ({ordinal.total}) differs from "
                             f"the Staals score of the measured markers ({staals.total}), to "
                             f"which it gives "
                             f"{ordinal.class_probabilities[staals.total]:.0%}: check the "
                             f"findings by eye")
        return SubjectResult(
            subject=subject.id,
            inputs={name: str(subject.sequences[name]) for name in images},
            reference=meta.reference, reference_path=str(reference.path), affine=affine,
            shape=tuple(int(n) for n in reference.shape[:3]), probabilities=probabilities,
            masks=masks, findings=findings, regions=regions, brain_mask=brain,
            world_to_mni=world_to_mni, measurements=measurements, quantities=quantities,
            scores=scores, ordinal=ordinal, agreement=agreement, flags=flags,
            sequences=sequences,
            sequence_transforms={k: np.asarray(v) for k, v in meta.sequence_transforms.items()},
            model=self.info, timings=dict(clock.seconds),
            source=getattr(subject, "source", None))


def _world_to_voxel(world: np.ndarray, affine: np.ndarray) -> np.ndarray:
    from nibabel.affines import apply_affine

    return apply_affine(np.linalg.inv(affine), world) if len(world) else np.zeros((0, 3))
