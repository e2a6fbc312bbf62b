"""The record that exactly inverts preprocessing: :class:`PreprocessMeta` (nnU-Net's properties)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
from nibabel.affines import apply_affine, voxel_sizes

from csvdnet.preprocessing.grid import _ints, _resample, _to_native

META_VERSION = 1
"""Version of the :meth:`PreprocessMeta.to_dict` layout."""


@dataclasses.dataclass(eq=False)  # array fields: element-wise equality has no single truth
class PreprocessMeta:
    """Everything needed to map working-grid arrays and points back to the reference grid.

    Attributes:
        reference: Name of the reference sequence.
        channels: Channel order of the preprocessed array.
        reference_shape: Shape of the reference image.
        reference_affine: 4x4 voxel -> world (RAS mm) affine of the reference image.
        working_shape: Shape (X, Y, Z) of the working grid.
        working_affine: 4x4 voxel -> world (RAS mm, reference frame) affine of the working grid:
            diagonal (canonical RAS) at the working spacing.
        brain_box: ``(start, stop)`` working-voxel indices of the brain's bounding box (without
            margin or padding).
        sequence_transforms: Per sequence, the 4x4 rigid world -> world matrix from the
            reference's world to that sequence's world (identity for the reference or when
            registration is off).
        sequence_grids: Per sequence, its native grid: ``{"path", "shape", "affine"}``.
        normalisation: Per channel ``{"clip_low", "clip_high", "mean", "std"}``: the raw
            intensities were clipped to ``[clip_low, clip_high]``, then mapped to
            ``(x - mean) / std``.
        brain_mask: How the brain region was obtained (``"auto"``, ``"label"``, ``"none"``).
        config: The :class:`~csvdnet.config.PreprocessConfig` used, as plain data.
        version: Layout version (:data:`META_VERSION`).
    """

    reference: str
    channels: list[str]
    reference_shape: tuple[int, int, int]
    reference_affine: np.ndarray
    working_shape: tuple[int, int, int]
    working_affine: np.ndarray
    brain_box: tuple[tuple[int, int, int], tuple[int, int, int]]
    sequence_transforms: dict[str, np.ndarray]
    sequence_grids: dict[str, dict[str, Any]]
    normalisation: dict[str, dict[str, float]]
    brain_mask: str
    config: dict[str, Any]
    version: int = META_VERSION

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Working voxel size in mm (x, y, z)."""
        return tuple(float(s) for s in voxel_sizes(self.working_affine))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (arrays as nested lists)."""
        return {
            "version": self.version,
            "reference": self.reference,
            "channels": list(self.channels),
            "reference_shape": list(self.reference_shape),
            "reference_affine": np.asarray(self.reference_affine).tolist(),
            "working_shape": list(self.working_shape),
            "working_affine": np.asarray(self.working_affine).tolist(),
            "brain_box": [list(self.brain_box[0]), list(self.brain_box[1])],
            "sequence_transforms": {k: np.asarray(v).tolist()
                                    for k, v in self.sequence_transforms.items()},
            "sequence_grids": {k: {"path": g["path"], "shape": list(g["shape"]),
                                   "affine": np.asarray(g["affine"]).tolist()}
                               for k, g in self.sequence_grids.items()},
            "normalisation": {k: dict(v) for k, v in self.normalisation.items()},
            "brain_mask": self.brain_mask,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessMeta:
        """Rebuild a meta from :meth:`to_dict` output.

        Raises:
            ValueError: Unknown layout version. KeyError: a field is missing.
        """
        if data.get("version") != META_VERSION:
            raise ValueError(f"preprocessing meta version {data.get('version')!r} is not "
                             f"{META_VERSION}")
        return cls(
            reference=data["reference"],
            channels=list(data["channels"]),
            reference_shape=_ints(data["reference_shape"]),
            reference_affine=np.array(data["reference_affine"], dtype=np.float64),
            working_shape=_ints(data["working_shape"]),
            working_affine=np.array(data["working_affine"], dtype=np.float64),
            brain_box=(_ints(data["brain_box"][0]), _ints(data["brain_box"][1])),
            sequence_transforms={k: np.array(v, dtype=np.float64)
                                 for k, v in data["sequence_transforms"].items()},
            sequence_grids={k: {"path": g["path"], "shape": _ints(g["shape"]),
                                "affine": np.array(g["affine"], dtype=np.float64)}
                            for k, g in data["sequence_grids"].items()},
            normalisation={k: {n: float(x) for n, x in v.items()}
                           for k, v in data["normalisation"].items()},
            brain_mask=data["brain_mask"],
            config=dict(data["config"]),
        )

    def world_to_working(self, points: np.ndarray, sequence: str | None = None) -> np.ndarray:
        """Map world points (RAS mm) to float working-voxel coordinates.

        Args:
            points: ``(N, 3)`` world coordinates.
            sequence: The sequence whose scanner frame the points are in (its rigid
                co-registration is applied); ``None`` = the reference's.

        Returns:
            ``(N, 3)`` float working-voxel coordinates.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if sequence is not None:
            points = apply_affine(np.linalg.inv(self.sequence_transforms[sequence]), points)
        return apply_affine(np.linalg.inv(self.working_affine), points)

    def working_to_world(self, voxels: np.ndarray, sequence: str | None = None) -> np.ndarray:
        """Map working-voxel coordinates to world points (RAS mm); inverse of
        :meth:`world_to_working`."""
        points = apply_affine(self.working_affine,
                              np.asarray(voxels, dtype=np.float64).reshape(-1, 3))
        if sequence is not None:
            points = apply_affine(self.sequence_transforms[sequence], points)
        return points

    def invert(self, array: np.ndarray, order: int = 1) -> np.ndarray:
        """Put a working-grid array back onto the reference grid.

        Args:
            array: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` array on the working grid.
            order: Spline order (0 = nearest neighbour, for label maps; 1 = trilinear, for
                probabilities and images).

        Returns:
            Array of the reference image's shape (plus the channel axis if given), 0 outside the
            working grid. Nearest neighbour keeps the dtype; higher orders give floats.
        """
        array = np.asarray(array)
        if array.ndim not in (3, 4) or tuple(array.shape[:3]) != tuple(self.working_shape):
            raise ValueError(f"array of shape {array.shape} is not on the working grid "
                             f"{tuple(self.working_shape)} (optionally with a channel axis)")
        ref_to_work = np.linalg.inv(self.working_affine) @ self.reference_affine
        dtype = array.dtype if order == 0 else np.result_type(array.dtype, np.float32)
        if array.ndim == 3:
            return _resample(array, ref_to_work, self.reference_shape, order, dtype)
        return np.stack([_resample(array[..., c], ref_to_work, self.reference_shape, order, dtype)
                         for c in range(array.shape[-1])], axis=-1)

    def working_to_native(self, sequence: str) -> np.ndarray:
        """The 4x4 map from working voxels to ``sequence``'s native voxels (one resampling)."""
        return _to_native(self.sequence_grids[sequence]["affine"],
                          self.sequence_transforms[sequence], self.working_affine)
