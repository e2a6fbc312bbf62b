"""DICOM input: indexing + series selection + conversion of one study (issue 19 goal: <= 3 s
per 5-series study of ~600 instances on 2 cores).

Makes (once, reused under ``--work``) one synthetic subject (``csvdnet synth``, ``--profile``),
its FLAIR resampled to ``--flair-mm`` isotropic (a 3-D FLAIR: ~600 images in all with the
clinical profile), and writes it as a vendor-like DICOM study with only the five channel series
(:func:`csvdnet.dicom.vendor.write_study` with ``extras=False``; the T2 as classic single-frame
files unless ``--enhanced``). Then ``--repeats`` times, each into a fresh work folder (no reuse
of an earlier conversion): :func:`csvdnet.dicom.index.index_folder` (headers only),
:func:`csvdnet.dicom.select.select_study`, :func:`csvdnet.dicom.convert.convert_selection`
(dcm2niix per channel + the pixel-by-pixel geometry check). The files are in the page cache
(written and synced before, and read by a first, untimed repeat). Wall seconds per stage, and
the CPU seconds of the whole (this process and dcm2niix), which the other jobs on a shared
machine do not inflate as much. Prints a markdown section for
``benchmarks/RESULTS.md`` with the date, the machine and its CPU flags.

Usage::

    python benchmarks/bench_dicom.py --work /tmp/bench_dicom [--profile clinical] [--repeats 7]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

from csvdnet.dicom.convert import convert_selection  # noqa: E402
from csvdnet.dicom.index import index_folder  # noqa: E402
from csvdnet.dicom.rules import load_rules  # noqa: E402
from csvdnet.dicom.select import select_study  # noqa: E402

CHANNELS = ("flair", "t1", "t2", "swi", "dwi")
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile")


def cpu_flags() -> str:
    """The SIMD flags of ``/proc/cpuinfo`` that matter for numeric code (present ones)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return " ".join(f for f in _FLAGS if f in have) or "none of " + " ".join(_FLAGS)
    except OSError:
        pass
    return "unknown"


def _cpu() -> float:
    """CPU seconds of this process and its finished children (dcm2niix), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def make_study(work: Path, profile: str, seed: int, enhanced: bool,
               flair_mm: float | None) -> Path:
    """The synthetic subject as DICOM under ``work`` (made once); ``flair_mm`` resamples the
    FLAIR to that isotropic voxel first (a 3-D FLAIR, as many sites acquire it now)."""
    import nibabel as nib
    from nibabel.processing import resample_to_output

    from csvdnet.dicom.vendor import write_study
    from csvdnet.synth import generate_cohort

    root = work / (f"dicom-{profile}-{seed}-{'enh' if enhanced else 'classic'}"
                   f"-flair{flair_mm or 'native'}")
    if root.is_dir():
        return root
    cohort = work / f"synth-{profile}-{seed}"
    if not cohort.is_dir():
        generate_cohort(cohort, 1, seed, profile=profile, progress=False)
    subject = next(p for p in sorted(cohort.iterdir()) if p.is_dir() and
                   (p / "flair.nii.gz").is_file())
    if flair_mm:
        copy = work / f"subject-flair{flair_mm}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(subject, copy)
        flair = nib.load(str(subject / "flair.nii.gz"))
        resampled = resample_to_output(flair, (flair_mm,) * 3, order=1)
        nib.save(nib.Nifti1Image(resampled.get_fdata().round().astype("int16"),
                                 resampled.affine), str(copy / "flair.nii.gz"))
        subject = copy
    tmp = work / f".{root.name}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    write_study(subject, tmp, extras=False, enhanced=enhanced)
    os.replace(tmp, root)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--profile", default="clinical", choices=("tiny", "demo", "clinical"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--flair-mm", type=float, default=1.0,
                        help="resample the FLAIR to this isotropic voxel (a 3-D FLAIR); 0 "
                             "keeps the profile's 2-D FLAIR")
    parser.add_argument("--enhanced", action="store_true",
                        help="the T2 as one enhanced multi-frame file")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    root = make_study(args.work, args.profile, args.seed, args.enhanced, args.flair_mm or None)
    rules = load_rules()
    load = os.getloadavg()
    os.sync()  # the study's pages written back before timing: no writeback competes
    stages: dict[str, list[float]] = {"index": [], "select": [], "convert": [], "total": [],
                                      "total CPU (this process + dcm2niix)": []}
    for repeat in range(-1, args.repeats):  # -1: a warm-up (imports, pixel decoders) not kept
        out = args.work / "convert" / str(repeat)
        shutil.rmtree(out, ignore_errors=True)
        c0 = _cpu()
        t0 = time.perf_counter()
        index = index_folder(root)
        t1 = time.perf_counter()
        selection = select_study(index.studies[0], rules, CHANNELS, "flair")
        t2 = time.perf_counter()
        convert_selection(selection, out, root)
        t3 = time.perf_counter()
        cpu = _cpu() - c0
        for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0, cpu)):
            if repeat >= 0:
                stages[name].append(seconds)
        shutil.rmtree(out, ignore_errors=True)
    study = index.studies[0]
    files = sum(len(s.instances) for s in study.series)
    frames = sum(s.frame_count for s in study.series)
    per_series = ", ".join(f"{name} {len(c.instances)}" for name, c in selection.chosen.items())
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"## DICOM input: index + select + convert — `python benchmarks/bench_dicom.py "
          f"--work {args.work} --profile {args.profile} --repeats {args.repeats} "
          f"--flair-mm {args.flair_mm:g}"
          f"{' --enhanced' if args.enhanced else ''}` ({now})\n")
    print(f"Machine: {describe_machine()}; usable cores {len(os.sched_getaffinity(0))}; "
          f"CPU flags: {cpu_flags()}; load average (1, 5, 15 min) at the start "
          f"{' '.join(f'{v:.2f}' for v in load)}, at the end "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}.\n")
    flair = f"FLAIR resampled to {args.flair_mm:g} mm isotropic, " if args.flair_mm else ""
    print(f"Study: `{args.profile}` synthetic subject (seed {args.seed}; {flair}written "
          f"oblique) as "
          f"{len(study.series)} series, {files} files, {frames} images ({per_series} per "
          f"channel as converted; DWI b0 and b1000 in one series). Median (min-max) of "
          f"{args.repeats} repeats, seconds:\n")
    print("| stage | median | min | max |\n|---|---|---|---|")
    for name, values in stages.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | "
              f"{max(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
