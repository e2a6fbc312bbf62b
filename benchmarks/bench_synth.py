"""Benchmark of the synthetic cohort generator: speed per profile, score and lesion distributions.

Prints a markdown report to stdout (for benchmarks/RESULTS.md)::

    python benchmarks/bench_synth.py                      # all profiles, ~3 min on 2 cores
    python benchmarks/bench_synth.py --profiles tiny --cohort 30
    python benchmarks/bench_synth.py --profiles demo --cohort 0 --preview /tmp/synth_preview.png

Timings are per subject (median over the subjects generated), wall clock and CPU time of this
process, with the atlas already built (its one-off build time is reported separately). The
score and lesion statistics come from a ``tiny`` cohort (distribution of the plan and of what
was written) and from the ``demo`` subjects (lesion sizes on clinical-like grids).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import cpu_model
from csvdnet.atlas import load_atlas
from csvdnet.io import load_nifti, read_ratings
from csvdnet.synth import PROFILES, WORKING_SPACING_MM, generate_subject, subject_ids, write_preview
from csvdnet.synth.cohort import generate_cohort
from csvdnet.synth.ratings import check_prevalence

# Published ranges (STRIVE, Wardlaw et al. Lancet Neurol 2013; Staals et al. Neurology 2014).
PUBLISHED = {
    "lacune axial diameter (mm)": (3.0, 15.0),
    "RSSI axial diameter (mm)": (0.0, 20.0),
    "CMB diameter on SWI (mm)": (2.0, 10.0),
    "EPVS width (mm)": (0.0, 3.0),
}
SUBJECTS_PER_PROFILE = {"tiny": 10, "demo": 3, "clinical": 3}


def _time_profile(name: str, n: int, seed: int, workdir: Path) -> dict:
    profile = PROFILES[name]
    start = time.perf_counter()
    load_atlas(profile.atlas_mm)
    atlas_s = time.perf_counter() - start
    prevalence = check_prevalence(None)
    walls, cpus = [], []
    for index in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        generate_subject(workdir / name / subject_ids(n)[index], profile, seed, index, prevalence)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return dict(profile=profile, atlas_s=atlas_s, wall=statistics.median(walls),
                cpu=statistics.median(cpus), folder=workdir / name)


def _grid_summary(folder: Path) -> str:
    subject = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    parts = []
    for sequence in ("flair", "t1", "t2", "swi", "dwi"):
        image = load_nifti(subject / f"{sequence}.nii.gz")
        spacing = "x".join(f"{s:g}" for s in np.round(image.spacing, 2))
        parts.append(f"{sequence} {spacing} ({'x'.join(map(str, image.shape))})")
    return ", ".join(parts)


def _lesion_sizes(folders: list[Path]) -> dict[str, list[float]]:
    """Sizes of what was planted, from synth.json (shapes) and the point CSVs."""
    sizes: dict[str, list[float]] = {key: [] for key in PUBLISHED}
    sizes["EPVS length (mm)"] = []
    for folder in folders:
        for subject in sorted(p for p in folder.iterdir() if p.is_dir()):
            record = json.loads((subject / "synth.json").read_text())
            for key, shapes in (("lacune axial diameter (mm)", record["lacune_axes_mm"]),
                                ("RSSI axial diameter (mm)", record["rssi_axes_mm"])):
                sizes[key] += [max(axes[:2]) for axes in shapes]
            for name, columns in (("cmb", {"diameter_mm": "CMB diameter on SWI (mm)"}),
                                  ("epvs", {"diameter_mm": "EPVS width (mm)",
                                            "length_mm": "EPVS length (mm)"})):
                with (subject / "labels" / f"{name}.csv").open(newline="") as f:
                    for row in csv.DictReader(f):
                        for column, key in columns.items():
                            sizes[key].append(float(row[column]))
    return sizes


def _wmh_volumes(folder: Path) -> dict[int, list[float]]:
    """WMH volume (ml) by the larger of the two Fazekas grades."""
    ratings = read_ratings(folder / "ratings.csv")
    volumes: dict[int, list[float]] = {}
    for subject, rating in ratings.items():
        mask = load_nifti(folder / subject / "labels" / "wmh.nii.gz", kind="mask")
        voxel_ml = abs(np.linalg.det(mask.affine[:3, :3])) / 1000
        grade = max(rating.fazekas_pv, rating.fazekas_deep)
        volumes.setdefault(grade, []).append(float((mask.data > 0.5).sum() * voxel_ml))
    return volumes


def _timing_section(timings: list[dict]) -> list[str]:
    lines = ["### Time per subject (median; atlas already built)", "",
             "| profile | anatomy grid | wall s | CPU s | atlas build s "
             "| native grids (mm, voxels) |",
             "|---|---|---|---|---|---|"]
    for t in timings:
        p = t["profile"]
        lines.append(f"| {p.name} | {p.anatomy_mm:g} mm (atlas {p.atlas_mm} mm) | {t['wall']:.2f} "
                     f"| {t['cpu']:.2f} | {t['atlas_s']:.1f} | {_grid_summary(t['folder'])} |")
    return lines + ["", "Working spacing proposed for the shipped model: "
                        f"{WORKING_SPACING_MM:g} mm isotropic.", ""]


def _score_section(cohort: Path) -> list[str]:
    ratings = read_ratings(cohort / "ratings.csv")
    plans = [json.loads((cohort / s / "synth.json").read_text())["plan"] for s in ratings]
    scores = np.bincount([r.total_score for r in ratings.values()], minlength=5)
    targets = np.bincount([p["target_score"] for p in plans], minlength=5)
    lines = [f"### Total SVD score of a {len(ratings)}-subject tiny cohort "
             "(default balanced prevalence)", "",
             "| score | 0 | 1 | 2 | 3 | 4 |", "|---|---|---|---|---|---|",
             "| planned | " + " | ".join(str(v) for v in targets) + " |",
             "| written (recounted) | " + " | ".join(str(v) for v in scores) + " |", ""]
    rated = list(ratings.values())
    positive = {"lacune >= 1": [r.lacune_count > 0 for r in rated],
                "CMB >= 1": [r.cmb_count > 0 for r in rated],
                "WMH point (PV 3 or deep >= 2)": [r.fazekas_pv == 3 or r.fazekas_deep >= 2
                                                  for r in rated],
                "BG-EPVS grade >= 2": [r.epvs_bg_grade >= 2 for r in rated],
                "RSSI >= 1 (not scored)": [r.rssi_count > 0 for r in rated]}
    lines += ["| marker positive | share of subjects |", "|---|---|"]
    lines += [f"| {k} | {np.mean(v):.0%} |" for k, v in positive.items()]
    lines += ["", "| max Fazekas grade | subjects | WMH volume ml, median (min-max) |",
              "|---|---|---|"]
    for grade, volumes in sorted(_wmh_volumes(cohort).items()):
        lines.append(f"| {grade} | {len(volumes)} | {np.median(volumes):.1f} "
                     f"({min(volumes):.1f}-{max(volumes):.1f}) |")
    return lines + [""]


def _size_section(title: str, folders: list[Path]) -> list[str]:
    lines = [f"### Lesion sizes vs published ranges ({title})", "",
             "| measure | n | min | median | max | published | inside |",
             "|---|---|---|---|---|---|---|"]
    for key, values in _lesion_sizes(folders).items():
        if not values:
            continue
        low, high = PUBLISHED.get(key, (None, None))
        inside = f"{np.mean([(low <= v <= high) for v in values]):.0%}" if low is not None else "-"
        published = f"{low:g}-{high:g}" if low is not None else "-"
        lines.append(f"| {key} | {len(values)} | {min(values):.1f} | {np.median(values):.1f} | "
                     f"{max(values):.1f} | {published} | {inside} |")
    return lines + [""]


def _markdown(timings: list[dict], cohort: Path | None, size_folders: list[Path]) -> str:
    lines = [f"## Synthetic cohort generator ({datetime.date.today().isoformat()})", "",
             f"Machine: {platform.node() or 'unknown'}, "
             f"{cpu_model()}, {os.cpu_count()} CPU cores, load "
             f"average {os.getloadavg()[0]:.1f} at the end (shared machine); "
             f"Python {platform.python_version()}, numpy {np.__version__}.", ""]
    if timings:
        lines += _timing_section(timings)
    if cohort is not None:
        lines += _score_section(cohort)
        lines += _size_section("tiny cohort; its lacunes are >= ~6 mm to show on 3.5-4.5 mm voxels",
                               [cohort])
    if size_folders:
        names = " + ".join(f.name for f in size_folders)
        lines += _size_section(f"{names} subjects timed above", size_folders)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=list(SUBJECTS_PER_PROFILE),
                        choices=list(PROFILES))
    parser.add_argument("--cohort", type=int, default=60,
                        help="tiny cohort size for the distributions (0: skip)")
    parser.add_argument("--seed", type=int, default=2014)
    parser.add_argument("--preview", type=Path, help="write a preview PNG of a demo subject here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        workdir = Path(tmp)
        timings = [_time_profile(name, SUBJECTS_PER_PROFILE[name], args.seed, workdir)
                   for name in args.profiles]
        cohort = None
        if args.cohort:
            cohort = workdir / "cohort"
            generate_cohort(cohort, args.cohort, args.seed, profile="tiny", progress=False)
        size_folders = [t["folder"] for t in timings if t["profile"].name != "tiny"]
        print(_markdown(timings, cohort, size_folders))
        if args.preview:
            # A demo subject with every scored marker (total score 4) shows them all.
            preview_cohort = workdir / "preview"
            generate_cohort(preview_cohort, 1, args.seed, profile="demo",
                            prevalence=(0, 0, 0, 0, 1), progress=False)
            write_preview(preview_cohort / subject_ids(1)[0], args.preview)
            print(f"Preview of a demo subject: {args.preview}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
