"""An analytic head phantom for the preprocessing tests, sampled exactly on any grid.

Nested ellipsoids with smooth edges (scalp, skull, CSF, brain with a gyral texture, ventricles,
nuclei, a lesion and small blobs) defined in world mm, so they can be sampled on any grid: RAS,
LPS, oblique, anisotropic, or after a planted head motion.
"""

from __future__ import annotations

import numpy as np
from nibabel.affines import apply_affine

from csvdnet.config import PreprocessConfig
from csvdnet.io import Image
from csvdnet.preprocessing import PreprocessMeta

# centre (mm), radii (mm), intensity per contrast; painted in order, later tissues on top.
BRAIN = ((0.0, 1.0, 0.0), (28.0, 33.0, 26.0))
LESION = ((10.0, 14.0, 9.0), (4.0, 4.0, 4.0))
TISSUES = [
    ((0.0, 0.0, 0.0), (40.0, 45.0, 38.0), {"flair": 0.8, "t1": 0.9, "t2": 0.7}),  # scalp
    ((0.0, 0.0, 0.0), (36.0, 41.0, 34.0), {"flair": 0.05, "t1": 0.05, "t2": 0.05}),  # skull
    ((0.0, 0.0, 0.0), (30.0, 35.0, 28.0), {"flair": 0.1, "t1": 0.15, "t2": 1.0}),  # CSF
    (*BRAIN, {"flair": 0.55, "t1": 0.8, "t2": 0.45}),
    ((-6.0, 2.0, 4.0), (4.0, 11.0, 5.0), {"flair": 0.1, "t1": 0.15, "t2": 1.0}),  # ventricles
    ((6.0, 3.0, 3.0), (3.5, 9.0, 5.0), {"flair": 0.1, "t1": 0.15, "t2": 1.0}),
    ((-13.0, -4.0, -3.0), (5.0, 6.0, 5.0), {"flair": 0.7, "t1": 0.6, "t2": 0.6}),  # nuclei
    ((12.0, -2.0, -2.0), (4.0, 7.0, 4.0), {"flair": 0.7, "t1": 0.6, "t2": 0.6}),
    (*LESION, {"flair": 1.0, "t1": 0.4, "t2": 0.9}),
    ((0.0, -20.0, -12.0), (9.0, 7.0, 8.0), {"flair": 0.65, "t1": 0.7, "t2": 0.5}),  # pons
]
_rng = np.random.default_rng(7)
for _ in range(16):  # small blobs all over the brain, so that every rotation shows
    _direction = _rng.normal(size=3)
    _centre = _direction / np.linalg.norm(_direction) * _rng.uniform(12, 20) * [1.0, 1.2, 0.9]
    _value = float(_rng.choice([0.15, 0.9]))
    TISSUES.append((tuple(_centre), (3.5, 3.5, 3.5),
                    {"flair": _value, "t1": 1.1 - _value, "t2": _value}))
TEXTURE = {"flair": 0.2, "t1": -0.16, "t2": 0.2}  # gyral pattern in the brain


def _inside(world: np.ndarray, centre, radii, edge: float = 1.0) -> np.ndarray:
    """Smooth membership of an ellipsoid (a sigmoid of the distance to its surface, ~mm)."""
    q = np.sqrt((((world - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(-1))
    return 1.0 / (1.0 + np.exp(np.clip((q - 1.0) * np.mean(radii) / edge, -50, 50)))


def phantom(world: np.ndarray, contrast: str = "flair") -> np.ndarray:
    """Intensity of the phantom at (N, 3) world points (RAS mm)."""
    value = np.zeros(len(world))
    for centre, radii, values in TISSUES:
        m = _inside(world, centre, radii)
        value = value * (1 - m) + values[contrast] * m
        if (centre, radii) == BRAIN:
            texture = np.prod(np.sin(world / [2.46, 2.82, 2.34] + [0.3, 1.1, 0.7]), axis=1)
            value = value + m * TEXTURE[contrast] * texture
    return 1000.0 * value


def grid_world(affine: np.ndarray, shape) -> np.ndarray:
    """World coordinates (N, 3) of every voxel centre of a grid, C order."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return index.reshape(-1, 3) @ affine[:3, :3].T + affine[:3, 3]


def rotation(degrees: float, axis) -> np.ndarray:
    """4x4 rotation about the world origin."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = np.deg2rad(degrees)
    out = np.eye(4)
    out[:3, :3] = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    return out


def apply(matrix: np.ndarray, points) -> np.ndarray:
    """``matrix`` applied to (N, 3) points (a single point becomes (1, 3))."""
    return apply_affine(matrix, np.asarray(points, dtype=float).reshape(-1, 3))


def grid(shape, spacing, orientation: str = "RAS", turn: np.ndarray | None = None) -> np.ndarray:
    """Affine of a grid centred on the world origin, stored RAS, LPS or axes permuted (PIR),
    optionally turned (oblique)."""
    shape, spacing = np.asarray(shape), np.asarray(spacing, dtype=float)
    axes = {"RAS": np.eye(3), "LPS": np.diag([-1.0, -1.0, 1.0]),
            "PIR": np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, -1.0, 0]])}[orientation]
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing
    affine[:3, 3] = -affine[:3, :3] @ ((shape - 1) / 2)
    return affine if turn is None else turn @ affine


def image(affine, shape, contrast="flair", motion=None, name=None, folder=None) -> Image:
    """The phantom sampled on a grid; ``motion`` (4x4, world -> world) moves the head first."""
    world = grid_world(affine, shape)
    if motion is not None:
        world = apply(np.linalg.inv(motion), world)
    path = None if folder is None else folder / f"{name or contrast}.nii.gz"
    return Image(phantom(world, contrast).reshape(shape), affine, path)


def truth_mask(affine, shape, centre, radii, motion=None) -> np.ndarray:
    world = grid_world(affine, shape)
    if motion is not None:
        world = apply(np.linalg.inv(motion), world)
    return (_inside(world, centre, radii) > 0.5).reshape(shape)


def cfg(**changes) -> PreprocessConfig:
    """Fast settings for 2 mm phantoms: 2 mm working spacing, no registration."""
    return PreprocessConfig(**{"spacing": (2.0, 2.0, 2.0), "register": False,
                               "pad_multiple": 8, **changes})


def expected_channel(meta: PreprocessMeta, contrast: str, name: str) -> np.ndarray:
    """The phantom sampled straight on the working grid, normalised with ``meta``'s values."""
    values = phantom(grid_world(meta.working_affine, meta.working_shape), contrast)
    p = meta.normalisation[name]
    clipped = np.clip(values, p["clip_low"], p["clip_high"])
    return ((clipped - p["mean"]) / p["std"]).reshape(meta.working_shape)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def rotation_error_degrees(a: np.ndarray, b: np.ndarray) -> float:
    r = a[:3, :3].T @ b[:3, :3]
    return float(np.rad2deg(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


SHAPE = (47, 47, 47)  # odd: the centre voxel is at the origin in every orientation
SPACING = (2.0, 2.0, 2.0)
