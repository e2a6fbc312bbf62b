"""EPVS peak finding on a model's own heatmaps: which peaks are findings (issue 25, item 2).

A model's EPVS heatmap is run once per subject of a labelled cohort (``Predictor.prepare`` and
``run_network``, exactly as ``csvdnet predict``; the working-grid heatmaps are kept in
``OUT/heatmaps/<subject>.npz``, reused by a later run with the same ``--out``), then each peak
rule of ``--variants`` is applied to the same heatmaps:

- the peak neighbourhood (``cube`` with 3 mm suppression or ``faces`` with 2.5 mm:
  :data:`csvdnet.inference.postprocess.PEAK_NEIGHBOURHOODS`), at the model's threshold;
- the ridge fraction (:func:`csvdnet.inference.postprocess.on_a_ridge`, a model's
  ``inference.peak_ridge``), with the basal ganglia exempt as predict exempts them (here on the
  cohort's TRUE region map, so the rule is measured apart from the registration), or
  ``NAME:all`` with nothing exempt.

For each: pooled TP / FP / FN and F1 matched as ``csvdnet evaluate`` matches EPVS (within
1.5 mm of the true centreline, one-to-one), how many false positives lie within 3 mm of an EPVS
already found (a second peak on one EPVS) or farther, and the basal ganglia count per subject
(peaks whose voxel of the true region map is basal ganglia, every slice, both sides) against the
true EPVS there: mean signed and absolute difference. The Markdown table is printed and written
to ``OUT/peaks.md``, every number to ``OUT/peaks.json``.

Usage::

    csvdnet synth --profile demo --subjects 24 --seed 7 --out /tmp/heldout7
    python benchmarks/bench_peaks.py --cohort /tmp/heldout7/manifest.csv \\
        --model saved_models/csvdnet-synthetic/4 --out /tmp/peaks-m4 \\
        --variants cube cube:0.5 cube:0.5:all faces
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from csvdnet import __version__  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

NEAR_MM = 3.0
"""A false peak this close to an EPVS already found is a second peak on it."""


def parse_variant(text: str) -> tuple[str, float, bool]:
    """``NEIGHBOURHOOD[:RIDGE[:all]]`` -> (neighbourhood, ridge, basal ganglia exempt)."""
    from csvdnet.inference.postprocess import PEAK_NEIGHBOURHOODS

    parts = text.split(":")
    if parts[0] not in PEAK_NEIGHBOURHOODS or len(parts) > 3 or (
            len(parts) == 3 and parts[2] != "all"):
        raise argparse.ArgumentTypeError(f"{text!r}: NEIGHBOURHOOD[:RIDGE[:all]] with "
                                         f"NEIGHBOURHOOD one of {', '.join(PEAK_NEIGHBOURHOODS)}")
    try:
        ridge = float(parts[1]) if len(parts) > 1 else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the ridge must be a number") from None
    if not 0.0 <= ridge < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: the ridge must be in [0, 1)")
    return parts[0], ridge, len(parts) < 3


def cache_heatmaps(model: str, cohort: str, folder: Path) -> dict[str, Path]:
    """Each subject's EPVS heatmap on the working grid (with its affine, spacing and the
    model's threshold), computed once."""
    from csvdnet.inference.predictor import Predictor
    from csvdnet.io import read_cohort

    folder.mkdir(parents=True, exist_ok=True)
    subjects = list(read_cohort(cohort).subjects)
    paths = {s.id: folder / f"{s.id}.npz" for s in subjects}
    todo = [s for s in subjects if not paths[s.id].is_file()]
    if todo:
        predictor = Predictor.from_dir(model)
        for n, subject in enumerate(todo, 1):
            started = time.perf_counter()
            prepared = predictor.prepare(subject)
            heatmap = np.asarray(predictor.run_network(prepared.array)["epvs"])[0, ..., 0]
            tmp = paths[subject.id].with_suffix(".tmp.npz")
            np.savez_compressed(tmp, heatmap=heatmap.astype(np.float32),
                                affine=np.asarray(prepared.meta.working_affine, np.float64),
                                spacing=np.asarray(prepared.meta.spacing, np.float64),
                                threshold=float(predictor.info.thresholds["epvs"]))
            os.replace(tmp, paths[subject.id])
            print(f"heatmap {n}/{len(todo)} {subject.id} "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
    return paths


def truth(subject) -> tuple:
    """(true EPVS objects, region map, its affine) of a labelled subject, as evaluate loads
    them."""
    from csvdnet.evaluation.inputs import load_truth

    loaded = load_truth(subject)
    missing = [name for name, have in (("epvs", "epvs" in loaded.objects),
                                       ("regions", loaded.regions is not None)) if not have]
    if missing:
        raise SystemExit(f"{subject.id}: no usable {' or '.join(missing)} label "
                         f"({'; '.join(loaded.problems.values()) or 'absent'})")
    return loaded.objects["epvs"], loaded.regions, np.asarray(loaded.affine, np.float64)


def measure(variant: tuple[str, float, bool], heatmaps: dict, truths: dict) -> dict:
    """One peak rule over every subject."""
    from csvdnet.evaluation.points import match_detections, match_radius
    from csvdnet.inference.postprocess import (PEAK_MIN_DISTANCE_MM, find_peaks, off_ridges,
                                               on_a_ridge)
    from csvdnet.inference.regions import region_and_side

    def names(world: np.ndarray, regions: np.ndarray, affine: np.ndarray) -> np.ndarray:
        return np.asarray(region_and_side(world, regions, affine, np.eye(4))[0], dtype=object)

    neighbourhood, ridge, exempt_bg = variant
    tp = fp = fn = near = far = 0
    differences = []
    for subject, record in heatmaps.items():
        objects, regions, region_affine = truths[subject]
        heatmap, affine = record["heatmap"], record["affine"]
        points, values = find_peaks(heatmap, float(record["threshold"]),
                                    spacing=tuple(record["spacing"]),
                                    min_distance_mm=PEAK_MIN_DISTANCE_MM[neighbourhood],
                                    neighbourhood=neighbourhood)
        world = points @ affine[:3, :3].T + affine[:3, 3] if len(points) else np.zeros((0, 3))
        found = names(world, regions, region_affine)
        if ridge > 0.0:
            spacing = tuple(record["spacing"])
            # As predict drops them (off_ridges), or with nothing exempt.
            keep = (off_ridges(heatmap, points, values, ridge, spacing, found) if exempt_bg
                    else ~on_a_ridge(heatmap, points, values, ridge, spacing))
            world, found = world[keep], found[keep]
        radius, to_extent = match_radius("epvs", objects)
        matching = match_detections(world, objects, radius, to_extent)
        tp, fp, fn = (tp + matching.counts.tp, fp + matching.counts.fp,
                      fn + matching.counts.fn)
        if len(objects):
            distance = matching.distance
            for k in np.flatnonzero(~matching.predicted_matched):
                j = int(np.argmin(distance[k]))
                if distance[k, j] <= NEAR_MM and matching.true_matched[j]:
                    near += 1
                else:
                    far += 1
        else:
            far += int((~matching.predicted_matched).sum())
        true_bg = int(np.sum(names(objects.centres, regions, region_affine) == "basal_ganglia"))
        differences.append(int(np.sum(found == "basal_ganglia")) - true_bg)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"tp": tp, "fp": fp, "fn": fn, "f1": f1, "fp_second_peak": near, "fp_other": far,
            "bg_bias": float(np.mean(differences)),
            "bg_abs": float(np.mean(np.abs(differences)))}


def name(variant: tuple[str, float, bool]) -> str:
    neighbourhood, ridge, exempt_bg = variant
    if ridge == 0.0:
        return neighbourhood
    return f"{neighbourhood}, ridge {ridge:g}" + ("" if exempt_bg else ", basal ganglia too")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True, help="labelled cohort (synth): folder or "
                                                        "manifest.csv")
    parser.add_argument("--model", required=True, help="training run or exported model")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--variants", nargs="+", type=parse_variant,
                        default=[parse_variant(v) for v in
                                 ("cube", "cube:0.3", "cube:0.5", "cube:0.7", "cube:0.5:all",
                                  "faces")],
                        help="peak rules, NEIGHBOURHOOD[:RIDGE[:all]] (default: %(default)s)")
    args = parser.parse_args(argv)
    from csvdnet.io import read_cohort

    started = datetime.datetime.now(datetime.timezone.utc)
    paths = cache_heatmaps(args.model, args.cohort, args.out / "heatmaps")
    subjects = {s.id: s for s in read_cohort(args.cohort).subjects}
    heatmaps = {sid: dict(np.load(path)) for sid, path in sorted(paths.items())}
    truths = {sid: truth(subjects[sid]) for sid in heatmaps}
    rows = []
    for variant in args.variants:
        rows.append({"variant": name(variant), **measure(variant, heatmaps, truths)})
        print(rows[-1], flush=True)
    lines = [f"EPVS peak rules on `{args.model}`'s heatmaps, {len(heatmaps)} subjects of "
             f"`{args.cohort}` (csvdnet {__version__}; {describe_machine()}; "
             f"{started:%Y-%m-%d %H:%M} UTC). Matched as `csvdnet evaluate` matches EPVS; basal "
             f"ganglia on the true region map.", "",
             "| peak rule | TP | FP | FN | F1 | FP: second peak on a found EPVS / other | "
             "basal ganglia count - truth per subject: mean / mean abs |",
             "|---|---:|---:|---:|---:|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['tp']} | {row['fp']} | {row['fn']} | "
                     f"{row['f1']:.3f} | {row['fp_second_peak']} / {row['fp_other']} | "
                     f"{row['bg_bias']:+.2f} / {row['bg_abs']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "peaks.md").write_text(text, encoding="utf-8")
    (args.out / "peaks.json").write_text(json.dumps(
        {"model": args.model, "cohort": args.cohort, "subjects": len(heatmaps),
         "machine": describe_machine(), "started": started.isoformat(timespec="seconds"),
         "csvdnet": __version__, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
