"""Writing one subject's prediction: NIfTI maps on the reference grid, tables, report.

Two layouts, chosen by the input (``csvdnet predict`` on a BIDS dataset writes BIDS
derivatives; on a cohort folder or manifest, the plain layout):

Plain, ``<out>/<subject>/``::

    <task>_prob.nii.gz      float32 probability (wmh, rssi, lacune) / heatmap (cmb, epvs)
    <task>_mask.nii.gz      uint8 0/1 mask
    <task>_lesions.tsv      wmh, rssi, lacune: one row per 26-connected component
    <task>_points.tsv       cmb, epvs: one row per detected point
    csvd_dseg.nii.gz + .tsv all markers in one label map (codes in DSEG_LABELS)
    regions_dseg.nii.gz + .tsv  the region atlas as placed on the subject
    report.json, report.html

BIDS derivatives, ``<out>/sub-X/[ses-Y/]anat/`` (and ``dataset_description.json``,
``.bidsignore`` at ``<out>``)::

    sub-X[_ses-Y]_space-orig_label-WMH_probseg.nii.gz    (likewise RSSI, lacune, CMB, EPVS)
    sub-X[_ses-Y]_space-orig_label-WMH_mask.nii.gz
    sub-X[_ses-Y]_space-orig_seg-csvd_dseg.nii.gz + .tsv
    sub-X[_ses-Y]_space-orig_seg-regions_dseg.nii.gz + .tsv
    sub-X[_ses-Y]_space-orig_label-WMH_lesions.tsv / _label-CMB_points.tsv, _desc-csvd_report.json
    / .html  (not BIDS suffixes: listed in ``.bidsignore``)

``space-orig`` (BIDS: the original space of the source image) = the reference sequence's grid.
Every file is written inside a temporary folder that replaces the subject's folder only once
complete (:func:`csvdnet.fsutil.atomic_dir`), so a killed run never leaves a subject that looks
done; :func:`is_done` is what ``csvdnet predict`` checks to skip finished subjects.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS, __version__
from csvdnet.atlas import REGION_CODES
from csvdnet.fsutil import atomic_dir, write_text_atomic
from csvdnet.inference.result import SubjectResult

__all__ = ["BIDS_LABELS", "DSEG_LABELS", "is_done", "layout_of", "output_name", "report_path",
           "subject_dir", "write_dataset_description", "write_subject"]

BIDS_LABELS = {"wmh": "WMH", "rssi": "RSSI", "lacune": "lacune", "cmb": "CMB", "epvs": "EPVS"}
"""The BIDS ``label-`` value of each task."""

DSEG_LABELS = ((1, "wmh", "white matter hyperintensity", "WMH", "#ffd400"),
               (2, "epvs", "enlarged perivascular space", "EPVS", "#39ff14"),
               (3, "cmb", "cerebral microbleed", "CMB", "#ff2a2a"),
               (4, "lacune", "lacune", "lacune", "#00e5ff"),
               (5, "rssi", "recent small subcortical infarct", "RSSI", "#ff7f00"))
"""``seg-csvd`` codes: (index, task, name, abbreviation, colour). Where markers overlap the
later (higher) code wins: the rarer, more specific finding."""

BIDSIGNORE = ("*_lesions.tsv", "*_points.tsv", "*_report.json", "*_report.html", "scores.tsv",
              "errors.tsv", ".csvdnet/")
_BIDS_ID = re.compile(r"^sub-([A-Za-z0-9]+)(?:_ses-([A-Za-z0-9]+))?$")
_DONE_PLAIN = "report.json"


def layout_of(subject_id: str, bids: bool) -> tuple[str, str | None] | None:
    """``(sub, ses)`` labels of a BIDS subject id ``sub-X[_ses-Y]``; ``None`` for plain."""
    if not bids:
        return None
    match = _BIDS_ID.match(subject_id)
    if match is None:
        raise ValueError(f"{subject_id!r} is not a BIDS subject id (sub-<label>[_ses-<label>])")
    return match.group(1), match.group(2)


def subject_dir(out: Path, subject_id: str, bids: bool) -> Path:
    """The folder a subject's outputs go to."""
    entities = layout_of(subject_id, bids)
    if entities is None:
        return out / subject_id
    sub, ses = entities
    folder = out / f"sub-{sub}"
    return (folder / f"ses-{ses}" if ses else folder) / "anat"


def _prefix(subject_id: str, bids: bool) -> str:
    """File name start: ``sub-X[_ses-Y]_space-orig_`` (BIDS) or nothing (plain)."""
    return f"{subject_id}_space-orig_" if bids else ""


def output_name(subject_id: str, bids: bool, task: str | None, kind: str) -> str:
    """The file name of one output (``kind``: prob, mask, lesions, points, csvd_dseg,
    regions_dseg, report)."""
    if not bids:
        return {"prob": f"{task}_prob.nii.gz", "mask": f"{task}_mask.nii.gz",
                "lesions": f"{task}_lesions.tsv", "points": f"{task}_points.tsv",
                "csvd_dseg": "csvd_dseg", "regions_dseg": "regions_dseg",
                "report": "report"}[kind]
    prefix = _prefix(subject_id, bids)
    label = f"label-{BIDS_LABELS[task]}_" if task else ""
    return {"prob": f"{prefix}{label}probseg.nii.gz", "mask": f"{prefix}{label}mask.nii.gz",
            "lesions": f"{prefix}{label}lesions.tsv", "points": f"{prefix}{label}points.tsv",
            "csvd_dseg": f"{prefix}seg-csvd_dseg", "regions_dseg": f"{prefix}seg-regions_dseg",
            "report": f"{subject_id}_desc-csvd_report"}[kind]


def is_done(out: Path, subject_id: str, bids: bool) -> bool:
    """Whether a complete output of ``subject_id`` is in ``out`` (skip-if-done)."""
    folder = subject_dir(out, subject_id, bids)
    return (folder / f"{output_name(subject_id, bids, None, 'report')}.json").is_file()


def report_path(out: Path, subject_id: str, bids: bool, suffix: str = ".json") -> Path:
    """Where a subject's report.json / report.html is."""
    folder = subject_dir(out, subject_id, bids)
    return folder / f"{output_name(subject_id, bids, None, 'report')}{suffix}"


def _save(data: np.ndarray, affine: np.ndarray, path: Path, dtype: Any) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    image.header.set_data_dtype(dtype)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    try:
        nib.save(image, path)
    except OSError as exc:  # gzip's errors name no file: name it (disk full, quota ...)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def _tsv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return "n/a"  # BIDS's missing value
        if isinstance(value, float):
            return f"{value:.4f}".rstrip("0").rstrip(".") if np.isfinite(value) else "n/a"
        return str(value)

    lines = ["\t".join(header)] + ["\t".join(cell(v) for v in row) for row in rows]
    try:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def _dseg(result: SubjectResult) -> np.ndarray:
    labels = np.zeros(result.shape, np.uint8)
    for index, task, *_ in DSEG_LABELS:
        if task in result.masks:
            labels[np.asarray(result.masks[task], bool)] = index
    return labels


def write_subject(result: SubjectResult, out: Path, *, bids: bool = False) -> Path:
    """Write every output of one subject (see the module docstring); return its folder.

    The report writers (:mod:`csvdnet.inference.report`) add ``report.json`` and
    ``report.html``; the time they and the maps take is recorded as ``timings["outputs"]``.
    """
    from csvdnet.inference.report import write_report_html, write_report_json

    started = time.perf_counter()
    final = subject_dir(out, result.subject, bids)
    sid = result.subject
    with atomic_dir(final) as folder:
        for task in SEGMENTATION_TASKS + DETECTION_TASKS:
            if task not in result.probabilities:
                continue
            _save(result.probabilities[task], result.affine,
                  folder / output_name(sid, bids, task, "prob"), np.float32)
            _save(result.masks[task], result.affine, folder / output_name(sid, bids, task, "mask"),
                  np.uint8)
            findings = result.findings.get(task, [])
            if task in SEGMENTATION_TASKS:
                _tsv(folder / output_name(sid, bids, task, "lesions"),
                     ["index", "x", "y", "z", "volume_mm3", "confidence", "region", "side"],
                     [[f.index, *f.world, f.volume_mm3, f.confidence, f.region, f.side]
                      for f in findings])
            else:
                _tsv(folder / output_name(sid, bids, task, "points"),
                     ["index", "x", "y", "z", "confidence", "region", "side"],
                     [[f.index, *f.world, f.confidence, f.region, f.side] for f in findings])
        base = output_name(sid, bids, None, "csvd_dseg")
        _save(_dseg(result), result.affine, folder / f"{base}.nii.gz", np.uint8)
        _tsv(folder / f"{base}.tsv", ["index", "name", "abbreviation", "color"],
             [[index, name, abbreviation, colour]
              for index, _, name, abbreviation, colour in DSEG_LABELS])
        base = output_name(sid, bids, None, "regions_dseg")
        _save(result.regions, result.affine, folder / f"{base}.nii.gz", np.uint8)
        _tsv(folder / f"{base}.tsv", ["index", "name"],
             [[code, name] for name, code in REGION_CODES.items() if code])
        result.timings["outputs"] = time.perf_counter() - started
        report = output_name(sid, bids, None, "report")
        started = time.perf_counter()
        write_report_html(result, folder / f"{report}.html")
        result.timings["report"] = time.perf_counter() - started
        write_report_json(result, folder / f"{report}.json")  # last: it marks the subject done
    return final


def write_dataset_description(out: Path, source: Path) -> None:
    """``dataset_description.json`` and ``.bidsignore`` of a BIDS derivatives dataset."""
    description = {
        "Name": "csvdnet: cerebral small vessel disease markers",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "csvdnet", "Version": __version__,
                         "Description": "WMH, RSSI, lacune segmentation; CMB, EPVS detection; "
                                        "total SVD score (Staals 2014) from one multi-task "
                                        "3-D network"}],
        "SourceDatasets": [{"URL": source.resolve().as_uri()}],
    }
    write_text_atomic(out / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    write_text_atomic(out / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
