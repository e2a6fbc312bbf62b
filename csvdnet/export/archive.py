"""Export a training run as a TF SavedModel that TensorFlow Serving loads as it is.

``export_run(run_dir, "saved_models/NAME")`` writes ``saved_models/NAME/<version>/`` (TF
Serving's layout: ``saved_model.pb``, ``variables/``) with :class:`keras.export.ExportArchive`,
plus ``MODEL_CARD.md`` and ``metadata.json`` (:mod:`csvdnet.export.verify` checks it on load).
The version folder is written under a hidden temporary name and renamed when complete, so a
TF Serving instance polling ``saved_models/NAME`` never loads half a model.

Signatures (all float32 in and out, whatever precision the graph computes in):

- ``serving_default``: ``image`` ``[batch, x, y, z, channels]``, any spatial size. The graph pads
  each axis with zeros (the background after normalisation) at its high end up to a multiple
  of the network's stride, runs the network and crops the dense outputs back. Outputs ``wmh``,
  ``rssi``, ``lacune`` (probabilities), ``cmb``, ``epvs`` (heatmaps), each ``[batch, x, y, z,
  1]``; ``score_logits`` ``[batch, K-1]`` (CORAL cumulative logits) and ``score_probs``
  ``[batch, K]`` (probability of each total score 0..K-1).
- ``score``: the same input, only ``score_logits`` and ``score_probs`` (batch triage).
- ``serve_bytes``: ``image_bytes`` (a scalar string of raw little-endian float32, C order) and
  ``shape`` (int32 ``[5]``); the outputs of ``serving_default``. In a REST body the bytes go as
  ``{"b64": ...}``: about a quarter of a JSON array of the same numbers.

How prediction uses them (``csvdnet.inference.serving``): the dense outputs are predicted
window by window, each window the training patch (``metadata.json`` ``window``), blended as
``csvdnet predict`` blends them; the score comes from one whole-volume call of ``score``. A
whole padded volume through ``serving_default`` gives other dense outputs: GroupNormalization
then normalises with the statistics of the whole volume, not of a patch like those the network
trained on.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import shlex
import time
from pathlib import Path
from typing import Any, Sequence

from csvdnet import DETECTION_TASKS, SCORE_TASK, SEGMENTATION_TASKS, __version__
from csvdnet.errors import CsvdnetInputError
from csvdnet.export.verify import (FIELDS_DIGEST_KEY, METADATA_NAME, MODEL_CARD_NAME,
                                   MODEL_FORMAT, MODEL_FORMAT_VERSION, SIGNATURES,
                                   fields_sha256)
from csvdnet.fsutil import atomic_dir, file_sha256, remove_stale_parts

__all__ = ["DENSE_OUTPUTS", "ExportResult", "PRECISIONS", "SCORE_OUTPUTS", "export_run"]

DENSE_OUTPUTS = SEGMENTATION_TASKS + DETECTION_TASKS
SCORE_OUTPUTS = ("score_logits", "score_probs")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
"""float32 for CPU serving (a bfloat16 graph is several times slower on CPUs without bfloat16
units); mixed_float16 for GPUs (tensor cores on every CUDA GPU since Volta); mixed_bfloat16
for GPUs / CPUs with bfloat16 units. The variables are float32 under every policy."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote.

    Attributes:
        path: The version folder (``NAME/<version>``).
        metadata: Its ``metadata.json`` content.
        seconds: Wall time of the export (network build, tracing, writing, checksums).
        size_bytes: Total size of the version folder.
    """

    path: Path
    metadata: dict[str, Any]
    seconds: float
    size_bytes: int


def _serving_functions(network: Any, channels: int, stride: int) -> dict[str, tuple[Any, list]]:
    """The three endpoints as ``name -> (function, input signature)``."""
    import tensorflow as tf

    from csvdnet.models.coral_head import ordinal_decode

    image_spec = tf.TensorSpec([None, None, None, None, channels], tf.float32, name="image")

    def run(image: tf.Tensor) -> dict[str, tf.Tensor]:
        size = tf.shape(image)[1:4]
        pad = (-size) % stride  # up to the next multiple of the stride (0 when already one)
        zero = tf.zeros([], tf.int32)
        paddings = tf.stack([[zero, zero], [zero, pad[0]], [zero, pad[1]], [zero, pad[2]],
                             [zero, zero]])
        outputs = network(tf.pad(image, paddings), training=False)
        result = {task: tf.cast(outputs[task][:, :size[0], :size[1], :size[2], :], tf.float32)
                  for task in DENSE_OUTPUTS}
        logits = tf.cast(outputs[SCORE_TASK], tf.float32)
        result["score_logits"] = logits
        result["score_probs"] = tf.cast(ordinal_decode(logits)[1], tf.float32)
        return result

    def serving_default(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return run(image)

    def score(image: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = run(image)
        return {name: outputs[name] for name in SCORE_OUTPUTS}

    def serve_bytes(image_bytes: tf.Tensor, shape: tf.Tensor) -> dict[str, tf.Tensor]:
        flat = tf.io.decode_raw(image_bytes, tf.float32, little_endian=True)
        tf.debugging.assert_equal(shape[4], channels,
                                  message=f"shape[4] must be the {channels} input channels")
        image = tf.ensure_shape(tf.reshape(flat, shape), [None, None, None, None, channels])
        return run(image)

    bytes_spec = [tf.TensorSpec([], tf.string, name="image_bytes"),
                  tf.TensorSpec([5], tf.int32, name="shape")]
    functions = {"serving_default": (serving_default, [image_spec]),
                 "score": (score, [image_spec]), "serve_bytes": (serve_bytes, bytes_spec)}
    assert tuple(functions) == SIGNATURES
    return functions


def _next_version(out: Path) -> int:
    versions = [int(p.name) for p in out.iterdir() if p.is_dir() and p.name.isdigit()] \
        if out.is_dir() else []
    return max(versions, default=0) + 1


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _training_record(run_dir: Path, cfg: Any, weights: str, description: str) -> dict[str, Any]:
    """What the network was trained on and how far, for metadata.json and the model card."""
    metrics = _read_json(run_dir / weights / "metrics.json") or {}
    split = _read_json(run_dir / "split.json") or {}
    counts = {key: len(value) for key, value in split.items() if isinstance(value, list)}
    from csvdnet.run.calibration import load_calibration

    calibration = load_calibration(run_dir)
    if calibration is not None:  # what the thresholds in metadata.json were chosen on
        subjects = calibration.get("subjects", [])  # a count in a run made from an export
        calibration = {"subjects": subjects if isinstance(subjects, int) else len(subjects),
                       "weights": calibration.get("weights"),
                       "tasks": calibration.get("tasks", {})}
    return {"description": description, "run": run_dir.name, "weights": weights,
            "calibration": calibration,
            "epoch": metrics.get("epoch"), "step": metrics.get("step"),
            "validation": metrics.get("metrics", {}), "subjects": counts,
            "recipe": {"epochs": cfg.train.epochs, "steps_per_epoch": cfg.train.steps_per_epoch,
                       "batch_size": cfg.train.batch_size, "patch_size": list(cfg.data.patch_size),
                       "seed": cfg.train.seed, "data_seed": cfg.data.seed,
                       "mixed_precision": cfg.train.mixed_precision, "ema": cfg.train.ema}}


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def export_run(run_dir: str | Path, out: str | Path, *, version: int | None = None,
               weights: str = "best", precision: str = "float32",
               description: str | None = None, heldout_cache: str | Path | None = None,
               heldout_summary: str | Path | None = None,
               card_notes: str | Path | None = None,
               command: Sequence[str] | None = None) -> ExportResult:
    """Export a training run's network as ``out/<version>/`` (TF Serving layout).

    Args:
        run_dir: The training run (``csvdnet train``).
        out: The model's folder ``saved_models/NAME`` (``NAME`` is the TF Serving model name).
        version: Version number (default: one more than the highest already in ``out``).
        weights: ``"best"`` (``"last"`` when the run never validated) or ``"last"``.
        precision: ``"float32"`` (CPU serving), ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        description: Training data description (default: the run's ``export.description``).
        heldout_cache: A preprocessed cache of subjects the run never saw: the network is
            evaluated on it first (:func:`csvdnet.evaluation.heldout.evaluate_run`) and its
            metrics go into ``metadata.json`` and the model card.
        heldout_summary: ``summary.json`` of ``csvdnet evaluate`` on the predictions of a
            held-out cohort (the run's or this export's: the same network): its total-score
            agreement (Staals by rule, ordinal head) and per-marker sections are recorded.
        card_notes: A Markdown file appended to the model card (how the model was made:
            commands, seeds).
        command: The command line that made the export (recorded in the model card).

    The version folder is built as ``out/.<version>.<pid>.<random>.part/`` and renamed when
    complete; such folders left by a killed export (its process gone) are removed first, a
    running export's are kept.

    Returns:
        What was written.

    Raises:
        CsvdnetInputError: Not a run, no weights, an unusable preprocessing record, an existing
            version, a bad version or precision.
    """
    started = time.perf_counter()
    run_dir, out = Path(run_dir), Path(out)
    if precision not in PRECISIONS:
        raise CsvdnetInputError("--precision", f"must be one of {', '.join(PRECISIONS)}")
    if weights not in ("best", "last"):
        raise CsvdnetInputError(run_dir, f"weights must be 'best' or 'last', got {weights!r}")
    from csvdnet.run.layout import WEIGHTS_NAME
    from csvdnet.run.record import load_preprocess_record, run_config

    cfg = run_config(run_dir)
    if weights == "best" and not (run_dir / "best" / WEIGHTS_NAME).is_file():
        weights = "last"  # a run stopped before its first validation has no best/
    if not (run_dir / weights / WEIGHTS_NAME).is_file():
        raise CsvdnetInputError(run_dir / weights / WEIGHTS_NAME, "no weights: has the run "
                                                                  "finished an epoch?")
    record = load_preprocess_record(run_dir, cfg)
    channels = list(record.channels)
    if len(channels) != cfg.model.input_channels:
        raise CsvdnetInputError(run_dir / "preprocess.json",
                                f"{len(channels)} channels but the network takes "
                                f"{cfg.model.input_channels}")
    remove_stale_parts(out)  # what a killed export was writing (a live one's is kept)
    version = _next_version(out) if version is None else int(version)
    if version < 1:
        raise CsvdnetInputError("--version", f"must be >= 1, got {version}")
    target = out / str(version)
    if target.exists():
        raise CsvdnetInputError(target, "already exists: a served version is never overwritten; "
                                        "choose another --version")
    evaluation = None
    if heldout_cache is not None:
        evaluation = _heldout(run_dir, Path(heldout_cache), weights)
    native = _native_summary(Path(heldout_summary)) if heldout_summary is not None else None
    notes = None
    if card_notes is not None:
        try:
            notes = Path(card_notes).read_text(encoding="utf-8")
        except OSError as exc:
            raise CsvdnetInputError(card_notes, f"cannot read the model card notes ({exc})") \
                from None

    import keras
    import tensorflow as tf

    from csvdnet.config import to_dict
    from csvdnet.export.card import model_card
    from csvdnet.run.network import load_network
    from csvdnet.run.precision import dtype_policy

    stride = 2 ** cfg.model.depth
    with dtype_policy(precision):
        network = load_network(run_dir, cfg, weights)
    archive = keras.export.ExportArchive()
    archive.track(network)
    for name, (fn, signature) in _serving_functions(network, len(channels), stride).items():
        archive.add_endpoint(name=name, fn=fn, input_signature=signature)

    metadata: dict[str, Any] = {
        "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
        "name": out.name, "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision, "channels": channels,
        "input": {"name": "image", "dtype": "float32", "layout": "[batch, x, y, z, channels]",
                  "grid": "canonical RAS at the working spacing, as csvdnet preprocesses"},
        "spacing": [float(s) for s in record.preprocess.spacing]
        if record.preprocess.spacing is not None else None,
        "normalisation": {"method": "per channel: clipped to the in-brain percentiles, then "
                                    "z-scored with the in-brain mean and standard deviation",
                          "clip_percentiles": list(record.preprocess.clip_percentiles)},
        "preprocess": to_dict(record.preprocess), "pad_multiple": record.pad_multiple,
        "stride": stride, "window": [int(w) for w in cfg.inference.window],
        "overlap": float(cfg.inference.overlap),
        "gaussian_blend": bool(cfg.inference.gaussian_blend),
        "signatures": {"serving_default": {"inputs": ["image"],
                                           "outputs": [*DENSE_OUTPUTS, *SCORE_OUTPUTS]},
                       "score": {"inputs": ["image"], "outputs": list(SCORE_OUTPUTS)},
                       "serve_bytes": {"inputs": ["image_bytes", "shape"],
                                       "outputs": [*DENSE_OUTPUTS, *SCORE_OUTPUTS]}},
        "score_classes": int(cfg.model.score_classes),
        "thresholds": {k: float(v) for k, v in cfg.inference.thresholds.items()},
        "min_lesion_mm3": {k: float(v) for k, v in cfg.inference.min_lesion_mm3.items()},
        "peak_neighbourhood": dict(cfg.inference.peak_neighbourhood),
        "peak_ridge": {k: float(v) for k, v in cfg.inference.peak_ridge.items()},
        "rule_sets": list(cfg.inference.rule_sets),
        "modality_dropout": float(cfg.data.modality_dropout),
        "training": _training_record(run_dir, cfg, weights,
                                     description if description is not None
                                     else cfg.export.description),
        "evaluation": evaluation, "evaluation_native": native,
        "versions": {"csvdnet": __version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__, "python": platform.python_version()},
        "command": shlex.join(command) if command else None,
    }
    with atomic_dir(target) as tmp:
        archive.write_out(str(tmp), verbose=False)
        (tmp / MODEL_CARD_NAME).write_text(model_card(metadata, notes), encoding="utf-8")
        metadata["files"] = {p.relative_to(tmp).as_posix(): file_sha256(p)
                             for p in sorted(tmp.rglob("*")) if p.is_file()}
        metadata[FIELDS_DIGEST_KEY] = fields_sha256(metadata)
        (tmp / METADATA_NAME).write_text(json.dumps(metadata, indent=1) + "\n",
                                         encoding="utf-8")
    return ExportResult(path=target, metadata=metadata, seconds=time.perf_counter() - started,
                        size_bytes=_folder_size(target))


def _heldout(run_dir: Path, cache: Path, weights: str) -> dict[str, Any]:
    """The run's metrics on a held-out cache, for metadata.json and the model card."""
    from csvdnet.evaluation.heldout import evaluate_run

    result = evaluate_run(run_dir, cache, weights=weights)
    return {"cache": cache.name, "subjects": len(result.subjects), "tasks": list(result.tasks),
            "metrics": {k: float(v) for k, v in result.metrics.items()},
            "seconds_per_subject": float(result.seconds_per_subject)}


def _native_summary(path: Path) -> dict[str, Any]:
    """The parts of a ``csvdnet evaluate`` summary.json a model card reports."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("total_score"), dict):
        raise CsvdnetInputError(path, "not a summary.json of `csvdnet evaluate` (no total_score)")
    keep = ("subjects", "total_score", "segmentation", "detection", "counts", "grades")
    return {"source": path.name, **{key: data.get(key) for key in keep}}
