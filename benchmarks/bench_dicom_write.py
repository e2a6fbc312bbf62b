"""Writing one subject's DICOM SEG + SR + report objects (issue 19 goal: <= 2 s).

Makes (once, reused under ``--work``) a clinical-profile synthetic subject (``csvdnet synth
--profile clinical``: FLAIR 0.9x0.9x4 mm, SWI 0.8x0.8x2, T2 0.9x0.9x5, DWI 1.8x1.8x5, T1 1 mm
sagittal), predicts it with the shipped model (``csvdnet predict``, the real outputs incl.
report.html), writes each NIfTI as a single-frame DICOM series on exactly its own grid (what
dcm2niix would give back), then times :func:`csvdnet.dicom.results.write_results` (``--repeats``
runs, each into a fresh folder, files synced) and its stages. Prints a markdown section for
``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/bench_dicom_write.py --work /tmp/bench_dicom_write [--repeats 7]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

from csvdnet.dicom import capture, geometry, seg, sr  # noqa: E402
from csvdnet.dicom.provenance import derived_uid  # noqa: E402
from csvdnet.dicom.results import write_results  # noqa: E402

CHANNELS = ("flair", "t1", "t2", "swi", "dwi")
_FLIP = np.diag([-1.0, -1.0, 1.0])


def _csvdnet() -> str:
    return str(Path(sys.executable).parent / "csvdnet")


def write_nifti_as_dicom(image: nib.Nifti1Image, folder: Path, channel: str,
                         number: int) -> list[Path]:
    """One MR image per k-slice, on the NIfTI's own grid (row = j, column = i)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = np.asarray(image.dataobj, dtype=np.float32)
    data = np.clip(data / max(float(np.percentile(data, 99.9)), 1e-6) * 3000, 0, 4095)
    affine = image.affine
    x, y = _FLIP @ affine[:3, 0], _FLIP @ affine[:3, 1]
    dc, dr = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    series = derived_uid("bench", channel, "series")
    paths = []
    for k in range(data.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = derived_uid("bench", channel,
                                                                                  str(k))
        ds.PatientName, ds.PatientID = "Bench^Csvd", "B1"
        ds.PatientBirthDate, ds.PatientSex = "", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20261207", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.StudyInstanceUID = derived_uid("bench", "study")
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, derived_uid("bench", "for")
        ds.Modality, ds.Manufacturer = "MR", "SIEMENS"
        ds.SeriesNumber, ds.InstanceNumber = number, k + 1
        ds.SeriesDescription = channel
        ds.ImageOrientationPatient = [float(v) for v in (*(x / dc), *(y / dr))]
        ds.ImagePositionPatient = [float(v) for v in _FLIP @ (affine[:3, 3] + k * affine[:3, 2])]
        ds.PixelSpacing = [dr, dc]
        ds.SliceThickness = float(np.linalg.norm(affine[:3, 2]))
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T.astype(np.uint16)).tobytes()
        path = folder / f"IM{k:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _prepare(work: Path, seed: int, model: Path) -> tuple[Path, Path, dict[str, list[Path]]]:
    cohort = work / "cohort"
    if not (cohort / "manifest.csv").exists():
        subprocess.run([_csvdnet(), "synth", "--out", str(cohort), "--subjects", "1", "--seed",
                        str(seed), "--profile", "clinical"], check=True)
    subject = next(p for p in sorted(cohort.iterdir()) if (p / "flair.nii.gz").exists())
    pred = work / "pred"
    reports = sorted(pred.glob("**/report.json"))
    if not reports:
        subprocess.run([_csvdnet(), "predict", str(subject), "--model", str(model), "--out",
                        str(pred)], check=True)
        reports = sorted(pred.glob("**/report.json"))
    sources = {}
    for number, channel in enumerate(CHANNELS, start=2):
        folder = work / "dicom" / channel
        if not folder.exists():
            write_nifti_as_dicom(nib.load(subject / f"{channel}.nii.gz"), folder, channel, number)
        sources[channel] = sorted(folder.iterdir())
    return subject, reports[0].parent, sources


def _stages(subject_out: Path, sources, report: dict) -> dict[str, float]:
    """Seconds per stage of one run, by timing the writers' entry points (the rest: spheres,
    reading the NIfTI masks and points, writing the files)."""
    times: dict[str, float] = {}
    originals = {(geometry, "read_series"): geometry.read_series,
                 (seg, "mask_on_grid"): seg.mask_on_grid, (seg, "build_seg"): seg.build_seg,
                 (sr, "build_sr"): sr.build_sr, (capture, "build_captures"): capture.build_captures}
    import csvdnet.dicom.results as results

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    for (_, name), function in originals.items():
        setattr(results, name, timed(name, function))
    try:
        dest = subject_out.parent / "_stages"
        shutil.rmtree(dest, ignore_errors=True)
        start = time.perf_counter()
        write_results(subject_out, sources, dest, model_id=report["model"]["id"],
                      model_sha256=report["model"]["sha256"])
        times["total"] = time.perf_counter() - start
    finally:
        for (_, name), function in originals.items():
            setattr(results, name, function)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=71)
    parser.add_argument("--model", type=Path, default=Path("saved_models/csvdnet-synthetic/2"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    subject, subject_out, sources = _prepare(args.work, args.seed, args.model)
    report = json.loads((subject_out / "report.json").read_text())
    start = time.perf_counter()  # the first call pays highdicom's table loading, once
    write_results(subject_out, sources, args.work / "out" / "first", model_id=report["model"]["id"],
                  model_sha256=report["model"]["sha256"])
    first = time.perf_counter() - start
    seconds, cpu, written = [], [], []
    load_before = os.getloadavg()[0]
    for n in range(args.repeats):
        dest = args.work / "out" / f"run{n}"
        shutil.rmtree(dest, ignore_errors=True)
        start, start_cpu = time.perf_counter(), time.process_time()
        written = write_results(subject_out, sources, dest, model_id=report["model"]["id"],
                                model_sha256=report["model"]["sha256"])
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    load_after = os.getloadavg()[0]
    stages = _stages(subject_out, sources, report)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    images = sum(len(v) for v in sources.values())
    grid = {c: f"{len(v)} x {nib.load(subject / f'{c}.nii.gz').shape[:2]}"
            for c, v in sources.items()}
    print(f"## DICOM output: SEG + SR + report objects — `python benchmarks/bench_dicom_write.py "
          f"--work {args.work} --repeats {args.repeats}` ({now})\n")
    print(f"Machine: {describe_machine()}; load average (1 min) {load_before:.1f} before, "
          f"{load_after:.1f} after (the machine is shared: wall time stretches with the load, "
          "CPU time much less).\n")
    print(f"Subject: clinical profile, seed {args.seed}, predicted by {report['model']['id']}; "
          f"{images} source images ({', '.join(f'{c} {g}' for c, g in grid.items())}); "
          f"findings: " + ", ".join(f"{t} {m['count']}" for t, m in report["markers"].items())
          + ".\n")
    print("| what | seconds |\n|---|---|")
    print(f"| write_results CPU time, median of {args.repeats} (min - max) | "
          f"{statistics.median(cpu):.2f} ({min(cpu):.2f} - {max(cpu):.2f}) |")
    print(f"| write_results wall time, median of {args.repeats} (min - max) | "
          f"{statistics.median(seconds):.2f} "
          f"({min(seconds):.2f} - {max(seconds):.2f}) |")
    print("| write_results wall time, first call in a process (highdicom loads its tables) | "
          f"{first:.2f} wall |")
    for name in ("read_series", "mask_on_grid", "build_seg", "build_sr", "build_captures", "total"):
        print(f"| one run's `{name}` | {stages.get(name, 0.0):.2f} |")
    print("\nFiles: " + ", ".join(f"{p.name} {p.stat().st_size / 1e3:.0f} kB" for p in written))


if __name__ == "__main__":
    main()
