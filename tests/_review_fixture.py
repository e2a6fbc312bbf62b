"""A predict output folder made by hand for the review tests (seconds, not a model run).

One tiny synthetic subject; its "predictions" are its true labels (masks, EPVS points), plus one
planted false-positive microbleed; the measurements and scores in report.json are computed by
predict's own measure / score code, so the review's untouched state rates as report.json says.
The folder has exactly the files docs/contracts.md lists for a plain-layout subject that the
review and ``csvdnet evaluate`` read.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from csvdnet.atlas import REGION_CODES, REGION_NAMES
from csvdnet.inference.measure import measure
from csvdnet.inference.report_html import REVIEW_MARK
from csvdnet.io import load_nifti, read_points, save_nifti
from csvdnet.scoring import RULE_SETS, score
from csvdnet.synth import generate_cohort

SUBJECT = "sub-0000"
FALSE_CMB = "cmb:1"


def _side(world_x: float, midline_x: float) -> str:
    return "M" if abs(world_x - midline_x) < 2.0 else ("R" if world_x > midline_x else "L")


def make_prediction(root: Path, profile: str = "tiny") -> dict:
    """Write ``root/cohort`` (synth, 1 subject) and ``root/pred``; return what was planted."""
    generate_cohort(root / "cohort", 1, seed=5, profile=profile, progress=False)
    cohort = root / "cohort"
    source = cohort / SUBJECT
    flair = load_nifti(source / "flair.nii.gz")
    affine, shape = flair.affine, flair.shape[:3]
    regions = np.rint(load_nifti(source / "labels" / "regions.nii.gz", kind="labelmap").data
                      ).astype(np.int16)
    pred = root / "pred" / SUBJECT
    pred.mkdir(parents=True)
    save_nifti(regions, affine, pred / "regions_dseg.nii.gz", dtype=np.int16)
    inside = np.argwhere(np.isin(regions, [REGION_CODES[n] for n in
                                          ("ventricles", "basal_ganglia", "thalamus")]))
    midline_x = float((affine @ [*inside.mean(axis=0), 1.0])[0])
    markers, masks = {}, {}
    for task in ("wmh", "rssi", "lacune"):
        mask = load_nifti(source / "labels" / f"{task}.nii.gz", kind="labelmap").data == 1
        masks[task] = mask
        save_nifti(mask.astype(np.uint8), affine, pred / f"{task}_mask.nii.gz", dtype=np.uint8)
        labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        findings = []
        for index in range(1, n + 1):
            voxel = np.asarray(ndimage.center_of_mass(labels == index))
            world = (affine @ [*voxel, 1.0])[:3]
            code = regions[tuple(np.rint(voxel).astype(int))]
            findings.append({"index": index, "world_mm": world.tolist(), "voxel": voxel.tolist(),
                             "confidence": 0.9, "region": REGION_NAMES[int(code)],
                             "side": _side(world[0], midline_x),
                             "volume_mm3": float(np.sum(labels == index) * abs(
                                 np.linalg.det(affine[:3, :3])))})
        markers[task] = {"kind": "segmentation", "count": n, "findings": findings}
    # Points: the true EPVS; no true microbleed in this subject, one planted false positive in
    # the white matter, and the place where the test adds a "missed" microbleed.
    wm = np.argwhere(regions == REGION_CODES["deep_wm"])
    planted_voxel = wm[len(wm) // 3].astype(float)
    missed_voxel = wm[2 * len(wm) // 3].astype(float)
    points = {"epvs": read_points(source / "labels" / "epvs.csv"),
              "cmb": (affine @ [*planted_voxel, 1.0])[None, :3]}
    sides = {}
    for task, world in points.items():
        rows, findings = [], []
        sides[task] = [_side(w[0], midline_x) for w in world]
        for index, (w, side) in enumerate(zip(world, sides[task]), start=1):
            voxel = np.linalg.solve(affine, [*w, 1.0])[:3]
            code = regions[tuple(np.clip(np.rint(voxel).astype(int), 0, np.asarray(shape) - 1))]
            region = REGION_NAMES[int(code)]
            findings.append({"index": index, "world_mm": list(map(float, w)),
                             "voxel": voxel.tolist(), "confidence": 0.6, "region": region,
                             "side": side})
            rows.append([index, *(f"{v:.4f}" for v in w), "0.6", region, side])
        with open(pred / f"{task}_points.tsv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["index", "x", "y", "z", "confidence", "region", "side"])
            writer.writerows(rows)
        markers[task] = {"kind": "detection", "count": len(world), "findings": findings}
    m, _ = measure(masks, points, sides, regions, affine)
    scores = {name: score(name, m) for name in RULE_SETS}
    report = {
        "schema": "csvdnet-report", "created": "2026-12-07T00:00:00+00:00", "subject": SUBJECT,
        "inputs": {"reference": "flair", "sequences": {
            s: str(source / f"{s}.nii.gz") for s in ("flair", "t1", "t2", "swi", "dwi")}},
        "model": {"id": "review-fixture", "sha256": "0" * 64},
        "reference_grid": {"shape": list(shape), "affine": affine.tolist()},
        "markers": markers,
        "measurements": {"fazekas_pv": m.fazekas_pv, "fazekas_deep": m.fazekas_deep,
                         "epvs_bg_grade": m.epvs_bg_grade, "cmb_count": m.cmb_count,
                         "lacune_count": m.lacune_count, "rssi_count": m.rssi_count},
        "scores": {name: {"total": s.total} for name, s in scores.items()},
    }
    (pred / "report.json").write_text(json.dumps(report), encoding="utf-8")
    (pred / "report.html").write_text(  # the page's frame as render_html writes it
        f"<!DOCTYPE html>\n<html><body><main>\n<h1>{SUBJECT}</h1>\n{REVIEW_MARK}\n"
        "</main></body></html>\n", encoding="utf-8")
    return {"cohort": cohort, "pred": root / "pred", "affine": affine,
            "missed_voxel": missed_voxel, "planted_voxel": planted_voxel,
            "model_totals": {name: s.total for name, s in scores.items()}, "measurements": m}
