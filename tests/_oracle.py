"""An oracle 'network' over the analytic phantom: tests of everything around the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _phantom import grid, image

from csvdnet.config import PreprocessConfig
from csvdnet.inference.predictor import Predictor
from csvdnet.inference.result import ModelInfo
from csvdnet.io import Subject, load_subject, save_nifti
from csvdnet.preprocessing import preprocess_subject

SHAPE = (47, 47, 47)
CFG = PreprocessConfig(spacing=(2.0, 2.0, 2.0), register=False, pad_multiple=8,
                       clip_percentiles=(0.0, 100.0))
LESION_LEVEL = 915.0  # raw FLAIR: the planted lesion peaks at 991 (915 within 2.4 mm); blobs at 897


def write_subject(folder: Path, orientation: str, turn: np.ndarray | None = None,
                  names: dict[str, str] | None = None) -> Subject:
    """The phantom's FLAIR and T1 written to ``folder`` (file names from ``names``)."""
    affine = grid(SHAPE, (2.0, 2.0, 2.0), orientation, turn)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("flair", "t1"):
        img = image(affine, SHAPE, name)
        file = (names or {}).get(name, f"{name}.nii.gz")
        paths[name] = save_nifti(img.data, affine, folder / file)
    return Subject(id=folder.name, sequences=paths)


def oracle_predictor(level: float, channels=("flair", "t1"), dropout: bool = False,
                     **kwargs) -> Predictor:
    """A predictor whose 'network' calls WMH where normalised FLAIR exceeds ``level``."""
    def forward(batch):
        x = np.asarray(batch)[..., :1]
        wmh = 1.0 / (1.0 + np.exp(np.clip(-40.0 * (x - level), -50.0, 50.0)))
        zeros = np.zeros_like(wmh)
        return {"wmh": wmh, "rssi": zeros, "lacune": zeros, "cmb": zeros, "epvs": zeros,
                "score": np.array([[3.0, 1.0, -1.0, -3.0]])}

    info = ModelInfo(id="oracle", path="-", sha256="0" * 64, kind="run", channels=channels,
                     spacing=(2.0, 2.0, 2.0),
                     thresholds={"wmh": 0.5, "rssi": 0.5, "lacune": 0.5, "cmb": 0.5,
                                 "epvs": 0.5},
                     min_lesion_mm3={"wmh": 0.0}, modality_dropout=dropout)
    return Predictor(forward, info, CFG, window=(16, 16, 16), overlap=0.25, gaussian=True,
                     rule_sets=("staals-2014", "caa-svd-2016"), **kwargs)


def normalised_level(subject: Subject) -> float:
    """LESION_LEVEL in the units of the preprocessed FLAIR channel."""
    _, meta = preprocess_subject(load_subject(subject), CFG)
    p = meta.normalisation["flair"]
    return (LESION_LEVEL - p["mean"]) / p["std"]


def mni_at_world_origin(monkeypatch) -> None:
    """Skip the template registration (tested apart): the phantom sits at the MNI origin, so
    world -> MNI is the identity and the region atlas is sampled through it unwarped."""
    from csvdnet.inference import regions

    def affine_only(image, mask, shape, affine, to_image=None):
        world_to_mni = np.eye(4) if to_image is None else np.asarray(to_image, np.float64)
        return regions.subject_regions(shape, affine, world_to_mni), world_to_mni

    monkeypatch.setattr(regions, "template_to_subject", lambda *a, **k: np.eye(4))
    monkeypatch.setattr(regions, "place_regions", affine_only)
