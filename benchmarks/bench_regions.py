"""Regions and Fazekas rules on synthetic subjects: prints a markdown section for RESULTS.md.

1. Region maps against the true ``labels/regions.nii.gz`` on the FLAIR grid, per region (Dice,
   median over subjects), for each ``--regions-cohort`` (any profile; default: the seed-B demo
   cohort): the subject-specific map predict uses
   (:func:`csvdnet.inference.regions.place_regions`: affine + deformable template registration)
   and the affine map alone (:func:`~csvdnet.inference.regions.template_to_subject` +
   ``subject_regions``), each from the T1 and, with ``--flair``, from the FLAIR; wall and CPU
   seconds per subject of each. Beside them the synthetic warp's own linear part
   (``synth.json``), the best an affine could be expected to do, and the moments-only start
   (``atlas.world_to_mni_from_mask`` of the true brain mask).
2. Fazekas rule (:func:`csvdnet.scoring.fazekas_pv_from` / ``fazekas_deep_from``): features of
   the TRUE WMH labels of a calibration cohort (seed A), with its true region maps and with
   those of :func:`~csvdnet.inference.regions.place_regions` (as predict has them), give the
   thresholds that separate its planted grades best (printed, to compare with the constants in
   ``csvdnet.scoring``); the constants are then scored on another cohort (seed B): confusion
   matrices with the true region maps and with the registered ones (T1). ``--no-fazekas``
   skips this part (and the two 40-subject cohorts it needs).

Usage::

    python benchmarks/bench_regions.py --work /tmp/bench_regions [--subjects 6] [--cal 40]
    python benchmarks/bench_regions.py --work /tmp/w --no-fazekas --subjects 12 \\
        --regions-cohort /tmp/demo-seed31 --regions-cohort /tmp/clinical-seed32

Cohorts are generated under ``--work`` (demo profile; reused when already there); a
``--regions-cohort`` must exist (``csvdnet synth --profile ...``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

from csvdnet.atlas import REGION_NAMES, load_atlas, world_to_mni_from_mask  # noqa: E402
from csvdnet.inference.measure import wmh_features  # noqa: E402
from csvdnet.inference.regions import (place_regions, subject_regions,  # noqa: E402
                                       template_to_subject)
from csvdnet.io import load_nifti  # noqa: E402
from csvdnet.scoring import (FAZEKAS_DEEP_LIMITS, FAZEKAS_PV_LIMITS,  # noqa: E402
                             fazekas_deep_from, fazekas_pv_from)
from csvdnet.synth import generate_cohort  # noqa: E402

_CODES = range(1, 10)


def _cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16") if f in flags)
    return "?"


def _cohort(work: Path, name: str, n: int, seed: int) -> Path:
    root = work / name
    if not (root / "ratings.csv").exists():
        generate_cohort(root, n, seed, profile="demo", progress=False)
    return root


def _array(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(path))  # nibabel: a WMH label may be empty (load_nifti refuses that)
    return np.asarray(image.dataobj), np.asarray(image.affine, dtype=np.float64)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def _timed(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def registration(root: Path, n: int, sequences: tuple[str, ...]) -> None:
    rows: dict[str, list[list[float]]] = {}
    seconds: dict[str, list[tuple[float, float]]] = {}
    place_regions(load_nifti(root / "sub-0000" / "t1.nii.gz"), None, (8, 8, 8), np.eye(4))
    profile = json.loads((root / "sub-0000" / "synth.json").read_text())["profile"]
    subjects = sorted(p.parent for p in root.glob("sub-*/synth.json"))[:n]
    for folder in subjects:
        flair = load_nifti(folder / "flair.nii.gz")
        true, _ = _array(folder / "labels" / "regions.nii.gz")
        record = json.loads((folder / "synth.json").read_text())
        brain, _ = _array(folder / "labels" / "brain_mask.nii.gz")
        maps = {"warp's linear part (oracle), affine": np.array(record["world_to_mni_affine"]),
                "moments of the true brain mask, affine": world_to_mni_from_mask(brain,
                                                                                 flair.affine)}
        predicted = {}
        for sequence in sequences:
            image = load_nifti(folder / f"{sequence}.nii.gz")
            # The sequence's world -> MNI, composed with the reference -> sequence motion.
            to_sequence = np.array(record["sequence_transforms"][sequence])
            name = f"from {sequence.upper()}"
            world_to_mni, seconds_affine = _timed(template_to_subject, image)
            maps[f"{name}: affine (template_to_subject)"] = world_to_mni @ to_sequence
            seconds.setdefault(f"{name}: affine (template_to_subject)", []).append(seconds_affine)
            (regions, _), seconds_placed = _timed(place_regions, image, None, flair.shape,
                                                  flair.affine, to_sequence)
            predicted[f"{name}: affine + deformable (place_regions)"] = regions
            seconds.setdefault(f"{name}: affine + deformable (place_regions)", []).append(
                seconds_placed)
        for name, matrix in maps.items():
            predicted[name] = subject_regions(flair.shape, flair.affine, matrix)
        for name, pred in predicted.items():
            rows.setdefault(name, []).append([_dice(pred == c, true == c) for c in _CODES])
    print(f"\n### Region Dice on the FLAIR grid: `{root.name}` ({len(subjects)} {profile} "
          f"subjects, seed {record['seed']}; medians)\n")
    print("| world -> MNI | " + " | ".join(REGION_NAMES[c] for c in _CODES)
          + " | lowest subject, ventricles / basal ganglia |")
    print("|---" * (len(_CODES) + 2) + "|")
    for name in sorted(rows, key=lambda k: ("from" not in k, k)):
        values = np.array(rows[name])
        per_region = np.nanmedian(values, axis=0)
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in per_region)
              + f" | {np.nanmin(values[:, 0]):.3f} / {np.nanmin(values[:, 1]):.3f} |")
    print("\n| step | wall s, median (range) | CPU s, median (range) |\n|---|---|---|")
    for name, times in seconds.items():
        times = np.array(times)
        print(f"| {name} | {np.median(times[:, 0]):.2f} ({times[:, 0].min():.2f}-"
              f"{times[:, 0].max():.2f}) | {np.median(times[:, 1]):.2f} "
              f"({times[:, 1].min():.2f}-{times[:, 1].max():.2f}) |")


def _features(root: Path, regions_from: str) -> list[dict]:
    ratings = {r["subject"]: r for r in csv.DictReader(open(root / "ratings.csv"))}
    out = []
    for subject in sorted(ratings):
        folder = root / subject
        wmh, affine = _array(folder / "labels" / "wmh.nii.gz")
        # The grades the generator drew to: ratings.csv holds what this very rule reads from the
        # label (csvdnet.synth.ratings), so calibrating on it would be circular.
        record = json.loads((folder / "synth.json").read_text())
        plan = record["plan"]
        if regions_from == "true":
            regions, _ = _array(folder / "labels" / "regions.nii.gz")
        else:
            regions, _ = place_regions(load_nifti(folder / "t1.nii.gz"), None, wmh.shape, affine,
                                       np.array(record["sequence_transforms"]["t1"]))
        features = wmh_features(wmh > 0, regions.astype(np.uint8), affine)
        out.append(dict(pv=int(plan["fazekas_pv"]), deep=int(plan["fazekas_deep"]),
                        features=features))
    return out


def _best_threshold(low: list[float], high: list[float]) -> tuple[float, int]:
    """Threshold t (grade up from t) with the fewest errors; ties: the middle of the widest gap."""
    values = np.unique(np.concatenate([low, high]))
    best = (np.inf, -1.0, 0.0)
    for a, b in zip(values[:-1], values[1:]):
        t = (a + b) / 2
        errors = int(np.sum(np.asarray(low) >= t) + np.sum(np.asarray(high) < t))
        if (errors, -(b - a)) < (best[0], best[1]):
            best = (errors, -(b - a), t)
    return best[2], int(best[0])


def calibrate(rows: list[dict]) -> None:
    def feature(grade_key: str, grades: tuple[int, ...], name: str) -> list[float]:
        return [getattr(r["features"], name) for r in rows if r[grade_key] in grades]

    boundaries = (("pv", (0,), (1, 2, 3), "pv_ml", "pv_ml_1", FAZEKAS_PV_LIMITS),
                  ("pv", (1,), (2,), "pv_lining_fraction", "lining_2", FAZEKAS_PV_LIMITS),
                  ("pv", (2,), (3,), "pv_reach_mm", "reach_mm_3", FAZEKAS_PV_LIMITS),
                  ("pv", (2,), (3,), "pv_beyond_band_ml", None, FAZEKAS_PV_LIMITS),
                  ("deep", (0,), (1, 2, 3), "deep_count", "count_1", FAZEKAS_DEEP_LIMITS),
                  ("deep", (1,), (2,), "deep_largest_ml", "largest_ml_2", FAZEKAS_DEEP_LIMITS),
                  ("deep", (2,), (3,), "deep_largest_ml", "largest_ml_3", FAZEKAS_DEEP_LIMITS))
    print("\n| boundary | feature | lower grade range | upper grade range | best threshold "
          "(errors) | in csvdnet.scoring |\n|---|---|---|---|---|---|")
    for key, low_grades, high_grades, name, limit, limits in boundaries:
        low, high = feature(key, low_grades, name), feature(key, high_grades, name)
        t, errors = _best_threshold(low, high)
        print(f"| {key} {low_grades[-1]} / {high_grades[0]} | {name} | "
              f"{min(low):.3g}-{max(low):.3g} | {min(high):.3g}-{max(high):.3g} | "
              f"{t:.3g} ({errors}) | {limits.get(limit, '-')} |")


def confusion(rows: list[dict], title: str) -> None:
    print(f"\n{title}\n")
    for key, rule in (("pv", fazekas_pv_from), ("deep", fazekas_deep_from)):
        matrix = np.zeros((4, 4), dtype=int)
        for r in rows:
            matrix[r[key], rule(r["features"])] += 1
        agree = np.trace(matrix) / matrix.sum()
        print(f"Fazekas {key} (rows planted 0-3, columns measured 0-3), agreement {agree:.0%}:\n")
        print("| planted \\ measured | 0 | 1 | 2 | 3 |\n|---|---|---|---|---|")
        for g in range(4):
            print(f"| {g} | " + " | ".join(str(v) for v in matrix[g]) + " |")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--cal", type=int, default=40)
    parser.add_argument("--seed-a", type=int, default=11)
    parser.add_argument("--seed-b", type=int, default=13)
    parser.add_argument("--regions-cohort", type=Path, action="append", default=[])
    parser.add_argument("--flair", action="store_true", help="also register from the FLAIR")
    parser.add_argument("--no-fazekas", action="store_true")
    args = parser.parse_args()
    print(f"## Regions and Fazekas rules — `python benchmarks/bench_regions.py` "
          f"({datetime.date.today()})\n")
    print(f"{describe_machine()}; CPU flags: {_cpu_flags()}; load average at the start "
          f"{' / '.join(f'{v:.1f}' for v in os.getloadavg())}.")
    sequences = ("t1", "flair") if args.flair else ("t1",)
    if args.no_fazekas:
        for root in args.regions_cohort:
            registration(root, args.subjects, sequences)
        return
    calibration = _cohort(args.work, f"demo-seed{args.seed_a}", args.cal, args.seed_a)
    check = _cohort(args.work, f"demo-seed{args.seed_b}", args.cal, args.seed_b)
    for root in args.regions_cohort or [check]:
        registration(root, min(args.subjects, args.cal), sequences)
    for regions_from, how in (("true", "true region maps"),
                              ("registered", "region maps by place_regions from the T1")):
        print(f"\n### Fazekas calibration: true WMH labels, {how}, {args.cal} demo subjects "
              f"(seed {args.seed_a})")
        calibrate(_features(calibration, regions_from))
    for regions_from, how in (("true", "true region maps"),
                              ("registered", "region maps by place_regions from the T1")):
        confusion(_features(check, regions_from),
                  f"### Check on {args.cal} other subjects (seed {args.seed_b}): true WMH labels, "
                  f"{how}")


if __name__ == "__main__":
    main()
