"""Oracle rating benchmark (issue 18): predict's real post-network code on the ground truth.

Each subject of a labelled cohort is prepared as ``csvdnet predict`` prepares it
(:meth:`Predictor.prepare`), its network outputs are replaced by what a perfect network would
give (:func:`csvdnet.inference.oracle.oracle_outputs`: the true masks on the working grid,
heatmaps rendered at the true points with the model's sigma, score logits of the true total),
and :meth:`Predictor.finish` rates them: inversion, thresholds, peaks, regions, measurement and
rules, exactly as predict. The network is loaded with the model but never run. ``--out`` is
written by :func:`csvdnet.inference.cohort.predict_cohort`, as ``csvdnet predict`` writes it
(subject folders, ``scores.tsv``, ``errors.tsv``; every subject redone), so any scorer of
predict's outputs scores it (the "network" time its reports record is the oracle's rendering).
Every rating this run gets wrong is lost after the network.

It then compares ``scores.tsv`` with the cohort's ``ratings.csv``: exact agreement of each
Staals point (subject level), of each measurement (Fazekas PV / deep, basal ganglia EPVS grade
and its raw count, CMB, lacune and RSSI counts) and of the Staals total (with quadratic kappa,
:func:`csvdnet.evaluation.agreement.ordinal_agreement`), the confusion of each graded quantity,
the goals of issue 18, and one line per subject naming what disagreed (truth -> oracle) and,
with the cohort's own region map, where from (:func:`causes`). The
true raw basal ganglia EPVS count is counted from the EPVS label's points and sides on the
cohort's own region map (``labels/regions``) by the synthetic truth's definition
(:func:`csvdnet.synth.ratings.epvs_bg_count`); without those it is left out. The Markdown
summary is printed and written to ``OUT/oracle_rating.md``, every number to
``OUT/oracle_rating.json``.

Exit status: 0; 1 when a subject failed or has no ratings; 2 for an unusable cohort or model.

Usage::

    csvdnet synth --profile demo --subjects 40 --seed 41 --out /tmp/demo41
    python benchmarks/bench_rating.py --cohort /tmp/demo41/manifest.csv \\
        --model saved_models/csvdnet-synthetic/2 --out /tmp/oracle-demo41 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import csv
import datetime
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from csvdnet import __version__  # noqa: E402
from csvdnet.errors import CsvdnetInputError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402
from bench_accuracy import _confusion, cohort_synthesis, git_commit, load_average  # noqa: E402

RESULTS_FORMAT = "csvdnet-bench-rating"
RESULTS_VERSION = 1
GRADES = {"fazekas_pv": 4, "fazekas_deep": 4, "epvs_bg_grade": 5, "total": 5}
"""Graded quantities and their number of classes."""
COUNTS = ("epvs_bg_count", "cmb_count", "lacune_count", "rssi_count")
POINTS = ("lacunes", "microbleeds", "wmh", "epvs")
GOALS = (("total", "Staals total exact", 0.97),
         *((f"point_{p}", f"Staals {p} point exact", 0.98) for p in POINTS),
         ("epvs_bg_grade", "basal ganglia EPVS grade exact", 0.95),
         ("lacune_count", "lacune count exact", 0.95),
         ("fazekas_pv", "Fazekas PV exact", 0.90), ("fazekas_deep", "Fazekas deep exact", 0.90))
"""Issue 18's goals: (key, what, the least exact fraction)."""


class OracleRater:
    """What :func:`~csvdnet.inference.cohort.predict_cohort` runs in place of the predictor:
    its network step (:meth:`run_network`) is :func:`~csvdnet.inference.oracle.oracle_outputs`
    of the subject last prepared with that array; everything else (``prepare``, ``finish``,
    model identity, rule sets, options) is the predictor's, so ``OUT`` is the model's as
    ``csvdnet predict`` writes it, whichever of ``predict`` or the stages the cohort code calls.
    """

    def __init__(self, predictor: Any, sigma_mm: float, subvoxel: bool) -> None:
        self.predictor, self.sigma_mm, self.subvoxel = predictor, sigma_mm, subvoxel
        self.missing: dict[str, list[str]] = {}
        self._prepared: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def prepare(self, subject: Any) -> Any:
        from csvdnet.inference.oracle import missing_tasks

        prepared = self.predictor.prepare(subject)
        with self._lock:
            self._prepared[id(prepared.array)] = prepared
            self.missing[subject.id] = list(missing_tasks(subject.labels))
        return prepared

    def run_network(self, array: Any) -> dict[str, np.ndarray]:
        from csvdnet.inference.oracle import oracle_outputs

        with self._lock:
            prepared = self._prepared.pop(id(array), None)
        if prepared is None:  # never fall back on the real network
            raise RuntimeError("the oracle's network step got an array no prepare() returned")
        ratings = prepared.subject.ratings
        return oracle_outputs(prepared, prepared.subject.labels, heatmap_sigma_mm=self.sigma_mm,
                              total=None if ratings is None else ratings.total_score,
                              score_classes=self.predictor.score_classes,
                              subvoxel=self.subvoxel)

    def predict(self, subject: Any) -> Any:
        prepared = self.prepare(subject)
        return self.predictor.finish(prepared, self.run_network(prepared.array), 0.0)


def with_points(row: dict[str, int | None]) -> dict[str, int | None]:
    """``row`` with its four Staals points ``point_<name>`` (the rules of
    :mod:`csvdnet.scoring`), when the quantities they read are all there."""
    from csvdnet.scoring import wmh_point

    pv, deep, grade, cmb, lacunes = (row.get(n) for n in ("fazekas_pv", "fazekas_deep",
                                                          "epvs_bg_grade", "cmb_count",
                                                          "lacune_count"))
    if None not in (pv, deep, grade, cmb, lacunes):
        row.update(point_lacunes=int(lacunes >= 1), point_microbleeds=int(cmb >= 1),
                   point_wmh=int(wmh_point(pv, deep)), point_epvs=int(grade >= 2))
    return row


def _points_file(path: Path) -> tuple[np.ndarray, list[str]]:
    """World points and sides of a points CSV / TSV (``x, y, z, side``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))
    world = np.array([[float(r[a]) for a in "xyz"] for r in rows], np.float64).reshape(-1, 3)
    return world, [r.get("side", "") for r in rows]


def true_epvs_bg_count(subject: Any) -> int | None:
    """The true raw basal ganglia EPVS count (module doc), None without points, sides or
    region map."""
    from csvdnet.io import load_nifti
    from csvdnet.synth.ratings import epvs_bg_count

    path, regions = subject.labels.get("epvs"), subject.labels.get("regions")
    if path is None or regions is None or Path(path).suffix != ".csv":
        return None
    world, sides = _points_file(Path(path))
    if any(side not in ("L", "R", "M") for side in sides):
        return None
    region_map = load_nifti(regions, kind="labelmap")
    return int(epvs_bg_count(world, sides, np.asarray(region_map.data),
                             np.asarray(region_map.affine, np.float64)))


def truth_row(subject: Any) -> dict[str, int | None] | None:
    """The subject's true values by the names of :func:`oracle_row`, None when unrated."""
    r = subject.ratings
    if r is None or any(v is None for v in (r.fazekas_pv, r.fazekas_deep, r.epvs_bg_grade,
                                            r.cmb_count, r.lacune_count, r.total_score)):
        return None
    return with_points({"fazekas_pv": r.fazekas_pv, "fazekas_deep": r.fazekas_deep,
                        "epvs_bg_grade": r.epvs_bg_grade,
                        "epvs_bg_count": true_epvs_bg_count(subject), "cmb_count": r.cmb_count,
                        "lacune_count": r.lacune_count, "rssi_count": r.rssi_count,
                        "total": r.total_score})


def oracle_row(scores: Mapping[str, str]) -> dict[str, int | None]:
    """One ``scores.tsv`` row as numbers (empty cell: None)."""
    def number(name: str) -> int | None:
        return int(scores[name]) if scores.get(name, "") != "" else None

    row = {name: number(name) for name in ("fazekas_pv", "fazekas_deep", "epvs_bg_grade",
                                           "epvs_bg_count", "cmb_count", "lacune_count",
                                           "rssi_count")}
    row["total"] = number("staals_total")
    return with_points(row)


def agreement(pairs: list[tuple[dict, dict]]) -> dict[str, dict[str, Any]]:
    """Per quantity: n, exact fraction, and kappa + confusion (grades, points) or the mean and
    mean absolute difference oracle - truth (counts)."""
    from csvdnet.evaluation.agreement import ordinal_agreement

    out: dict[str, dict[str, Any]] = {}
    names = [*GRADES, *(f"point_{p}" for p in POINTS), *COUNTS]
    for name in names:
        both = [(t[name], o.get(name)) for t, o in pairs
                if t.get(name) is not None and o.get(name) is not None]
        true, pred = np.array([b[0] for b in both]), np.array([b[1] for b in both])
        entry: dict[str, Any] = {"n": len(both),
                                 "exact": float(np.mean(true == pred)) if both else None,
                                 "exact_n": int(np.sum(true == pred))}
        if name in GRADES or name.startswith("point_"):
            classes = GRADES.get(name, 2)
            graded = ordinal_agreement(np.clip(true, 0, classes - 1),
                                       np.clip(pred, 0, classes - 1), classes)
            entry.update(kappa_quadratic=graded["kappa_quadratic"],
                         confusion=graded["confusion"])
        elif both:
            entry.update(mean_difference=float(np.mean(pred - true)),
                         mean_absolute_difference=float(np.mean(np.abs(pred - true))))
        out[name] = entry
    return out


def diff_line(subject: str, truth: Mapping[str, Any], oracle: Mapping[str, Any]) -> str:
    """``subject: name truth->oracle, ...`` for what disagreed ('all exact' when nothing)."""
    names = ["total", *(f"point_{p}" for p in POINTS), "fazekas_pv", "fazekas_deep",
             "epvs_bg_grade", *COUNTS]
    parts = [f"{n} {truth[n]}->{oracle.get(n)}" for n in names
             if truth.get(n) is not None and truth[n] != oracle.get(n)]
    return f"{subject}: " + (", ".join(parts) if parts else "all exact")


def _unmatched(true: np.ndarray, found: np.ndarray, radius_mm: float = 1.5) -> list[int]:
    """Indices of the true points with no found point within ``radius_mm``."""
    if not len(found):
        return list(range(len(true)))
    distance = np.linalg.norm(true[:, None, :] - found[None, :, :], axis=-1).min(axis=1)
    return [int(i) for i in np.flatnonzero(distance > radius_mm)]


def causes(subject: Any, folder: Path, truth: Mapping[str, Any], oracle: Mapping[str, Any],
           bids: bool, lacune_floor_mm3: float = 0.0) -> list[str]:
    """Where each disagreement comes from, read from the written outputs against the truth's
    own region map (``labels/regions``): the oracle's masks / points rated on the true regions,
    the true points on the oracle's (registered) regions, lacunes lost or added."""
    from csvdnet.inference.measure import wmh_features
    from csvdnet.inference.outputs import output_name
    from csvdnet.io import load_nifti
    from csvdnet.scoring import fazekas_deep_from, fazekas_pv_from
    from csvdnet.synth.ratings import epvs_bg_count
    from scipy import ndimage

    labels, sid = subject.labels, subject.id
    if "regions" not in labels:
        return []
    regions = load_nifti(labels["regions"], kind="labelmap")
    true_regions, affine = np.asarray(regions.data), np.asarray(regions.affine, np.float64)

    def written(task: str | None, kind: str, suffix: str = "") -> Path:
        return folder / (output_name(sid, bids, task, kind) + suffix)

    notes = []
    if "wmh" in labels and any(truth[n] != oracle.get(n) for n in ("fazekas_pv", "fazekas_deep")):
        grades = []
        for name, mask, where in (("oracle mask", written("wmh", "mask"), true_regions),
                                  ("true mask", labels["wmh"], true_regions)):
            f = wmh_features(np.asarray(load_nifti(mask, kind="mask").data), where, affine)
            grades.append(f"{name} PV {fazekas_pv_from(f)} deep {fazekas_deep_from(f)} "
                          f"(reach {f.pv_reach_mm:.1f} mm, lining {f.pv_lining_fraction:.2f})")
        notes.append("WMH on true regions: " + "; ".join(grades))
    if ("epvs" in labels and str(labels["epvs"]).endswith(".csv")
            and truth.get("epvs_bg_count") != oracle.get("epvs_bg_count")):
        true_world, true_sides = _points_file(Path(labels["epvs"]))
        found_world, found_sides = _points_file(written("epvs", "points"))
        registered = load_nifti(written(None, "regions_dseg", ".nii.gz"), kind="labelmap")
        on_registered = epvs_bg_count(true_world, true_sides, np.asarray(registered.data),
                                      np.asarray(registered.affine, np.float64))
        on_true = epvs_bg_count(found_world, found_sides, true_regions, affine)
        lost = _unmatched(true_world, found_world)
        apart = [float(np.sort(np.linalg.norm(true_world - true_world[i], axis=1))[1])
                 for i in lost] if len(true_world) > 1 else []
        near = f" ({min(apart):.1f}-{max(apart):.1f} mm from another true EPVS)" if apart else ""
        notes.append(f"EPVS peaks {len(found_world)} of {len(true_world)} true, {len(lost)} true "
                     f"lost{near}; BG count of "
                     f"the oracle's peaks on true regions {on_true}, of the true points on "
                     f"the registered regions {on_registered}")
    if "lacune" in labels and truth["lacune_count"] != oracle.get("lacune_count"):
        true_mask = np.asarray(load_nifti(labels["lacune"], kind="mask").data) > 0
        found = np.asarray(load_nifti(written("lacune", "mask"), kind="mask").data) > 0
        voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
        lost = []
        components, n = ndimage.label(true_mask, np.ones((3, 3, 3)))
        for k in range(1, n + 1):
            if not found[components == k].any():
                volume = np.count_nonzero(components == k) * voxel_mm3
                floor = " (< the model's floor)" if volume < lacune_floor_mm3 else ""
                lost.append(f"{volume:.0f}{floor}")
        found_components, m = ndimage.label(found, np.ones((3, 3, 3)))
        extra = sum(not true_mask[found_components == k].any() for k in range(1, m + 1))
        notes.append(f"lacunes lost (mm3): {', '.join(lost) or 'none'}; extra: {extra} (model's "
                     f"floor {lacune_floor_mm3:g} mm3)")
    return notes


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _neighbourhoods(run: Mapping[str, Any]) -> str:
    """The peak neighbourhood of each detection task, as the report names it."""
    peaks = run.get("peak_neighbourhood") or {"cmb": "cube", "epvs": "cube"}
    return ", ".join(f"{task}: {value}" for task, value in peaks.items())


def report(record: Mapping[str, Any]) -> str:
    """The Markdown summary of a results record."""
    a, run = record["agreement"], record["run"]
    synthesis = record["cohort"]["synthesis"]
    made = (f"synthetic: profile {synthesis['profile']}, seed {synthesis['seed']}" if synthesis
            else "not synthetic")
    lines = [f"# Oracle rating benchmark ({record['date']})", "",
             f"- model: `{record['model']}`; heatmaps: {run['heatmaps']}, sigma "
             f"{run['heatmap_sigma_mm']} mm ({run['heatmap_sigma_source']}); peaks found in "
             f"{_neighbourhoods(run)}; the network not run",
             f"- cohort: `{record['cohort']['path']}` ({made}); "
             f"{record['subjects']['compared']} subjects compared, failed: "
             f"{record['subjects']['failed'] or 'none'}, unrated: "
             f"{record['subjects']['unrated'] or 'none'}",
             f"- missing labels (output zeros): {record['missing_labels'] or 'none'}",
             f"- csvdnet {record['csvdnet_version']}, commit {record['git_commit']}; "
             f"{record['machine']}; {run['seconds']:.0f} s", "",
             "| quantity | exact | n | quadratic kappa | mean diff (oracle - truth) | MAE |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, e in a.items():
        exact = "-" if e["exact"] is None else f"{e['exact_n']}/{e['n']} ({e['exact']:.3f})"
        lines.append(f"| {name} | {exact} | {e['n']} | {_cell(e.get('kappa_quadratic'))} | "
                     f"{_cell(e.get('mean_difference'), 2)} | "
                     f"{_cell(e.get('mean_absolute_difference'), 2)} |")
    lines += ["", "Goals of issue 18 (the goals are for >= 40 subjects of an unseen seed):", "",
              "| goal | exact | goal | met |", "|---|---:|---:|---|"]
    for row in record["goals"]:
        lines.append(f"| {row['what']} | {_cell(row['value'])} | >= {row['goal']:.2f} | "
                     f"{'-' if row['met'] is None else ('yes' if row['met'] else 'no')} |")
    for name in [*GRADES, *(f"point_{p}" for p in POINTS)]:
        lines += _confusion(f"{name}", a[name].get("confusion") if a[name]["n"] else None)
    lines += ["", "Per subject (truth->oracle):", ""]
    lines += [f"- {line}" for line in record["diffs"]]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Rate the cohort's truth into ``args.out`` and compare; the results record."""
    import time

    from csvdnet.inference.cohort import open_input, predict_cohort, progress_printer
    from csvdnet.inference.oracle import model_heatmap_sigma
    from csvdnet.inference.outputs import subject_dir
    from csvdnet.inference.predictor import Predictor
    from csvdnet.scoring import epvs_grade

    started = time.perf_counter()
    out = Path(args.out)
    predictor = Predictor.from_dir(args.model)
    if args.peak_neighbourhood != "model":
        # What the layer does with heatmaps it can resolve, whatever this model's network needs.
        predictor.info = dataclasses.replace(predictor.info, peak_neighbourhood={
            task: args.peak_neighbourhood for task in ("cmb", "epvs")})
    peaks = {task: predictor.info.peak_neighbourhood.get(task, "cube") for task in ("cmb", "epvs")}
    sigma, sigma_source = model_heatmap_sigma(args.model)
    subjects, problems, bids = open_input(args.cohort, predictor.info.channels,
                                          predictor.preprocess_cfg.reference)
    rater = OracleRater(predictor, sigma, args.heatmaps == "subvoxel")
    summary = predict_cohort(rater, subjects, out, bids=bids, source=Path(args.cohort),
                             jobs=args.jobs, overwrite=True, problems=problems,
                             on_subject=progress_printer(len(subjects) + len(problems)))
    with open(out / "scores.tsv", newline="", encoding="utf-8") as handle:
        scores = {row["subject"]: row for row in csv.DictReader(handle, delimiter="\t")}
    pairs, diffs, unrated, rows = [], [], [], {}
    for subject in subjects:
        if subject.id not in scores:
            continue
        truth, oracle = truth_row(subject), oracle_row(scores[subject.id])
        rows[subject.id] = {"truth": truth, "oracle": oracle,
                            "missing_labels": rater.missing.get(subject.id, [])}
        if truth is None:
            unrated.append(subject.id)
            continue
        pairs.append((truth, oracle))
        why = causes(subject, subject_dir(out, subject.id, bids), truth, oracle, bids,
                     predictor.info.min_lesion_mm3.get("lacune", 0.0))
        if truth["epvs_bg_count"] is not None and (
                epvs_grade(truth["epvs_bg_count"]) != truth["epvs_bg_grade"]):
            why.append(f"the true BG EPVS count {truth['epvs_bg_count']} grades "
                       f"{epvs_grade(truth['epvs_bg_count'])}, ratings.csv says "
                       f"{truth['epvs_bg_grade']}: made under another count definition?")
        rows[subject.id]["causes"] = why
        diffs.append("; ".join([diff_line(subject.id, truth, oracle), *why]))
    a = agreement(pairs)
    goals = [{"key": key, "what": what, "goal": goal, "value": a[key]["exact"],
              "met": None if a[key]["exact"] is None else a[key]["exact"] >= goal}
             for key, what, goal in GOALS]
    return {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "csvdnet_version": __version__, "git_commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *argv]),
        "machine": describe_machine(), "load_average_end": load_average(),
        "model": str(args.model), "out": str(out),
        "cohort": {"path": str(args.cohort), "synthesis": cohort_synthesis(Path(args.cohort))},
        "run": {"heatmaps": args.heatmaps, "heatmap_sigma_mm": sigma, "peak_neighbourhood": peaks,
                "heatmap_sigma_source": sigma_source, "jobs": args.jobs,
                "seconds": time.perf_counter() - started},
        "subjects": {"input": len(subjects) + len(problems), "compared": len(pairs),
                     "failed": {**problems, **summary.failed}, "unrated": unrated},
        "missing_labels": {s: m for s, m in rater.missing.items() if m},
        "agreement": a, "goals": goals, "diffs": diffs, "per_subject": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", required=True, help="labelled cohort: folder or manifest")
    parser.add_argument("--model", required=True,
                        help="training run or exported model: preprocessing, thresholds, rules")
    parser.add_argument("--out", required=True, help="output folder, as csvdnet predict --out")
    parser.add_argument("--jobs", type=int, default=1, help="subjects in flight at once")
    parser.add_argument("--heatmaps", choices=("subvoxel", "nearest"), default="subvoxel",
                        help="Gaussians centred on the true point, or on its nearest working "
                             "voxel as training draws them")
    parser.add_argument("--peak-neighbourhood", choices=("model", "cube", "faces"),
                        default="model",
                        help="what a heatmap peak is the maximum of: the model's "
                             "inference.peak_neighbourhood (default), or this for CMB and EPVS")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    try:
        record = run(args, argv)
    except CsvdnetInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = report(record)
    out = Path(args.out)
    (out / "oracle_rating.md").write_text(text, encoding="utf-8")
    (out / "oracle_rating.json").write_text(json.dumps(record, indent=1) + "\n",
                                            encoding="utf-8")
    print(text)
    return 1 if record["subjects"]["failed"] or record["subjects"]["unrated"] else 0


if __name__ == "__main__":
    sys.exit(main())
