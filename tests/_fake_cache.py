"""Write tiny preprocessed caches exactly as docs/contracts.md lays them out.

Arrays and JSON are written directly (the cache writer only preprocesses NIfTI cohorts); the meta
record is a real :class:`~csvdnet.preprocessing.PreprocessMeta` so the cache reader accepts it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from csvdnet.cache import INDEX_FORMAT, INDEX_VERSION
from csvdnet.config import PreprocessConfig, to_dict
from csvdnet.io import Ratings
from csvdnet.preprocessing import PreprocessMeta


@dataclasses.dataclass
class FakeSubject:
    """One cached subject: working-grid image, masks, points (working voxels), ratings."""

    id: str
    image: np.ndarray
    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    points: dict[str, list[list[float]]] = dataclasses.field(default_factory=dict)
    ratings: dict[str, int | None] | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)


def sphere(shape: Sequence[int], centre: Sequence[float], radius: float) -> np.ndarray:
    """uint8 ball of ``radius`` voxels around ``centre``."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2).astype(np.uint8)


def fake_meta(shape: Sequence[int], spacing: Sequence[float], channels: Sequence[str],
              config: PreprocessConfig) -> PreprocessMeta:
    """The meta of an already preprocessed subject: identity maps, working grid = reference."""
    shape = tuple(int(n) for n in shape[:3])
    return PreprocessMeta(
        reference=channels[0], channels=list(channels), reference_shape=shape,
        reference_affine=np.diag([*spacing, 1.0]), working_shape=shape,
        working_affine=np.diag([*spacing, 1.0]), brain_box=((0, 0, 0), shape),
        sequence_transforms={c: np.eye(4) for c in channels},
        sequence_grids={c: {"path": f"{c}.nii.gz", "shape": shape,
                            "affine": np.diag([*spacing, 1.0])} for c in channels},
        normalisation={c: {"clip_low": -5.0, "clip_high": 5.0, "mean": 0.0, "std": 1.0}
                       for c in channels},
        brain_mask="none", config=to_dict(config))


def write_cache(root: Path, subjects: Sequence[FakeSubject], channels: Sequence[str],
                pad_multiple: int = 8) -> Path:
    """Write ``subjects`` as a cache folder under ``root``; returns ``root``."""
    config = PreprocessConfig(pad_multiple=pad_multiple)
    root.mkdir(parents=True, exist_ok=True)
    for s in subjects:
        folder = root / s.id
        folder.mkdir()
        np.save(folder / "image.npy", s.image.astype(np.float32))
        for task, mask in s.masks.items():
            np.save(folder / f"{task}.npy", mask.astype(np.uint8))
        meta = fake_meta(s.image.shape, s.spacing, channels, config)
        (folder / "meta.json").write_text(json.dumps(meta.to_dict()))
        (folder / "subject.json").write_text(json.dumps({
            "id": s.id, "labels": sorted([*s.masks, *s.points]), "points": s.points,
            "ratings": s.ratings, "spacing": list(s.spacing)}))
    (root / "index.json").write_text(json.dumps({
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "channels": list(channels),
        "preprocess": to_dict(config),
        "subjects": [s.id for s in subjects], "failed": {}}))
    return root


def ratings(total_score: int | None) -> dict[str, int | None]:
    """A ratings record (as the cache stores it) with only the total score set."""
    return dataclasses.asdict(Ratings(total_score=total_score))
