"""Prediction folders made from a cohort's own ground truth, for testing ``csvdnet evaluate``.

:func:`write_truth_as_prediction` writes what ``csvdnet predict`` would write (plain layout of
:mod:`csvdnet.inference.outputs`, or BIDS derivatives names) if it were perfect, with optional
edits per subject, so every metric of the evaluation is known in advance.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.inference import outputs
from csvdnet.io import load_nifti, read_cohort, read_points, save_nifti


@dataclasses.dataclass
class Edits:
    """Changes to one subject's perfect prediction.

    Attributes:
        masks: Task -> function(mask) -> new mask.
        points: Task -> function(world (N, 3)) -> new world points.
        scores: scores.tsv column -> value.
    """

    masks: dict[str, Callable[[np.ndarray], np.ndarray]] = dataclasses.field(default_factory=dict)
    points: dict[str, Callable[[np.ndarray], np.ndarray]] = dataclasses.field(
        default_factory=dict)
    scores: dict[str, object] = dataclasses.field(default_factory=dict)


def _tsv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_truth_as_prediction(cohort: Path, pred: Path, edits: dict[str, Edits] | None = None,
                              skip: tuple[str, ...] = (), bids: bool = False) -> Path:
    """Write ``pred`` from ``cohort``'s labels and ratings (``skip``: subjects left out)."""
    edits = edits or {}
    pred.mkdir(parents=True, exist_ok=True)
    if bids:
        (pred / "dataset_description.json").write_text('{"Name": "test"}\n')
    name = outputs.output_name
    rows = []
    for subject in read_cohort(cohort):
        if subject.id in skip:
            continue
        edit = edits.get(subject.id, Edits())
        folder = outputs.subject_dir(pred, subject.id, bids)
        folder.mkdir(parents=True, exist_ok=True)
        grid = load_nifti(subject.sequences["flair"])
        for task in SEGMENTATION_TASKS:
            # predict writes every map; an unlabelled task gets an empty one here.
            label = (load_nifti(subject.labels[task], kind="labelmap")
                     if task in subject.labels else grid)
            mask = (np.rint(label.data) == 1) & (task in subject.labels)
            mask = edit.masks.get(task, lambda m: m)(mask)
            save_nifti(mask.astype(np.uint8), label.affine,
                       folder / name(subject.id, bids, task, "mask"), dtype=np.uint8)
            save_nifti(mask.astype(np.float32), label.affine,
                       folder / name(subject.id, bids, task, "prob"), dtype=np.float32)
        for task in DETECTION_TASKS:
            world = edit.points.get(task, lambda w: w)(read_points(subject.labels[task]))
            _tsv(folder / name(subject.id, bids, task, "points"),
                 ["index", "x", "y", "z", "confidence", "region", "side"],
                 [[i + 1, *np.round(p, 4), 0.9, "n/a", "n/a"] for i, p in enumerate(world)])
        report = name(subject.id, bids, None, "report")
        (folder / f"{report}.json").write_text("{}\n")
        (folder / f"{report}.html").write_text("<html><body>report</body></html>\n")
        r = subject.ratings
        grade = r.epvs_bg_grade
        row = {"subject": subject.id, "fazekas_pv": r.fazekas_pv,
               "fazekas_deep": r.fazekas_deep,
               "epvs_bg_count": (0, 5, 15, 30, 50)[grade], "epvs_bg_grade": grade,
               "cmb_count": r.cmb_count, "cmb_lobar": 0, "cmb_deep": r.cmb_count,
               "cmb_infratentorial": 0, "lacune_count": r.lacune_count,
               "rssi_count": r.rssi_count, "staals_total": r.total_score,
               "ordinal_total": r.total_score}
        row.update(edit.scores)
        rows.append(row)
    with open(pred / "scores.tsv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return pred
