"""Loading a model directory for prediction: what it is, checked before use.

A **training run** directory (written by ``csvdnet train``) holds ``config.yaml`` (the resolved
config: network, thresholds, rule sets), ``preprocess.json`` (the preprocessing record of the
cache it trained on: channels, working spacing, normalisation, pad multiple; read with
:func:`csvdnet.run.record.load_preprocess_record`) and the weights in ``best/`` and
``last/``. The network is rebuilt from the config and run in float32 whatever
policy it trained under: a bfloat16 graph is several times slower on CPUs without bfloat16
units, and the weights are float32 either way.

An **exported model** (``csvdnet export``: ``NAME/<version>/`` in TF Serving layout, or ``NAME/``
for its highest version) is verified first (:func:`csvdnet.export.verify.verify_model`: every
checksum of ``metadata.json``, no foreign file, a format this csvdnet reads), then loaded with
``tf.saved_model.load``: no csvdnet model code runs, only the graph's TensorFlow ops. Its
preprocessing, window, thresholds and rule sets come from ``metadata.json``; its id carries that
file's digest and says when it was edited (:func:`csvdnet.export.verify.model_identity`). With a
``serving_url`` the network step goes to TensorFlow Serving instead
(:mod:`csvdnet.inference.serving`); the local copy then only supplies the verified metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import file_sha256
from csvdnet.inference.result import ModelInfo

__all__ = ["load_model_dir", "load_run", "load_saved_model"]


def load_run(cls: type, run_dir: Path, *, weights: str = "best",
             rule_sets: Sequence[str] | None = None, tta: bool = False) -> Any:
    """A :class:`~csvdnet.inference.predictor.Predictor` over a training run's network.

    Raises:
        CsvdnetInputError: Not a run, no weights, or an unusable preprocessing record.
    """
    if not run_dir.is_dir():
        raise CsvdnetInputError(run_dir, "model directory not found")
    if not (run_dir / "config.yaml").is_file():
        raise CsvdnetInputError(run_dir, "not a model directory: no config.yaml (a training run "
                                         "written by `csvdnet train`)")
    if weights not in ("best", "last"):
        raise CsvdnetInputError(run_dir, f"weights must be 'best' or 'last', got {weights!r}")
    import tensorflow as tf

    from csvdnet.run.layout import WEIGHTS_NAME
    from csvdnet.run.network import load_network
    from csvdnet.run.precision import dtype_policy
    from csvdnet.run.record import load_preprocess_record, run_config

    cfg = run_config(run_dir)
    if not (run_dir / weights / WEIGHTS_NAME).is_file() and weights == "best":
        weights = "last"  # a run stopped before its first validation has no best/
    weights_path = run_dir / weights / WEIGHTS_NAME
    if not weights_path.is_file():
        raise CsvdnetInputError(weights_path, "no weights: has the run finished an epoch?")
    record = load_preprocess_record(run_dir, cfg)
    preprocess_cfg, channels = record.preprocess, tuple(record.channels)
    if len(channels) != cfg.model.input_channels:
        raise CsvdnetInputError(run_dir / "preprocess.json",
                                f"{len(channels)} channels ({', '.join(channels)}) but the "
                                f"network takes {cfg.model.input_channels}")
    with dtype_policy("float32"):
        network = load_network(run_dir, cfg, weights)
    forward = tf.function(lambda x: network(x, training=False), reduce_retracing=True)
    spacing = preprocess_cfg.spacing
    info = ModelInfo(
        id=f"{run_dir.name}/{weights}", path=str(run_dir.resolve()),
        sha256=file_sha256(weights_path), kind="run", channels=channels,
        spacing=tuple(float(s) for s in spacing) if spacing is not None else (0.0, 0.0, 0.0),
        thresholds=dict(cfg.inference.thresholds),
        min_lesion_mm3=dict(cfg.inference.min_lesion_mm3),
        modality_dropout=cfg.data.modality_dropout > 0.0,
        peak_neighbourhood=dict(cfg.inference.peak_neighbourhood),
        peak_ridge=dict(cfg.inference.peak_ridge))
    chosen = tuple(rule_sets) if rule_sets else tuple(getattr(cfg.inference, "rule_sets", ()))
    predictor = cls(forward, info, preprocess_cfg, window=cfg.inference.window,
                    overlap=cfg.inference.overlap, gaussian=cfg.inference.gaussian_blend,
                    rule_sets=chosen, score_classes=cfg.model.score_classes, tta=tta)
    predictor.network = network
    return predictor


def load_model_dir(cls: type, model_dir: Path, *, weights: str = "best",
                   rule_sets: Sequence[str] | None = None, tta: bool = False,
                   serving_url: str | None = None, serving_form: str = "bytes") -> Any:
    """A predictor over a training run or an exported model, whichever ``model_dir`` is.

    Raises:
        CsvdnetInputError: Neither, or a REST server asked for with a training run.
    """
    from csvdnet.export.verify import is_exported_model

    if (model_dir / "config.yaml").is_file() or not is_exported_model(model_dir):
        if serving_url:
            raise CsvdnetInputError(model_dir, "--serving-url needs an exported model "
                                               "(`csvdnet export`), not a training run")
        return load_run(cls, model_dir, weights=weights, rule_sets=rule_sets, tta=tta)
    return load_saved_model(cls, model_dir, rule_sets=rule_sets, tta=tta,
                            serving_url=serving_url, serving_form=serving_form)


def load_saved_model(cls: type, model_dir: Path, *, rule_sets: Sequence[str] | None = None,
                     tta: bool = False, serving_url: str | None = None,
                     serving_form: str = "bytes") -> Any:
    """A :class:`~csvdnet.inference.predictor.Predictor` over an exported model.

    Args:
        cls: The predictor class.
        model_dir: ``NAME/<version>`` or ``NAME`` (its highest version).
        rule_sets: Rule sets to score (default: the model's).
        tta: Left-right flip test-time augmentation.
        serving_url: TF Serving REST URL of the same model: the network runs there.
        serving_form: REST request form (``csvdnet.inference.serving.FORMS``).

    Raises:
        CsvdnetInputError: A missing, altered or foreign file, a metadata format newer than
            this csvdnet, a SavedModel without the csvdnet signatures, an unreachable server.
    """
    from csvdnet.config import PreprocessConfig, from_dict
    from csvdnet.export.verify import METADATA_NAME, SIGNATURES, model_identity, verify_model
    from csvdnet.inference.serving import RestClient, SignatureForward, in_process_caller

    version_dir, metadata = verify_model(model_dir)
    meta_path = version_dir / METADATA_NAME
    preprocess_cfg = from_dict(PreprocessConfig, metadata["preprocess"], source=str(meta_path))
    if serving_url:
        client = RestClient(serving_url, metadata["version"], form=serving_form,
                            outputs=metadata.get("signatures") and {
                                k: v["outputs"] for k, v in metadata["signatures"].items()})
        client.check()
        call, where = client.predict, client.url
    else:
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(version_dir))
        except (OSError, ValueError, tf.errors.OpError) as exc:
            raise CsvdnetInputError(version_dir / "saved_model.pb",
                                    f"not a loadable SavedModel ({type(exc).__name__})") from None
        absent = [name for name in SIGNATURES if name not in loaded.signatures]
        if absent:
            raise CsvdnetInputError(version_dir / "saved_model.pb",
                                    f"lacks the signature(s) {', '.join(absent)} of a csvdnet "
                                    f"export")
        call, where = in_process_caller(loaded), str(version_dir.resolve())
    spacing = metadata["preprocess"].get("spacing")
    model_id, digest, edited = model_identity(version_dir, metadata)
    info = ModelInfo(
        id=model_id, path=where, sha256=digest, kind="saved_model", edited=edited,
        channels=tuple(metadata["channels"]),
        spacing=tuple(float(s) for s in spacing) if spacing is not None else (0.0, 0.0, 0.0),
        thresholds={k: float(v) for k, v in metadata["thresholds"].items()},
        min_lesion_mm3={k: float(v) for k, v in metadata["min_lesion_mm3"].items()},
        modality_dropout=float(metadata["modality_dropout"]) > 0.0,
        # Exports made before 2026-12-07 found every peak in a cube.
        peak_neighbourhood=dict(metadata.get("peak_neighbourhood", {})),
        # ... and kept every peak on a ridge (before 2026-12-08).
        peak_ridge={k: float(v) for k, v in metadata.get("peak_ridge", {}).items()})
    chosen = tuple(rule_sets) if rule_sets else tuple(metadata["rule_sets"])
    forward = SignatureForward(call, metadata["window"])
    predictor = cls(forward, info, preprocess_cfg, window=metadata["window"],
                    overlap=metadata["overlap"], gaussian=metadata["gaussian_blend"],
                    rule_sets=chosen, score_classes=metadata["score_classes"], tta=tta)
    predictor.metadata = metadata
    return predictor
