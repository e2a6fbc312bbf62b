"""Writing a synthetic cohort in the csvdnet cohort layout (docs/contracts.md).

::

    <out>/manifest.csv                    subject + one column per sequence / label
    <out>/ratings.csv                     recounted ratings and Staals total score
    <out>/<subject>/{flair,t1,t2,swi,dwi}.nii.gz   int16, each on its own native grid
    <out>/<subject>/labels/{wmh,rssi,lacune,regions,brain_mask}.nii.gz   uint8, FLAIR grid
    <out>/<subject>/labels/{cmb,epvs}.csv  x, y, z (world RAS mm, FLAIR frame), i, j, k (FLAIR
                                          voxel), diameter_mm, [length_mm, dx, dy, dz (the
                                          EPVS axis, unit vector),] region, side
    <out>/<subject>/synth.json            the plan, the head motion per sequence, the warp

Subject ``i`` of a cohort depends only on (seed, i): subjects can be generated independently
and the same seed gives the same bytes (nibabel writes gzip without a time stamp or name).
``synth.json`` holds ``sequence_transforms``: the 4x4 rigid map from the reference world to
each sequence's world, in the convention of ``PreprocessMeta.sequence_transforms``, so a
registration can be checked against the truth.
"""

from __future__ import annotations

import csv
import dataclasses
import io as text_io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.atlas import REGION_NAMES, load_atlas
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_dir, write_text_atomic
from csvdnet.io import Ratings, save_nifti, write_points, write_ratings
from csvdnet.synth.anatomy import Anatomy, SubjectWarp, build_anatomy
from csvdnet.synth.geometry import Grid, box_average, rigid_matrix
from csvdnet.synth.lesions import Lesions, plant_lesions
from csvdnet.synth.shapes import reference_mask
from csvdnet.synth.profiles import Profile, resolve_profile
from csvdnet.synth.ratings import Plan, check_prevalence, recount, sample_plan
from csvdnet.synth.sequences import native_grid, render

__all__ = ["SYNTH_FORMAT_VERSION", "generate_cohort", "generate_subject", "subject_ids"]

SYNTH_FORMAT_VERSION = 1
"""Version of the ``synth.json`` layout."""

_POINT_DECIMALS = 4  # csvdnet.io.write_points writes world mm with 4 decimals



def subject_ids(n_subjects: int) -> list[str]:
    """Subject folder names ``sub-0000``, ``sub-0001``, ... (wider when needed)."""
    width = max(4, len(str(n_subjects - 1)))
    return [f"sub-{i:0{width}d}" for i in range(n_subjects)]


def generate_cohort(out_dir: str | os.PathLike, n_subjects: int, seed: int,
                    profile: str | Profile = "demo", spacing: float | None = None,
                    prevalence: Sequence[float] | None = None, progress: bool = True) -> Path:
    """Generate a synthetic CSVD cohort with exact ground truth.

    Args:
        out_dir: Cohort folder (created; may hold an earlier cohort of the same subject ids;
            subjects already written there for this seed and profile are kept, so a killed
            run resumes).
        n_subjects: Number of subjects.
        seed: Seed; subject ``i`` is generated from ``(seed, i)`` alone.
        profile: ``"tiny"``, ``"demo"``, ``"clinical"`` or a :class:`Profile`.
        spacing: Make every sequence this isotropic voxel size (mm) instead of the profile's
            clinical grids.
        prevalence: Weights of total SVD scores 0..4 (default balanced, 0.2 each).
        progress: Show a progress bar on stderr.

    Returns:
        Path of the written ``manifest.csv``.

    Raises:
        CsvdnetInputError: Bad arguments, or ``out_dir`` holds subject folders of another cohort.
    """
    for name, value, smallest in (("n_subjects", n_subjects, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < smallest:
            raise CsvdnetInputError(name, f"must be an integer >= {smallest}, got {value!r}")
    profile = resolve_profile(profile, spacing)
    weights = check_prevalence(prevalence)
    out_dir = Path(out_dir)
    ids = subject_ids(int(n_subjects))
    folders = sorted(p.name for p in out_dir.iterdir() if p.is_dir()) if out_dir.is_dir() else []
    strangers = [name for name in folders if not name.startswith(".") and name not in ids]
    if strangers:
        raise CsvdnetInputError(out_dir, f"holds subject folder {strangers[0]} that this cohort "
                                         "would not list: use an empty folder")
    ratings = {}
    for index, subject in enumerate(tqdm(ids, desc=f"synth {profile.name}", disable=not progress)):
        # A folder is written atomically: one that exists is complete. A rerun of a killed
        # synth keeps the subjects of this cohort (same seed, index, profile, format) and
        # recounts their ratings from their files, which gives what generation returned.
        kept = _written_ratings(out_dir / subject, profile, int(seed), index)
        if kept is not None:
            ratings[subject] = kept
            continue
        with atomic_dir(out_dir / subject) as tmp:
            ratings[subject] = generate_subject(tmp, profile, int(seed), index, weights)
    write_ratings(out_dir / "ratings.csv", ratings)
    return _write_manifest(out_dir, ids, profile)


def _written_ratings(folder: Path, profile: Profile, seed: int, index: int) -> Ratings | None:
    """The ratings of a subject already written by this cohort, recounted; None if not one."""
    import nibabel as nib

    try:
        record = json.loads((folder / "synth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (record.get("format"), record.get("version"), record.get("profile"), record.get("seed"),
            record.get("index")) != ("csvdnet-synth", SYNTH_FORMAT_VERSION, profile.name, seed,
                                     index):
        return None
    labels = folder / "labels"
    regions = nib.load(labels / "regions.nii.gz")
    masks = {name: np.asarray(nib.load(labels / f"{name}.nii.gz").dataobj)
             for name in ("wmh", "lacune", "rssi")}
    tables = {}
    for name in ("cmb", "epvs"):
        with open(labels / f"{name}.csv", newline="", encoding="utf-8") as handle:
            tables[name] = list(csv.DictReader(handle))
    world = np.array([[float(r[a]) for a in "xyz"] for r in tables["epvs"]]).reshape(-1, 3)
    return recount(Plan(**record["plan"]), masks["wmh"], masks["lacune"], masks["rssi"],
                   len(tables["cmb"]), world, [r["side"] for r in tables["epvs"]],
                   np.asarray(regions.dataobj), regions.affine)


def _write_manifest(out_dir: Path, ids: list[str], profile: Profile) -> Path:
    sequences = [p.name for p in profile.sequences]
    labels = {**{name: f"labels/{name}.nii.gz" for name in SEGMENTATION_TASKS},
              **{name: f"labels/{name}.csv" for name in DETECTION_TASKS},
              "regions": "labels/regions.nii.gz", "brain_mask": "labels/brain_mask.nii.gz"}
    buffer = text_io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["subject", *sequences, *labels])
    for subject in ids:
        writer.writerow([subject, *(f"{subject}/{s}.nii.gz" for s in sequences),
                         *(f"{subject}/{path}" for path in labels.values())])
    manifest = out_dir / "manifest.csv"
    write_text_atomic(manifest, buffer.getvalue())
    return manifest


def generate_subject(subject_dir: str | os.PathLike, profile: Profile, seed: int, index: int,
                     prevalence: np.ndarray) -> Ratings:
    """Generate and write one subject.

    Args:
        subject_dir: Folder to write into (created).
        profile: The profile.
        seed: Cohort seed.
        index: Subject index; with ``seed`` it fixes everything about the subject.
        prevalence: Probabilities of total scores 0..4.

    Returns:
        The subject's ratings, recounted from the written ground truth.
    """
    subject_dir = Path(subject_dir)
    plan_rng, anatomy_rng, lesion_rng, image_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(4))
    plan = sample_plan(plan_rng, prevalence, profile.rssi_prevalence)
    atlas = load_atlas(profile.atlas_mm)
    warp = SubjectWarp.random(anatomy_rng, profile)
    anat = build_anatomy(atlas, warp, profile.anatomy_mm, anatomy_rng)

    head_lo, head_hi = _head_box(anat)
    grids = {p.name: native_grid(p, head_lo, head_hi, image_rng) for p in profile.sequences}
    reference = grids[profile.reference]
    regions = atlas.sample("regions", warp.on_grid(reference), order=0)
    lesions = plant_lesions(anat, plan, reference, regions, lesion_rng)

    centre = (head_lo + head_hi) / 2
    transforms = {p.name: np.eye(4) if p.name == profile.reference else rigid_matrix(
        image_rng.normal(0, profile.motion_deg, 3), image_rng.normal(0, profile.motion_mm, 3),
        centre) for p in profile.sequences}
    for protocol in profile.sequences:
        grid = grids[protocol.name]
        image = render(anat, protocol, grid, transforms[protocol.name], image_rng)
        save_nifti(image, grid.affine, subject_dir / f"{protocol.name}.nii.gz", dtype=np.int16)

    masks = _reference_masks(anat, lesions, reference)
    labels = subject_dir / "labels"
    for name, mask in masks.items():
        save_nifti(mask, reference.affine, labels / f"{name}.nii.gz", dtype=np.uint8)
    save_nifti(regions, reference.affine, labels / "regions.nii.gz", dtype=np.uint8)
    # The points are what the CSV holds (0.1 um), so a reader recounts exactly what was rated.
    cmb, epvs = np.round(lesions.cmb, _POINT_DECIMALS), np.round(lesions.epvs, _POINT_DECIMALS)
    _write_points(labels / "cmb.csv", cmb, reference, regions, warp,
                  {"diameter_mm": lesions.cmb_diameter})
    epvs_sides = _write_points(labels / "epvs.csv", epvs, reference, regions, warp,
                               {"diameter_mm": lesions.epvs_diameter,
                                "length_mm": lesions.epvs_length,
                                **{f"d{axis}": lesions.epvs_direction[:, n]
                                   for n, axis in enumerate("xyz")}})
    _write_record(subject_dir / "synth.json", profile, seed, index, plan, warp, transforms, lesions)
    return recount(plan, masks["wmh"], masks["lacune"], masks["rssi"], len(cmb), epvs, epvs_sides,
                   regions, reference.affine)


def _head_box(anat: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box of the head (voxels more than half tissue)."""
    head = np.argwhere(anat.fractions.sum(axis=0) > 0.5)
    corners = anat.grid.voxel_to_world(np.array([head.min(axis=0), head.max(axis=0)]))
    return corners.min(axis=0), corners.max(axis=0)


def _reference_masks(anat: Anatomy, lesions: Lesions, reference: Grid) -> dict[str, np.ndarray]:
    """Lesion and brain masks on the reference grid: partial volume > 0.5.

    Lacunes and RSSI are rasterised from their shapes straight onto the reference grid; WMH and
    the brain, which are fields, are averaged exactly from the fine grid (same world).
    """
    masks = {name: box_average(fraction, anat.grid, reference) > 0.5
             for name, fraction in (("wmh", anat.tissue("wmh")), ("brain_mask", anat.brain))}
    masks["rssi"] = reference_mask(lesions.rssi, reference)
    masks["lacune"] = reference_mask(lesions.lacunes, reference)
    return {name: mask.astype(np.uint8) for name, mask in masks.items()}


def _write_points(path: Path, world: np.ndarray, reference: Grid, regions: np.ndarray,
                  warp: SubjectWarp, columns: dict[str, np.ndarray]) -> list[str]:
    """Write a point label with region and side columns; returns the sides."""
    voxels = np.rint(reference.world_to_voxel(world)).astype(int)
    voxels = np.clip(voxels, 0, np.array(reference.shape) - 1)
    region_names = [REGION_NAMES[int(c)] for c in regions[tuple(voxels.T)]] if len(world) else []
    sides = ["L" if x < 0 else "R" for x in warp(world)[:, 0]] if len(world) else []
    write_points(path, world, affine=reference.affine,
                 columns={**{k: np.round(v, 2 if k.endswith("_mm") else 4)
                             for k, v in columns.items()}, "region": region_names,
                          "side": sides})
    return sides


def _write_record(path: Path, profile: Profile, seed: int, index: int, plan: Plan,
                  warp: SubjectWarp, transforms: dict[str, np.ndarray], lesions: Lesions) -> None:
    record = {
        "format": "csvdnet-synth", "version": SYNTH_FORMAT_VERSION, "profile": profile.name,
        "seed": seed, "index": index, "plan": dataclasses.asdict(plan),
        "sequence_transforms": {name: np.round(m, 6).tolist() for name, m in transforms.items()},
        "world_to_mni_affine": np.round(warp.matrix, 6).tolist(),
        "ventricle_enlargement": round(1.0 / (1.0 - warp.shrink), 4),
        "lacune_axes_mm": [np.round(2 * e.semi_axes, 2).tolist() for e in lesions.lacunes],
        "rssi_axes_mm": [np.round(2 * e.semi_axes, 2).tolist() for e in lesions.rssi],
    }
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
