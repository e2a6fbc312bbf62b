"""A run directory made from an exported model's weights, to continue training from it.

An export (``csvdnet export``) keeps the network's variables under their Keras paths
(``enc0_block0/conv1/kernel``, ...) but not a run directory. :func:`run_from_export` rebuilds the
network of a recipe (optionally changed, e.g. another score head), copies every variable the
export holds under the same path and shape, and writes what ``csvdnet predict``, ``csvdnet
export`` and :mod:`csvdnet.training.score_phase` read from a run: ``config.yaml``,
``preprocess.json`` and ``calibration.json`` (both from the export's ``metadata.json``, so the
thresholds and preprocessing stay the export's), ``best/model.weights.h5`` and ``best/metrics.json``
(the export's validation metrics) and ``from_export.json`` (which variables came from where).

A variable of the new network that the export lacks keeps its initial value and is listed; so
is every export variable the new network does not use. Nothing else is changed.

``python -m csvdnet.training.from_export EXPORT RECIPE OUT [--set section.key=value ...]
[--fresh LAYER ...] [--validate-on CACHE]``; ``--validate-on`` makes every subject of CACHE the
run's validation subjects (``split.json``; the export's own split is not known), which ``csvdnet
calibrate OUT`` then calibrates the thresholds on (set ``data.cache`` to the same CACHE).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from csvdnet.cache import PREPROCESS_FORMAT, PREPROCESS_VERSION
from csvdnet.config import load_config
from csvdnet.config.loading import dump_config
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import write_text_atomic
from csvdnet.run.calibration import CALIBRATION_FILE, CALIBRATION_FORMAT
from csvdnet.run.layout import WEIGHTS_NAME
from csvdnet.run.record import PREPROCESS_RECORD

FROM_EXPORT_FILE = "from_export.json"


def _export_variables(export_dir: Path) -> dict[str, Any]:
    """``path -> numpy value`` of every variable of a SavedModel written by ``csvdnet export``."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_dir))
    values = {}
    for variable in loaded.variables:
        name = variable.name[:-2] if variable.name.endswith(":0") else variable.name
        values[name] = variable.numpy()
    return values


def copy_export_weights(network: Any, values: dict[str, Any],
                        fresh: Sequence[str] = ()) -> dict[str, list[str]]:
    """Assign each of ``network``'s variables the export value of the same path and shape.

    Args:
        network: The rebuilt network.
        values: The export's variables by path.
        fresh: Layers whose variables keep their initial values (a head replaced by another kind).

    Returns:
        ``{"copied": [...], "kept_initial": [...], "unused": [...]}`` (variable paths).

    Raises:
        CsvdnetInputError: A variable present in both with different shapes.
    """
    copied, kept = [], []
    for variable in network.weights:
        value = values.get(variable.path)
        if value is None or variable.path.split("/")[0] in fresh:
            kept.append(variable.path)
            continue
        if tuple(value.shape) != tuple(variable.shape):
            raise CsvdnetInputError(variable.path, f"shape {tuple(variable.shape)} in the network, "
                                                   f"{tuple(value.shape)} in the export")
        variable.assign(value)
        copied.append(variable.path)
    unused = sorted(set(values) - set(copied))
    return {"copied": sorted(copied), "kept_initial": sorted(kept), "unused": unused}


def _validation_record(metadata: dict[str, Any], fresh: Sequence[str]) -> dict[str, Any]:
    """The export's validation record, less the metrics of a layer replaced (``score``: the
    score metrics and the selection that averaged them were the old head's)."""
    training = metadata.get("training") or {}
    metrics = dict(training.get("validation") or {})
    if "score" in fresh:
        metrics = {k: v for k, v in metrics.items()
                   if not k.startswith("score_") and k != "selection"}
    return {"epoch": training.get("epoch"), "step": training.get("step"), "metrics": metrics,
            "source": f"{metadata.get('name')}/{metadata.get('version')} metadata.json"}


def run_from_export(export_dir: str | Path, recipe: str | Path, out: str | Path,
                    overrides: Sequence[str] = (), fresh: Sequence[str] = ()) -> dict[str, Any]:
    """Write a run directory ``out`` holding ``export_dir``'s weights in ``recipe``'s network.

    Args:
        export_dir: ``saved_models/NAME/VERSION`` (a ``csvdnet export``).
        recipe: The YAML recipe the export was trained with.
        out: The new run directory (must not hold a run).
        overrides: ``section.key=value`` changes to the recipe (``train.run_dir`` is set to out).
        fresh: Layers not taken from the export (e.g. ``["score"]`` for another score head).

    Returns:
        The ``from_export.json`` record.
    """
    from csvdnet.models import build_model

    export_dir, out = Path(export_dir), Path(out)
    metadata = json.loads((export_dir / "metadata.json").read_text(encoding="utf-8"))
    if (out / "config.yaml").exists():
        raise CsvdnetInputError(out, "already holds a run")
    cfg = load_config(recipe, [*overrides, f"train.run_dir={out}"])
    if list(cfg.data.channels) != list(metadata["channels"]):
        raise CsvdnetInputError(recipe, f"data.channels {list(cfg.data.channels)} differ from "
                                        f"the export's {metadata['channels']}")
    network = build_model(cfg.model)
    moved = copy_export_weights(network, _export_variables(export_dir), fresh)

    (out / "best").mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    write_text_atomic(out / PREPROCESS_RECORD, json.dumps({
        "format": PREPROCESS_FORMAT, "version": PREPROCESS_VERSION,
        "channels": list(metadata["channels"]), "cache_channels": list(metadata["channels"]),
        "preprocess": metadata["preprocess"], "pad_multiple": int(metadata["pad_multiple"]),
        "cache": f"{export_dir} (the exported model's training cache)"}, indent=1) + "\n")
    calibration = dict(metadata["training"].get("calibration") or {})
    write_text_atomic(out / CALIBRATION_FILE, json.dumps({
        "format": CALIBRATION_FORMAT, "version": 1, "weights": calibration.get("weights", "best"),
        "thresholds": metadata["thresholds"], "min_lesion_mm3": metadata["min_lesion_mm3"],
        "tasks": calibration.get("tasks", {}), "subjects": int(calibration.get("subjects", 0)),
        "source": f"{export_dir}/metadata.json"}, indent=1) + "\n")
    network.save_weights(out / "best" / WEIGHTS_NAME)
    write_text_atomic(out / "best" / "metrics.json", json.dumps(
        _validation_record(metadata, fresh), indent=1) + "\n")
    record = {"export": str(export_dir), "name": metadata.get("name"),
              "version": metadata.get("version"), "recipe": str(recipe),
              "overrides": list(overrides), "fresh": list(fresh), "model": dataclasses.asdict(cfg.model), **moved}
    write_text_atomic(out / FROM_EXPORT_FILE, json.dumps(record, indent=1) + "\n")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csvdnet.training.from_export",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="saved_models/NAME/VERSION")
    parser.add_argument("recipe", help="the recipe YAML the export was trained with")
    parser.add_argument("out", help="the new run directory")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="recipe change (repeatable)")
    parser.add_argument("--fresh", action="append", default=[], metavar="LAYER",
                        help="layer not taken from the export (repeatable)")
    parser.add_argument("--validate-on", metavar="CACHE",
                        help="every subject of CACHE validates (split.json)")
    args = parser.parse_args(argv)
    record = run_from_export(args.export, args.recipe, args.out, args.overrides, args.fresh)
    if args.validate_on:
        from csvdnet.cache import load_cache

        ids = load_cache(args.validate_on)[1]
        write_text_atomic(Path(args.out) / "split.json",
                          json.dumps({"validation": list(ids)}, indent=1) + "\n")
    print(f"{args.out}: {len(record['copied'])} variables from {args.export}; initial: "
          f"{', '.join(record['kept_initial']) or 'none'}; unused: "
          f"{', '.join(record['unused']) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
