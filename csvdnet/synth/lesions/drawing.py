"""Drawing a lesion's shape: random orientation and lobulation, and painting a shape into the
anatomy's tissue fractions or susceptibility.
"""

from __future__ import annotations

import numpy as np

from csvdnet.synth.anatomy import Anatomy
from csvdnet.synth.shapes import Shape, rasterize


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _random_rotation(rng: np.random.Generator, tilt_deg: float) -> np.ndarray:
    """Rotation whose third column is tilted at most ``tilt_deg`` from world z, random azimuth."""
    azimuth, spin = rng.uniform(0, 2 * np.pi, 2)
    tilt = np.deg2rad(rng.uniform(0, tilt_deg))
    c, s = np.cos(tilt), np.sin(tilt)
    tilt_y = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return _rotation_z(azimuth) @ tilt_y @ _rotation_z(spin)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _bumps(rng: np.random.Generator, count: int, amplitude: float) -> np.ndarray:
    """Random lobulation: bulges and dents up to ``amplitude``, bulging by 2x it at most."""
    directions = _unit(rng.standard_normal((count, 3)))
    amplitudes = rng.uniform(-amplitude, amplitude, count)
    bulge = np.clip(amplitudes, 0, None).sum()
    if bulge > 2 * amplitude:  # keeps the bounding sphere (and the work) small
        amplitudes = np.where(amplitudes > 0, amplitudes * 2 * amplitude / bulge, amplitudes)
    return np.column_stack([directions, amplitudes])


def _paint_shape(anat: Anatomy, shape: Shape, into: str, replace: tuple[str, ...]) -> None:
    raster = rasterize(shape, anat.grid)
    if raster is not None:
        anat.paint(*raster, into=into, replace=replace)


def _add_susceptibility(anat: Anatomy, shape: Shape, strength: float = 1.0) -> None:
    raster = rasterize(shape, anat.grid)
    if raster is not None:
        box, density = raster
        anat.susceptibility[box] += strength * density
