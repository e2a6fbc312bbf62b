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
seeds). ``--make-scanner-like N`` first writes N subjects made independently of ``csvdnet synth``
into COHORT (:func:`scanner_like`: the MNI152 template's tissue maps through MR signal equations
with published relaxation times). Results go to stdout as a Markdown table for
``benchmarks/RESULTS.md``.
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


# Relaxation times (ms), proton density and ADC (1e-3 mm^2/s) of CSF, grey and white matter at
# 1.5 T and 3 T: rounded textbook values (Wansapura et al. 1999, Stanisz et al. 2005; T2* from
# Peters et al. 2007), not csvdnet synth's contrast table.
TISSUE_PROPERTIES = {
    1.5: {"t1": (4000.0, 1050.0, 650.0), "t2": (2000.0, 95.0, 75.0),
          "t2s": (1500.0, 75.0, 60.0)},
    3.0: {"t1": (4000.0, 1400.0, 830.0), "t2": (2000.0, 110.0, 80.0),
          "t2s": (1500.0, 66.0, 53.0)},
}
PROTON_DENSITY = (1.0, 0.80, 0.69)
ADC = (3.0, 0.85, 0.70)


def _signals(field: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per sequence, the signal of (CSF, GM, WM) by its signal equation, parameters jittered
    by +-10 % as protocols differ between sites."""
    props = {k: np.array(v) for k, v in TISSUE_PROPERTIES[field].items()}
    pd = np.array(PROTON_DENSITY)

    def jitter(value: float) -> float:
        return value * rng.uniform(0.9, 1.1)

    def spin_echo(tr: float, te: float) -> np.ndarray:
        return pd * (1 - np.exp(-tr / props["t1"])) * np.exp(-te / props["t2"])

    tr_flair, te_flair = jitter(9000.0), jitter(120.0)
    csf_t1 = props["t1"][0]  # TI set to null CSF, as a FLAIR protocol is (to within +-5 %)
    ti = csf_t1 * np.log(2 / (1 + np.exp(-tr_flair / csf_t1))) * rng.uniform(0.95, 1.05)
    flair = (pd * np.abs(1 - 2 * np.exp(-ti / props["t1"]) + np.exp(-tr_flair / props["t1"]))
             * np.exp(-te_flair / props["t2"]))
    alpha, tr_gre = np.deg2rad(jitter(15.0)), jitter(28.0)
    e1 = np.exp(-tr_gre / props["t1"])
    gre = (pd * np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1)
           * np.exp(-jitter(20.0) / props["t2s"]))
    dwi = spin_echo(jitter(5000.0), jitter(80.0)) * np.exp(-1.0 * np.array(ADC))  # b = 1000
    return {"flair": flair, "t1": spin_echo(jitter(500.0), jitter(10.0)),
            "t2": spin_echo(jitter(4000.0), jitter(100.0)), "swi": gre, "dwi": dwi}


def scanner_like(out: Path, subjects: int, seed: int = 0) -> Path:
    """Write ``subjects`` five-sequence subjects made without ``csvdnet synth``.

    Tissue fractions are the MNI152 template's grey and white matter maps (nilearn, offline),
    CSF the rest of its brain mask; each voxel's signal mixes the tissues' signals
    (:func:`_signals`, 1.5 T or 3 T), with noise of SNR 15-30 (DWI 8-15) taken as magnitude.
    FLAIR and T2 are written with 3 mm slices, DWI on a 2 mm grid, the rest at 1 mm.
    """
    from nilearn import datasets

    gm = datasets.load_mni152_gm_template(resolution=1)
    affine = gm.affine
    gm = gm.get_fdata()
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata()
    brain = datasets.load_mni152_brain_mask(resolution=1).get_fdata() > 0
    fractions = np.stack([np.clip(brain - gm - wm, 0, 1), gm, wm], axis=-1) * brain[..., None]
    rng = np.random.default_rng(seed)
    from csvdnet.io import save_nifti

    for index in range(subjects):
        field = (1.5, 3.0)[index % 2]
        folder = out / f"sl-{index:02d}"
        for name, signal in _signals(field, rng).items():
            volume = fractions @ signal
            snr = rng.uniform(8, 15) if name == "dwi" else rng.uniform(15, 30)
            sigma = float(np.percentile(volume[brain], 50)) / snr
            volume = np.abs(volume + sigma * rng.standard_normal(volume.shape)
                            + 1j * sigma * rng.standard_normal(volume.shape)).astype(np.float32)
            grid = affine.copy()
            if name in ("flair", "t2"):  # thick slices
                depth = volume.shape[2] // 3 * 3
                volume = volume[..., :depth].reshape(*volume.shape[:2], -1, 3).mean(axis=3)
                grid[:3, 2] *= 3
                grid[:3, 3] += affine[:3, 2]
            elif name == "dwi":  # a coarse EPI grid
                shape = [n // 2 * 2 for n in volume.shape]
                volume = volume[:shape[0], :shape[1], :shape[2]].reshape(
                    shape[0] // 2, 2, shape[1] // 2, 2, shape[2] // 2, 2).mean(axis=(1, 3, 5))
                grid[:3, :3] *= 2
                grid[:3, 3] += affine[:3, :3] @ np.full(3, 0.5)
            save_nifti(volume * 1000.0, grid, folder / f"{name}.nii.gz")
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
    parser.add_argument("cohort", type=Path, help="cohort folder or manifest")
    parser.add_argument("--model", type=Path, default=SHIPPED,
                        help="exported model whose preprocessing to use (default: shipped)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the preprocessed volumes here (reruns skip preprocessing)")
    parser.add_argument("--limit", type=int, default=None, help="first N subjects only")
    parser.add_argument("--fit", action="store_true",
                        help="measure the signatures on this cohort and write them")
    parser.add_argument("--full-swaps", type=int, default=0,
                        help="re-preprocess N subjects with FLAIR and T1 files really swapped")
    parser.add_argument("--make-scanner-like", type=int, default=0, metavar="N",
                        help="first write N subjects made without csvdnet synth into COHORT")
    parser.add_argument("--seed", type=int, default=0, help="seed of --make-scanner-like")
    parser.add_argument("--also", type=Path, nargs="*", default=[], metavar="COHORT",
                        help="further cohorts of the same channels (e.g. another generator's), "
                             "each with its cache as <cache>-<folder name>")
    args = parser.parse_args(argv)
    if args.make_scanner_like:
        scanner_like(args.cohort, args.make_scanner_like, args.seed)
    subjects = preprocessed(args.cohort, args.model, args.cache, args.limit)
    for other in args.also:
        cache = args.cache and args.cache.with_name(f"{args.cache.name}-{other.name}")
        subjects += preprocessed(other, args.model, cache, args.limit)
    channels = subjects[0][3]
    if args.fit:
        signatures = sequence_check.fit_signatures(
            [(array, brain) for _, array, brain, _ in subjects], channels)
        signatures["measured_on"] = {
            "cohort": ", ".join(str(c) for c in (args.cohort, *args.also)),
            "subjects": len(subjects),
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
