"""A subject's prediction as a versioned JSON record (``report.json``) and an offline HTML page.

``report.json`` follows ``report.schema.json`` beside this module (JSON Schema draft 2020-12;
README "report.json schema" describes every field). A change that renames or removes a field,
or changes its meaning, raises the major part of :data:`REPORT_SCHEMA_VERSION`; adding a field
raises the minor part. The HTML page (:func:`write_report_html`, built by
:mod:`csvdnet.inference.report_html`) shows the same numbers with pictures to check them by eye.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from csvdnet import TASK_EVIDENCE, __version__
from csvdnet.atlas import REGION_CODES
from csvdnet.fsutil import write_text_atomic
from csvdnet.inference.result import Finding, SubjectResult

__all__ = ["MARKERS", "REPORT_SCHEMA_VERSION", "SCHEMA_PATH", "report_dict", "report_flags",
           "validate_report", "write_report_html", "write_report_json"]

REPORT_SCHEMA_VERSION = "1.3"
"""Version of the ``report.json`` layout (major: incompatible change, minor: fields added)."""

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
"""The JSON Schema that every ``report.json`` validates against."""

MARKERS: dict[str, str] = {"wmh": "segmentation", "rssi": "segmentation",
                           "lacune": "segmentation", "cmb": "detection", "epvs": "detection"}
"""Marker -> how the network finds it (a segmented volume or a detected point)."""

SIDES = ("R", "L", "M")
"""Sides a finding can be on (right, left, within 2 mm of the midline)."""

# Quantities the measuring stage reports in ``SubjectResult.quantities`` that the report lifts
# into its fixed ``measurements`` block (WMH split by the periventricular band).
_WMH_SPLIT_KEYS = {"wmh_periventricular_ml": "wmh_periventricular_ml",
                   "wmh_deep_ml": "wmh_deep_ml"}


def report_dict(result: SubjectResult) -> dict[str, Any]:
    """Everything predicted, measured and rated for one subject, as JSON-ready values.

    Args:
        result: The subject's prediction.

    Returns:
        A dict that validates against ``report.schema.json`` (see :func:`validate_report`).
    """
    model = result.model
    report = {
        "schema": "csvdnet-report",
        "schema_version": REPORT_SCHEMA_VERSION,
        "csvdnet_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "subject": result.subject,
        "inputs": {"reference": result.reference, "reference_path": str(result.reference_path),
                   "sequences": {name: str(path) for name, path in result.inputs.items()},
                   "sequence_transforms": {
                       name: [_floats(row) for row in np.asarray(matrix, np.float64)]
                       for name, matrix in (result.sequence_transforms or {}).items()}},
        "model": {"id": model.id, "path": str(model.path), "sha256": model.sha256,
                  "kind": model.kind, "channels": list(model.channels),
                  "spacing": _floats(model.spacing),
                  "thresholds": {k: float(v) for k, v in model.thresholds.items()},
                  "min_lesion_mm3": {k: float(v) for k, v in model.min_lesion_mm3.items()},
                  "modality_dropout": bool(model.modality_dropout),
                  "edited": model.edited},
        "reference_grid": {"shape": [int(n) for n in result.shape],
                           "affine": [_floats(row) for row in np.asarray(result.affine)],
                           "spacing": _floats(result.spacing)},
        "markers": {task: marker_summary(task, result.findings.get(task),
                                         _not_measured(task, result)) for task in MARKERS},
        "measurements": measurements(result),
        "quantities": _jsonable(result.quantities),
        "scores": {name: rule_score_dict(score) for name, score in result.scores.items()},
        "ordinal": {"total": int(result.ordinal.total),
                    "class_probabilities": _floats(result.ordinal.class_probabilities),
                    "cumulative": _floats(result.ordinal.cumulative)},
        "agreement": None if result.agreement is None else bool(result.agreement),
        "flags": report_flags(result),
        "timings": {stage: float(seconds) for stage, seconds in result.timings.items()},
    }
    if getattr(result, "source", None) is not None:  # a DICOM study (csvdnet.dicom.source)
        report["dicom_source"] = _jsonable({key: value for key, value in result.source.items()
                                            if key != "fingerprint"})
    return report


def report_flags(result: SubjectResult) -> list[str]:
    """The warnings a reader must see: an edited model first, then the prediction's own."""
    model = [f"edited model: {result.model.edited}"] if result.model.edited else []
    return model + [str(flag) for flag in result.flags]


def _not_measured(task: str, result: SubjectResult) -> str | None:
    """Why ``task`` has no findings in ``result`` (``None`` when it was measured)."""
    if task in result.findings:
        return None
    from csvdnet.inference.predictor import unmeasured_tasks

    missing = [name for name in result.model.channels if name not in result.inputs]
    if task in unmeasured_tasks(missing):
        return (f"not measured: {', '.join(TASK_EVIDENCE[task])} missing (the marker cannot be "
                f"seen without it)")
    return "not predicted by this model"


def marker_summary(task: str, findings: list[Finding] | None,
                   not_measured: str | None = None) -> dict[str, Any]:
    """Count, volume, findings and counts by region and side of one marker.

    ``findings`` is ``None`` when the marker was not measured (the model does not predict it, or
    the sequence it is seen on is missing): its count is then ``null``, never 0, and
    ``not_measured`` says why.
    """
    segmented = MARKERS[task] == "segmentation"
    if findings is None:
        return {"kind": MARKERS[task], "predicted": False, "count": None,
                "volume_ml": None, "findings": [], "by_region": {},
                "not_measured": not_measured or "not predicted by this model"}
    volume = sum(f.volume_mm3 or 0.0 for f in findings) / 1000.0 if segmented else None
    return {"kind": MARKERS[task], "predicted": True, "count": len(findings),
            "volume_ml": volume, "findings": [finding_dict(f) for f in findings],
            "by_region": counts_by_region(findings), "not_measured": None}


def finding_dict(finding: Finding) -> dict[str, Any]:
    """One finding as JSON: index, world and voxel centre, confidence, volume, region, side."""
    return {"index": int(finding.index), "world_mm": _floats(finding.world),
            "voxel": _floats(finding.voxel), "confidence": float(finding.confidence),
            "volume_mm3": None if finding.volume_mm3 is None else float(finding.volume_mm3),
            "region": finding.region, "side": finding.side}


def counts_by_region(findings: list[Finding]) -> dict[str, dict[str, int]]:
    """Region -> side -> number of findings (plus ``total``), regions in atlas order."""
    counts = Counter((f.region, f.side) for f in findings)
    order = {name: i for i, name in enumerate(REGION_CODES)}
    regions = sorted({f.region for f in findings}, key=lambda r: (order.get(r, len(order)), r))
    return {region: {**{side: counts[region, side] for side in SIDES},
                     "total": sum(counts[region, side] for side in SIDES)}
            for region in regions}


def measurements(result: SubjectResult) -> dict[str, Any]:
    """The rated quantities: what the rule sets score, plus volumes (``None`` = not measured)."""
    m = result.measurements

    def field(name: str) -> int | None:
        value = getattr(m, name, None)
        return None if value is None else int(value)

    def volume(task: str) -> float | None:
        found = result.findings.get(task)
        return None if found is None else sum(f.volume_mm3 or 0.0 for f in found) / 1000.0

    quantities = result.quantities or {}
    block: dict[str, Any] = {name: field(name) for name in (
        "fazekas_pv", "fazekas_deep", "epvs_bg_count", "epvs_bg_grade", "epvs_cso_count",
        "epvs_cso_grade", "cmb_lobar", "cmb_deep", "cmb_infratentorial", "cmb_count",
        "lacune_count", "rssi_count")}
    block.update(lacune_volume_ml=volume("lacune"), rssi_volume_ml=volume("rssi"),
                 wmh_volume_ml=volume("wmh"))
    for key, source in _WMH_SPLIT_KEYS.items():
        value = quantities.get(source)
        block[key] = None if value is None else float(value)
    return block


def rule_score_dict(score: Any) -> dict[str, Any]:
    """A :class:`csvdnet.scoring.RuleScore` as JSON."""
    return {"rule_set": score.rule_set, "version": str(score.version),
            "total": None if score.total is None else int(score.total),
            "maximum": int(score.maximum),
            "points": {name: None if value is None else int(value)
                       for name, value in score.points.items()},
            "undecided": [str(item) for item in getattr(score, "undecided", ())],
            "notes": [str(note) for note in score.notes]}


def write_report_json(result: SubjectResult, path: str | os.PathLike) -> Path:
    """Write ``report.json`` atomically (a killed run leaves no half-written report).

    Args:
        result: The subject's prediction.
        path: Destination file.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    write_text_atomic(path, json.dumps(report_dict(result), indent=2, allow_nan=False) + "\n")
    return path


def write_report_html(result: SubjectResult, path: str | os.PathLike) -> Path:
    """Write ``report.html``: one offline file with the ratings, tables and pictures.

    Args:
        result: The subject's prediction.
        path: Destination file.

    Returns:
        ``path`` as a Path.
    """
    from csvdnet.inference.report_html import render_html  # matplotlib only when pictures are made

    path = Path(path)
    write_text_atomic(path, render_html(result, report_dict(result)))
    return path


def validate_report(data: Any) -> list[str]:
    """Check a loaded ``report.json`` against its schema.

    Needs the ``jsonschema`` package (``pip install csvdnet[test]``); predicting does not.

    Args:
        data: The parsed JSON.

    Returns:
        One line per problem, ``"<where>: <what>"`` (where = dotted path, ``$`` for the top);
        empty when the report is valid.
    """
    try:
        import jsonschema
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("validate_report needs the jsonschema package: "
                          "pip install 'csvdnet[test]'") from error
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        where = ".".join(str(part) for part in error.absolute_path) or "$"
        problems.append(f"{where}: {error.message}")
    return problems


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def _jsonable(value: Any) -> Any:
    """Plain JSON values from numpy scalars / arrays, tuples and dataclasses; NaN -> None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    return value
