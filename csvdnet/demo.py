"""``csvdnet demo``: one synthetic subject rated end to end by the shipped model.

The demo makes one subject of the synthetic ``demo`` profile (:mod:`csvdnet.synth`, exact
ground truth), predicts it exactly as ``csvdnet predict`` does (same library calls, same files:
masks, probabilities, points, ``report.json``, ``report.html``, ``scores.tsv``) and sets what was
found beside the truth.

The shipped model is ``saved_models/csvdnet-synthetic/`` of the repository (its highest
version, ``1/``), found relative to this package: an editable install (``pip install -e .``)
of a clone finds it without any setting. ``$CSVDNET_DEMO_MODEL`` or ``--model`` point the demo
at another exported model (or a training run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from csvdnet.errors import CsvdnetInputError

__all__ = ["DEMO_SEED", "DemoResult", "SHIPPED_MODEL", "format_table", "resolve_model",
           "run_demo"]

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "saved_models" / "csvdnet-synthetic"
"""The shipped demo model (TF Serving layout, ``<version>/`` inside), relative to the package."""
MODEL_ENV = "CSVDNET_DEMO_MODEL"
DEMO_SEED = 2024
"""Seed of the demo subject (unseen by the shipped model, trained on seed 0 cohorts)."""
DEMO_PREVALENCE = (0.0, 0.0, 1.0, 1.0, 1.0)
"""The demo subject has a total SVD score of 2-4: several markers to find."""


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and found.

    Attributes:
        out: The demo folder (``cohort/`` synthetic input, ``predictions/`` predict output).
        report_html: The subject's ``report.html``.
        report_json: The subject's ``report.json``.
        rows: Table rows ``(marker, found, truth, Staals point)``.
        model: The model used (id and folder).
        seconds: Wall time from the start of :func:`run_demo` (synthesis included).
    """

    out: Path
    report_html: Path
    report_json: Path
    rows: list[tuple[str, str, str, str]]
    model: str
    seconds: float


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The model the demo runs: ``model``, ``$CSVDNET_DEMO_MODEL``, or the shipped one.

    Raises:
        CsvdnetInputError: No model given and none shipped (said plainly, with the fix).
    """
    chosen = model or os.environ.get(MODEL_ENV)
    if chosen:
        return Path(chosen)
    from csvdnet.export.verify import find_version_dir

    if SHIPPED_MODEL.is_dir():
        try:
            return find_version_dir(SHIPPED_MODEL)
        except CsvdnetInputError:
            pass
    raise CsvdnetInputError(SHIPPED_MODEL, "no shipped model is installed (this checkout has no "
                                           "exported version in it): pass --model DIR, an "
                                           "exported model (`csvdnet export RUN --out DIR`) or a "
                                           "training run; saved_models/README.md says how the "
                                           "shipped model is made")


def _point(points: dict[str, Any], name: str) -> str:
    value = points.get(name)
    return "-" if value is None else str(value)


def _table(report: dict[str, Any], truth: Any) -> list[tuple[str, str, str, str]]:
    """Rows ``(marker, found, truth, Staals point)`` from a report and the true ratings."""
    m = report["measurements"]
    markers = report["markers"]
    staals = report["scores"].get("staals-2014") or {"points": {}, "total": None}
    points = staals["points"]

    def count(task: str) -> str:
        value = markers[task]["count"]
        return "-" if value is None else str(value)

    def true(name: str) -> str:
        value = None if truth is None else getattr(truth, name)
        return "-" if value is None else str(value)

    wmh_ml = m.get("wmh_volume_ml")
    ordinal = report["ordinal"]
    probability = max(ordinal["class_probabilities"])
    return [
        ("WMH (Fazekas PV/deep)",
         f"{m['fazekas_pv']}/{m['fazekas_deep']}"
         + (f" ({wmh_ml:.1f} ml)" if wmh_ml is not None else ""),
         f"{true('fazekas_pv')}/{true('fazekas_deep')}", _point(points, "wmh")),
        ("lacunes", count("lacune"), true("lacune_count"), _point(points, "lacunes")),
        ("microbleeds", count("cmb"), true("cmb_count"), _point(points, "microbleeds")),
        ("EPVS (basal ganglia grade)", f"{m['epvs_bg_grade']} ({m['epvs_bg_count']} on a slice)",
         true("epvs_bg_grade"), _point(points, "epvs")),
        ("RSSI (never scored)", count("rssi"), true("rssi_count"), "-"),
        ("total SVD score (Staals)", "-" if staals["total"] is None else str(staals["total"]),
         true("total_score"), ""),
        ("total SVD score (ordinal head)", f"{ordinal['total']} (p {probability:.2f})",
         true("total_score"), ""),
    ]


def format_table(rows: Sequence[tuple[str, ...]],
                 header: tuple[str, ...] = ("marker", "found", "truth", "Staals point")) -> str:
    """A plain-text table, columns padded to their widest cell."""
    table = [header, *rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_demo(out: str | os.PathLike = "csvdnet-demo", model: str | os.PathLike | None = None,
             *, seed: int = DEMO_SEED, profile: str = "demo") -> DemoResult:
    """Make one synthetic subject, predict it with the model, compare with the truth.

    Args:
        out: Demo folder (created; a previous demo in it is redone).
        model: Exported model or training run (default: :func:`resolve_model`).
        seed: Seed of the synthetic subject.
        profile: Synthetic profile (``demo``: the shipped model's; ``tiny`` for tests).

    Returns:
        Paths of the reports and the comparison table.

    Raises:
        CsvdnetInputError: No model, or a model that fails verification.
    """
    started = time.perf_counter()
    out = Path(out)
    model_dir = resolve_model(model)
    from csvdnet.inference.cohort import predict_cohort
    from csvdnet.inference.outputs import report_path
    from csvdnet.inference.predictor import Predictor
    from csvdnet.io import read_cohort
    from csvdnet.synth import generate_cohort

    predictor = Predictor.from_dir(model_dir)  # first: a bad model fails before synthesis
    manifest = generate_cohort(out / "cohort", 1, seed, profile=profile,
                               prevalence=DEMO_PREVALENCE, progress=False)
    subjects = list(read_cohort(manifest, sequences=predictor.info.channels,
                                reference=predictor.preprocess_cfg.reference).subjects)
    predictions = out / "predictions"
    summary = predict_cohort(predictor, subjects, predictions, source=manifest, overwrite=True)
    subject = subjects[0]
    if summary.failed:
        raise CsvdnetInputError(subject.id, f"prediction failed: {summary.failed[subject.id]}")
    report_json = report_path(predictions, subject.id, False)
    report = json.loads(report_json.read_text(encoding="utf-8"))
    return DemoResult(out=out, report_html=report_path(predictions, subject.id, False, ".html"),
                      report_json=report_json, rows=_table(report, subject.ratings),
                      model=f"{predictor.info.id} ({model_dir})",
                      seconds=time.perf_counter() - started)

