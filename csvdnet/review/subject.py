"""One subject of a ``csvdnet predict`` output folder, as the review sees it.

Read only from what predict documents (docs/contracts.md): ``report.json`` (findings, model
ratings, the sequences it read and their co-registration), ``<task>_mask.nii.gz`` and
``regions_dseg.nii.gz``. The sequences themselves are those ``report.json`` names, or, with
``--cohort``, that cohort's files of the subject (when the images moved since predict ran).

A finding's id is ``<task>:<index>``, the ``index`` column of ``<task>_lesions.tsv`` /
``<task>_points.tsv`` (and of ``report.json``'s findings). For the masks, each finding is tied to
its 26-connected component of ``<task>_mask.nii.gz`` by centre of mass (predict writes the
component's centre), so a rejected lesion removes exactly its voxels.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.atlas import REGION_CODES, REGION_NAMES
from csvdnet.errors import CsvdnetInputError
from csvdnet.inference.regions import MIDLINE_MM
from csvdnet.io.nifti import load_nifti

__all__ = ["BEST_SEQUENCES", "Finding", "ReviewSubject", "list_subjects", "midline_side"]

TASKS = SEGMENTATION_TASKS + DETECTION_TASKS
# Small, countable findings first: they decide the totals; WMH components last.
REVIEW_ORDER = ("cmb", "lacune", "rssi", "epvs", "wmh")
BEST_SEQUENCES = {"wmh": ("flair", "t1"), "lacune": ("flair", "t1"), "cmb": ("swi", "t2"),
                  "rssi": ("dwi", "flair"), "epvs": ("t2", "t1")}
"""The sequences that show each marker best (first shown first on a finding's card)."""
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
_SLAB = 4  # output slices resampled per call (see volume_u8)
_MATCH_VOXELS = 1.0  # a component's centre this close (voxels) to the report's is that finding
# Deep grey structures are near-symmetric: their centroid is the midline's x.
_MIDLINE_REGIONS = ("ventricles", "basal_ganglia", "thalamus")


@dataclass
class Finding:
    """One finding of the model (or one a reviewer added)."""

    id: str
    task: str
    world: list[float]
    voxel: list[float]
    confidence: float | None
    region: str
    side: str
    volume_mm3: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "task": self.task, "world": self.world, "voxel": self.voxel,
                "confidence": self.confidence, "region": self.region, "side": self.side,
                "volume_mm3": self.volume_mm3}


def list_subjects(pred_dir: Path) -> list[str]:
    """Subject ids of a plain-layout predict folder (folders holding a ``report.json``)."""
    if not pred_dir.is_dir():
        raise CsvdnetInputError(pred_dir, "is not a folder (a csvdnet predict output folder)")
    ids = sorted(p.parent.name for p in pred_dir.glob("*/report.json")
                 if not p.parent.name.startswith("."))
    if not ids:
        raise CsvdnetInputError(pred_dir, "holds no <subject>/report.json: not a csvdnet predict "
                                          "output folder (BIDS derivatives are not reviewed yet)")
    return ids


def midline_side(world_x: float, midline_x: float) -> str:
    """``L`` / ``R`` / ``M`` of a world (RAS) x coordinate against the midline's x."""
    offset = world_x - midline_x
    return "M" if abs(offset) < MIDLINE_MM else ("R" if offset > 0 else "L")


@dataclass(eq=False)
class ReviewSubject:
    """A subject's predict outputs, loaded once."""

    id: str
    folder: Path
    report: dict[str, Any]
    affine: np.ndarray
    shape: tuple[int, int, int]
    findings: list[Finding]
    cohort_sequences: dict[str, Path] = field(default_factory=dict)
    _volumes: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _volume_locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, pred_dir: Path, subject_id: str,
             cohort_sequences: dict[str, Path] | None = None) -> "ReviewSubject":
        folder = pred_dir / subject_id
        path = folder / "report.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            grid = report["reference_grid"]
            affine = np.asarray(grid["affine"], dtype=np.float64)
            shape = tuple(int(n) for n in grid["shape"])
            markers = report["markers"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CsvdnetInputError(path, f"not a readable csvdnet report.json ({exc})") from None
        findings = []
        for task in REVIEW_ORDER:
            for f in (markers.get(task) or {}).get("findings") or []:
                findings.append(Finding(
                    id=f"{task}:{f['index']}", task=task, world=[float(v) for v in f["world_mm"]],
                    voxel=[float(v) for v in f["voxel"]], confidence=f.get("confidence"),
                    region=str(f.get("region", "")), side=str(f.get("side", "M")),
                    volume_mm3=f.get("volume_mm3")))
        return cls(subject_id, folder, report, affine, shape, findings,
                   dict(cohort_sequences or {}))

    # ---- what was predicted ---------------------------------------------------------------
    def measured_tasks(self) -> list[str]:
        """Tasks predict measured (a marker not measured stays unmeasured after review)."""
        markers = self.report["markers"]
        return [t for t in TASKS if (markers.get(t) or {}).get("count") is not None]

    def model_ratings(self) -> dict[str, Any]:
        return dict(self.report.get("measurements") or {})

    def model_totals(self) -> dict[str, int | None]:
        return {name: s.get("total") for name, s in (self.report.get("scores") or {}).items()}

    @functools.cached_property
    def regions(self) -> np.ndarray:
        return self._grid_image("regions_dseg.nii.gz", "labelmap").astype(np.int16)

    @functools.cached_property
    def midline_x(self) -> float:
        """World x of the midline: centroid of the deep grey structures of the region map."""
        codes = [REGION_CODES[n] for n in _MIDLINE_REGIONS]
        where = np.argwhere(np.isin(self.regions, codes))
        if where.size == 0:
            where = np.argwhere(self.regions > 0)
        if where.size == 0:
            return float((self.affine @ [*(np.asarray(self.shape) - 1) / 2, 1])[0])
        centre = where.mean(axis=0)
        return float((self.affine @ [*centre, 1.0])[0])

    def region_at(self, world: np.ndarray) -> str:
        voxel = np.rint(np.linalg.solve(self.affine, [*world, 1.0])[:3]).astype(int)
        if np.any(voxel < 0) or np.any(voxel >= self.shape):
            return "background"
        return REGION_NAMES[int(self.regions[tuple(voxel)])]

    def mask(self, task: str) -> np.ndarray:
        return self._grid_image(f"{task}_mask.nii.gz", "mask") > 0

    @functools.lru_cache(maxsize=None)
    def components(self, task: str) -> tuple[np.ndarray, dict[str, int]]:
        """(26-connected labels of the task's mask, finding id -> component label)."""
        labels, n = ndimage.label(self.mask(task), structure=_CONNECTIVITY)
        mine = [f for f in self.findings if f.task == task]
        if not mine:
            return labels, {}
        centres = np.asarray(ndimage.center_of_mass(labels > 0, labels, range(1, n + 1)))
        centres = centres.reshape(-1, 3)
        matched: dict[str, int] = {}
        for f in mine:
            if len(centres) == 0:
                break
            distance = np.linalg.norm(centres - np.asarray(f.voxel), axis=1)
            best = int(np.argmin(distance))
            if distance[best] <= _MATCH_VOXELS:
                matched[f.id] = best + 1
        missing = [f.id for f in mine if f.id not in matched]
        if missing:
            raise CsvdnetInputError(self.folder / f"{task}_mask.nii.gz",
                                    f"no component at the centre of {', '.join(missing[:5])} of "
                                    "report.json: mask and report do not belong together")
        return labels, matched

    def _grid_image(self, name: str, kind: str) -> np.ndarray:
        path = self.folder / name
        if not path.is_file():
            raise CsvdnetInputError(path, "is missing from the predict output")
        image = load_nifti(path, kind=kind)
        if tuple(image.shape[:3]) != self.shape or not np.allclose(image.affine, self.affine,
                                                                    atol=1e-3):
            raise CsvdnetInputError(path, "is not on report.json's reference grid")
        return np.asarray(image.data)

    # ---- the images -----------------------------------------------------------------------
    def sequence_paths(self) -> dict[str, Path]:
        inputs = self.report.get("inputs") or {}
        paths = {name: Path(p) for name, p in (inputs.get("sequences") or {}).items()}
        paths.update(self.cohort_sequences)
        return paths

    def volume_u8(self, sequence: str) -> np.ndarray:
        """A sequence on the reference grid (through its affine and predict's co-registration),
        windowed to uint8 over its 1st-99.5th brain percentiles; made once (two threads asking
        for the same sequence wait for one computation)."""
        with self._guard:
            lock = self._volume_locks.setdefault(sequence, threading.Lock())
        with lock:
            if sequence not in self._volumes:
                self._volumes[sequence] = self._make_volume(sequence)
            return self._volumes[sequence]

    def _make_volume(self, sequence: str) -> np.ndarray:
        path = self.sequence_paths().get(sequence)
        if path is None or not Path(path).is_file():
            raise CsvdnetInputError(path or self.folder / "report.json",
                                    f"{sequence}: the image is not there (use --cohort)")
        image = load_nifti(path)
        data = np.asarray(image.data, dtype=np.float32)
        transforms = (self.report.get("inputs") or {}).get("sequence_transforms") or {}
        ref_to_seq = np.asarray(transforms.get(sequence, np.eye(4)), dtype=np.float64)
        # reference voxel -> reference world -> sequence world -> sequence voxel
        matrix = np.linalg.inv(image.affine) @ ref_to_seq @ self.affine
        if data.shape == self.shape and np.allclose(matrix, np.eye(4), atol=1e-4):
            moved = data
        else:
            moved = np.empty(self.shape, dtype=np.float32)
            # In slabs of a few slices: ndimage holds the GIL, and the server's request threads
            # (a rater's decisions) must get it between slabs while a subject is prepared.
            for k in range(0, self.shape[2], _SLAB):
                top = min(k + _SLAB, self.shape[2])
                offset = matrix[:3, :3] @ [0.0, 0.0, float(k)] + matrix[:3, 3]
                moved[:, :, k:top] = ndimage.affine_transform(
                    data, matrix[:3, :3], offset, output_shape=(*self.shape[:2], top - k),
                    order=1, cval=0.0)
                time.sleep(0)
        inside = moved[moved > 0]
        if inside.size == 0:
            return np.zeros(self.shape, dtype=np.uint8)
        low, high = np.percentile(inside, [1.0, 99.5])
        scaled = np.clip((moved - low) / max(high - low, 1e-6), 0.0, 1.0) * 255.0
        return np.rint(scaled).astype(np.uint8)
