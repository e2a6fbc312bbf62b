"""csvdnet's findings of one DICOM study written back as DICOM: SEG, SR and report captures.

:func:`write_results` reads what ``csvdnet predict`` wrote for one subject (report.json, the
``<task>_mask.nii.gz`` on the reference = FLAIR grid, ``<task>_points.tsv``, report.html) and the
headers of the source series, and writes into ``dest``:

    seg-<channel>.dcm   one Segmentation per source series grid (:mod:`csvdnet.dicom.seg`):
                        SeriesNumber 9901 "csvdnet WMH+lacunes" (FLAIR), 9902 "csvdnet RSSI"
                        (DWI), 9903 "csvdnet microbleeds" (SWI), 9904 "csvdnet EPVS" (T2)
    sr.dcm              Comprehensive 3D SR, TID 1500 (:mod:`csvdnet.dicom.sr`), 9910
    report-<n>.dcm      Secondary Capture pages (:mod:`csvdnet.dicom.capture`), 9920

All of the input study's patient / study attributes and StudyInstanceUID; UIDs derived, so a
rerun reproduces them (:mod:`csvdnet.dicom.provenance`). Every object is built before the first
is written, all are written under temporary names and only then renamed: bad input or a failed
write leaves ``dest`` as it was.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np
import pydicom

from csvdnet.dicom.capture import build_captures
from csvdnet.dicom.codes import MARKER_BY_TASK
from csvdnet.dicom.geometry import SeriesGrid, lps_of_ras, read_series
from csvdnet.dicom.provenance import Provenance
from csvdnet.dicom.seg import build_seg, mask_on_grid, plan_segs
from csvdnet.dicom.sr import SegmentRef, build_sr
from csvdnet.errors import CsvdnetInputError, CsvdnetOutputError
from csvdnet.fsutil import atomic_path

__all__ = ["write_results"]

_AFFINE_TOL = 1e-3  # mm: a mask whose affine differs more is not on the report's grid


def _report(subject_out: Path) -> dict:
    path = subject_out / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CsvdnetInputError(path, "missing: not a finished csvdnet predict output") from None
    except (OSError, ValueError) as error:
        raise CsvdnetInputError(path, f"not a readable report ({error})") from None
    for key in ("markers", "measurements", "reference_grid", "model", "created"):
        if key not in report:
            raise CsvdnetInputError(path, f"has no {key!r}: not a csvdnet report")
    return report


def _mask(subject_out: Path, task: str, report: dict) -> tuple[np.ndarray, np.ndarray]:
    path = subject_out / f"{task}_mask.nii.gz"
    try:
        image = nib.load(path)
        mask = np.asanyarray(image.dataobj) > 0
    except FileNotFoundError:
        raise CsvdnetInputError(path, f"missing, but report.json has {task} measured") from None
    except Exception as error:  # nibabel raises several types for a bad file
        raise CsvdnetInputError(path, f"not a readable NIfTI ({error})") from None
    grid = report["reference_grid"]
    if (list(mask.shape) != list(grid["shape"])
            or np.abs(image.affine - np.asarray(grid["affine"])).max() > _AFFINE_TOL):
        raise CsvdnetInputError(path, "not on report.json's reference grid (shape or affine)")
    return mask, np.asarray(image.affine, float)


def _points(subject_out: Path, task: str) -> np.ndarray:
    """World RAS mm of a detection marker's points (``(N, 3)``)."""
    path = subject_out / f"{task}_points.tsv"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        return np.array([[float(r["x"]), float(r["y"]), float(r["z"])] for r in rows],
                        dtype=float).reshape(-1, 3)
    except FileNotFoundError:
        raise CsvdnetInputError(path, f"missing, but report.json has {task} measured") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CsvdnetInputError(path, f"not a points table with x, y, z ({error})") from None


def _to_series(report: dict, channel: str, path: Path) -> np.ndarray:
    """The 4x4 rigid map from the reference's world to ``channel``'s (RAS mm): the co-registration
    predict applied (report.json ``inputs.sequence_transforms``, PreprocessMeta's), so a finding
    lands where that series shows it even if the head moved between series; identity when the
    report has none (or for the FLAIR)."""
    transforms = report.get("inputs", {}).get("sequence_transforms") or {}
    if channel not in transforms:
        return np.eye(4)
    matrix = np.asarray(transforms[channel], dtype=float)
    if (matrix.shape != (4, 4) or not np.all(np.isfinite(matrix))
            or not np.allclose(matrix[3], [0, 0, 0, 1])):
        raise CsvdnetInputError(path, f"inputs.sequence_transforms.{channel} is not a 4x4 affine")
    return matrix


def _created(report: dict, path: Path) -> datetime.datetime:
    try:
        created = datetime.datetime.fromisoformat(str(report["created"]))
    except ValueError:
        raise CsvdnetInputError(path, f"created {report['created']!r} is not an ISO time") from None
    return created.astimezone(datetime.timezone.utc) if created.tzinfo else created


def _grids(sources: Mapping[str, Sequence[Path]], needed: set[str]) -> dict[str, SeriesGrid]:
    """The source series a SEG goes on, and the FLAIR (headers read only for those)."""
    grids = {channel: read_series(channel, paths) for channel, paths in sources.items()
             if paths and channel in needed | {"flair"}}
    study = grids["flair"].first.StudyInstanceUID
    for channel, grid in grids.items():
        if grid.first.StudyInstanceUID != study:
            raise CsvdnetInputError(grid.paths[0], f"the {channel} series is of study "
                                    f"{grid.first.StudyInstanceUID}, the FLAIR of {study}")
    return grids


def _frame_of_reference(path: Path) -> str | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["FrameOfReferenceUID"])
    except Exception as error:  # pydicom raises several types for a bad file
        raise CsvdnetInputError(path, f"not a readable DICOM file ({error})") from None
    return ds.get("FrameOfReferenceUID")


def _same_frame(sources: Mapping[str, Sequence[Path]]) -> set[str]:
    """Channels whose series share the FLAIR's frame of reference: only there do the findings'
    world coordinates (the FLAIR's) mean the same place; a marker of another goes on the FLAIR."""
    flair = _frame_of_reference(Path(sources["flair"][0]))
    return {"flair"} | {c for c, paths in sources.items()
                        if paths and c != "flair" and _frame_of_reference(Path(paths[0])) == flair}


def _check_dest(dest: Path, grids: dict[str, SeriesGrid]) -> None:
    target = dest.resolve()
    for grid in grids.values():
        for folder in {p.resolve().parent for p in grid.paths}:
            if target == folder or folder in target.parents:
                raise CsvdnetOutputError(dest, f"inside the input folder {folder}: csvdnet "
                                         "writes nothing into its input")


def write_results(subject_out: Path, sources: Mapping[str, Sequence[Path]], dest: Path, *,
                  model_id: str, model_sha256: str, revision: int = 0) -> list[Path]:
    """Write one subject's findings as DICOM SEG, SR and Secondary Capture objects.

    Args:
        subject_out: predict's output folder for one subject (report.json, ``<task>_mask.nii.gz``
            on the reference = FLAIR grid as dcm2niix converted it, ``<task>_points.tsv`` in
            world RAS mm, report.html).
        sources: Channel (``flair``, ``t1``, ``t2``, ``swi``, ``dwi``) -> the DICOM files of the
            series chosen for it (dwi: the b1000 images only). ``flair`` is required; only the
            series a SEG goes on (and the FLAIR) are read.
        dest: Folder to write into (created; never one holding source files).
        model_id: The model's id (as report.json's ``model.id``).
        model_sha256: The model's sha256 (must equal report.json's ``model.sha256``).
        revision: The study's rating number after the first (:class:`Provenance`): other
            series UIDs, and `` (rating N)`` after each SeriesDescription (N = revision + 1).

    Returns:
        The written files: the SEGs in series-number order, the SR, the capture pages.

    Raises:
        CsvdnetInputError: one line naming the file and the reason, before anything is written.
        CsvdnetOutputError: ``dest`` is an input folder, or a file cannot be written.
    """
    subject_out, dest = Path(subject_out), Path(dest)
    report = _report(subject_out)
    if report["model"].get("sha256") != model_sha256:
        raise CsvdnetInputError(subject_out / "report.json", f"made by model "
                                f"{report['model'].get('sha256')}, not {model_sha256}")
    if not sources.get("flair"):
        raise CsvdnetInputError(", ".join(sorted(sources)) or "sources",
                                "no FLAIR source series: the reference grid's series is needed")
    tasks = {t for t, marker in report["markers"].items()
             if marker.get("predicted") and t in MARKER_BY_TASK}
    try:
        plans = plan_segs(_same_frame(sources), tasks)
    except ValueError as error:
        raise CsvdnetInputError(subject_out, str(error)) from None
    grids = _grids(sources, {plan.channel for plan in plans})
    _check_dest(dest, grids)
    provenance = Provenance(str(grids["flair"].first.StudyInstanceUID), model_id, model_sha256,
                            _created(report, subject_out / "report.json"), revision)

    segs, refs = [], []
    for plan in plans:
        grid = grids[plan.channel]
        to_series = _to_series(report, plan.channel, subject_out / "report.json")
        arrays = {}
        for marker in plan.markers:
            if marker.radius_mm is None:
                mask, affine = _mask(subject_out, marker.task, report)
                arrays[marker.task] = mask_on_grid(grid, mask, to_series @ affine)
            else:
                points = _points(subject_out, marker.task)
                points = points @ to_series[:3, :3].T + to_series[:3, 3]
                arrays[marker.task] = grid.spheres(lps_of_ras(points), marker.radius_mm)
        seg = build_seg(plan, grid, arrays, provenance)
        provenance.stamp(seg)
        segs.append((f"seg-{plan.channel}.dcm", seg))
        refs += [SegmentRef(m.task, seg, n, grid.series_uid)
                 for n, m in enumerate(plan.markers, start=1)]
    sr = build_sr(report, refs, provenance, fallback_evidence=grids["flair"].first)
    captures = build_captures(report, subject_out / "report.html", grids["flair"].first,
                              provenance)
    objects = segs + [("sr.dcm", sr)] + [(f"report-{n}.dcm", sc)
                                         for n, sc in enumerate(captures, start=1)]
    if revision:
        for _, dataset in objects:
            dataset.SeriesDescription = f"{dataset.SeriesDescription} (rating {revision + 1})"[:64]
    return _write_all(dest, objects)


def _write_all(dest: Path, objects: list) -> list[Path]:
    """Every object under a temporary name first, then all renamed: a failed write leaves none."""
    written = []
    with contextlib.ExitStack() as stack:
        for name, dataset in objects:
            path = dest / name
            try:
                tmp = stack.enter_context(atomic_path(path))
                dataset.save_as(tmp, enforce_file_format=True)
            except OSError as error:
                raise CsvdnetOutputError(path, error.strerror or str(error)) from None
            written.append(path)
    return written
