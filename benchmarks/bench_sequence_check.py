"""The sequence-swap check (csvdnet.preprocessing.sequence_check) on a synthetic cohort.

Each subject is preprocessed once as ``csvdnet predict`` preprocesses it (the model's
``metadata.json`` settings: registration, automatic brain mask, z-scoring inside it); the check
then runs on the correctly named channels (a flag there is a false flag) and on every pairwise
swap of the channels (a swap is caught when the check names both swapped channels). Swapping
the channels of the preprocessed volume is what swapping the files gives, up to the
registration and brain mask found on the other reference: the per-channel z-scoring inside one
mask commutes with the swap (``--full-swaps N`` re-preprocesses N subjects with the FLAIR and
T1 files really swapped, to compare).

    python benchmarks/bench_sequence_check.py /tmp/cohort --cache /tmp/cache
    python benchmarks/bench_sequence_check.py /tmp/fit-cohort --cache /tmp/fit-cache --fit

``--fit`` measures the contrast signatures on the cohort and writes them to
``csvdnet/preprocessing/sequence_signatures.json`` (fit and test cohorts must differ: other
seeds). Results go to stdout as a Markdown table for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

from csvdnet.config import PreprocessConfig, from_dict  # noqa: E402
from csvdnet.io import load_subject, read_cohort  # noqa: E402
from csvdnet.preprocessing import preprocess_subject_and_mask  # noqa: E402
from csvdnet.preprocessing import sequence_check  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "saved_models" / "csvdnet-synthetic" / "2"


def preprocessed(cohort: Path, model: Path, cache: Path | None, limit: int | None
                 ) -> list[tuple[str, np.ndarray, np.ndarray, tuple[str, ...]]]:
    """``(subject, array, brain, channels)`` of every subject, preprocessed as predict does."""
    metadata = json.loads((model / "metadata.json").read_text())
    cfg = from_dict(PreprocessConfig, metadata["preprocess"], source=str(model))
    channels = tuple(metadata["channels"])
    subjects = read_cohort(cohort, sequences=channels, reference=cfg.reference).subjects
    out = []
    for subject in subjects[:limit]:
        cached = cache / f"{subject.id}.npz" if cache else None
        if cached is not None and cached.is_file():
            data = np.load(cached)
            array, brain = data["array"].astype(np.float32), data["brain"]
        else:
            array, _, brain = preprocess_subject_and_mask(load_subject(subject), cfg)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cached, array=array.astype(np.float16), brain=brain)
        out.append((subject.id, array, brain, tuple(subject.sequences)))
        print(f"preprocessed {subject.id}", file=sys.stderr, flush=True)
    return out


def swapped(array: np.ndarray, i: int, j: int) -> np.ndarray:
    """The volume with channels ``i`` and ``j`` exchanged (as if their files were swapped)."""
    order = list(range(array.shape[-1]))
    order[i], order[j] = j, i
    return array[..., order]


def evaluate(subjects: list, channels: tuple[str, ...]) -> dict:
    """Caught swaps, false flags and the check's time per call."""
    pairs = list(itertools.combinations(range(len(channels)), 2))
    caught = {f"{channels[i]}<->{channels[j]}": 0 for i, j in pairs}
    partly = dict.fromkeys(caught, 0)
    false_flags, times, cpu, margins = [], [], [], []
    missed = []
    for subject_id, array, brain, _ in subjects:
        started, started_cpu = time.perf_counter(), time.process_time()
        result = sequence_check.check_sequences(array, brain, channels)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        margins.append(result.margin)
        if result.swapped:
            false_flags.append(f"{subject_id}: {result.message()}")
        for i, j in pairs:
            name = f"{channels[i]}<->{channels[j]}"
            moved = swapped(array, i, j)
            started, started_cpu = time.perf_counter(), time.process_time()
            result = sequence_check.check_sequences(moved, brain, channels)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            if {channels[i], channels[j]} <= set(result.looks_like):
                caught[name] += 1
            elif result.swapped:
                partly[name] += 1
            else:
                missed.append(f"{subject_id} {name} (margin {result.margin})")
    return {"subjects": len(subjects), "caught": caught, "flagged_but_not_both": partly,
            "false_flags": false_flags, "missed": missed,
            "identity_margin_max": max(m for m in margins if m is not None),
            "margin_threshold": sequence_check.load_signatures()["margin"],
            "seconds_median": float(np.median(times)), "seconds_max": float(np.max(times)),
            "cpu_seconds_median": float(np.median(cpu)), "cpu_seconds_max": float(np.max(cpu))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path, help="synthetic cohort folder or manifest")
    parser.add_argument("--model", type=Path, default=SHIPPED,
                        help="exported model whose preprocessing to use (default: shipped)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the preprocessed volumes here (reruns skip preprocessing)")
    parser.add_argument("--limit", type=int, default=None, help="first N subjects only")
    parser.add_argument("--fit", action="store_true",
                        help="measure the signatures on this cohort and write them")
    parser.add_argument("--full-swaps", type=int, default=0,
                        help="re-preprocess N subjects with FLAIR and T1 files really swapped")
    args = parser.parse_args(argv)
    subjects = preprocessed(args.cohort, args.model, args.cache, args.limit)
    channels = subjects[0][3]
    if args.fit:
        signatures = sequence_check.fit_signatures(
            [(array, brain) for _, array, brain, _ in subjects], channels)
        signatures["measured_on"] = {
            "cohort": str(args.cohort), "subjects": len(subjects),
            "date": datetime.date.today().isoformat(), "machine": describe_machine(),
            "model_preprocessing": os.path.relpath(args.model, SHIPPED.parent.parent.parent)}
        path = Path(sequence_check.__file__).with_name("sequence_signatures.json")
        path.write_text(json.dumps(signatures, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}")
        sequence_check.reload_signatures()
    result = evaluate(subjects, channels)
    if args.full_swaps:
        result["full_swaps"] = full_swaps(args.cohort, args.model, args.full_swaps, channels)
    print(json.dumps(result, indent=1))
    print(f"\n{describe_machine()}, load {os.getloadavg()[0]:.1f}; cohort {args.cohort} "
          f"({result['subjects']} subjects)")
    print("| swap | caught | flagged, not both named |\n|---|---|---|")
    for name, count in result["caught"].items():
        print(f"| {name} | {count}/{result['subjects']} | {result['flagged_but_not_both'][name]} |")
    print(f"false flags on the correctly named subjects: {len(result['false_flags'])}/"
          f"{result['subjects']}; check time per subject: wall median "
          f"{result['seconds_median']:.3f} s, max {result['seconds_max']:.3f} s; CPU median "
          f"{result['cpu_seconds_median']:.3f} s, max {result['cpu_seconds_max']:.3f} s")
    return 0


def full_swaps(cohort: Path, model: Path, count: int, channels: tuple[str, ...]) -> list[dict]:
    """The check after preprocessing with the FLAIR and T1 files really swapped."""
    metadata = json.loads((model / "metadata.json").read_text())
    cfg = from_dict(PreprocessConfig, metadata["preprocess"], source=str(model))
    rows = []
    subjects = read_cohort(cohort, sequences=channels, reference=cfg.reference).subjects
    for subject in subjects[:count]:
        images = load_subject(subject)
        images["flair"], images["t1"] = images["t1"], images["flair"]
        array, _, brain = preprocess_subject_and_mask(images, cfg)
        result = sequence_check.check_sequences(array, brain, tuple(images))
        rows.append({"subject": subject.id, "looks_like": result.looks_like,
                     "margin": result.margin})
    return rows


if __name__ == "__main__":
    sys.exit(main())
