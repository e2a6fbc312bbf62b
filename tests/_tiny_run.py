"""A trained tiny run on a tiny synthetic cohort: the model the predict / demo tests use.

Made the way a user makes one (``csvdnet synth`` -> ``csvdnet preprocess`` -> ``csvdnet
train``), only small: 3 ``tiny``-profile subjects at 4 mm working spacing, a 4-filter network,
4 training steps. Its outputs are not meant to be right, only produced end to end.
"""

from __future__ import annotations

from pathlib import Path

from csvdnet.config import (Config, DataConfig, InferenceConfig, ModelConfig, PreprocessConfig,
                            TrainConfig)

CHANNELS = ("flair", "t1", "t2", "swi", "dwi")
SPACING = 4.0
PATCH = (16, 16, 16)


def tiny_config(cache: Path, run_dir: Path) -> Config:
    """The tiny recipe (4 mm, 16^3 patches, depth 2)."""
    return Config(
        data=DataConfig(cache=str(cache), channels=CHANNELS, patch_size=PATCH,
                        whole_brain_every=2, val_fraction=0.34, modality_dropout=0.1),
        preprocess=PreprocessConfig(spacing=(SPACING,) * 3, pad_multiple=16, register=False),
        model=ModelConfig(input_channels=len(CHANNELS), base_filters=4, depth=2,
                          blocks_per_level=(1, 1, 1), dropout=0.0),
        train=TrainConfig(run_dir=str(run_dir), epochs=1, steps_per_epoch=4, batch_size=2,
                          warmup_steps=1, mixed_precision="float32"),
        inference=InferenceConfig(window=PATCH, overlap=0.25))


def make_tiny_run(root: Path, subjects: int = 3, seed: int = 11) -> tuple[Path, Path]:
    """Synthesise, preprocess and train; returns ``(cohort manifest, run directory)``."""
    from csvdnet.cache import preprocess_cohort
    from csvdnet.io import read_cohort
    from csvdnet.synth import generate_cohort
    from csvdnet.training import fit

    manifest = generate_cohort(root / "cohort", subjects, seed, profile="tiny", progress=False)
    cfg = tiny_config(root / "cache", root / "run")
    preprocess_cohort(read_cohort(manifest), root / "cache", cfg.preprocess,
                      channels=CHANNELS, progress=False)
    fit(cfg, progress=False)
    return manifest, root / "run"
