"""Bring a subject's sequences onto one normalised, channels-last working grid, invertibly.

Pipeline of :func:`preprocess_subject`:

1. The **reference grid** is the grid of the reference sequence (``cfg.reference``, default FLAIR).
   The uncropped working grid is canonical RAS (axes along scanner x, y, z, increasing) at
   ``cfg.spacing`` and covers the reference's field of view. Its lattice passes through the
   reference voxel nearest the centre of the field of view, so a reference stored as RAS, LPS or
   any other axis permutation / flip gives the very same working grid, and at working spacing =
   reference spacing every working voxel centre is a reference voxel centre (exact round trips).
2. A **brain region** on that grid (``cfg.brain_mask``): ``"label"`` the given mask, ``"none"``
   the reference's field of view, ``"auto"`` :func:`auto_brain_mask`.
3. Each other sequence must cover at least half of the brain box (:data:`MIN_OVERLAP`), then is
   rigidly **co-registered** to the reference (:func:`register_sequences`; ``cfg.register``). Its
   world->world transform is kept in the meta and applied to every label drawn on it.
4. The grid is **cropped** to the brain box plus ``cfg.crop_margin_mm`` and **padded** (centred)
   to a multiple of ``cfg.pad_multiple``.
5. Every sequence is resampled **once**, from its native grid straight to the final working grid
   (registration, reorientation, spacing and crop composed into one affine map).
6. Each channel is **normalised** with statistics inside the brain mask: clipped to the
   ``cfg.clip_percentiles`` percentiles, then z-scored. Voxels outside the brain keep their
   (clipped, z-scored) intensities; voxels outside a sequence's field of view read as intensity 0
   before normalisation, like air.

The returned :class:`PreprocessMeta` holds everything to map arrays and points back: see
:meth:`PreprocessMeta.invert`, :meth:`PreprocessMeta.world_to_working` and
:meth:`PreprocessMeta.working_to_world`. :func:`preprocess_labels` maps masks and points with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from nibabel.affines import apply_affine, voxel_sizes

from csvdnet.config import PreprocessConfig
from csvdnet.config import to_dict as config_to_dict
from csvdnet.errors import CsvdnetInputError
from csvdnet.preprocessing.brain_mask import _MASK_HELPERS, _foreground, auto_brain_mask
from csvdnet.preprocessing.grid import (_bounding_box, _crop, _ints, _inside, _location,
                                        _ras_spacing, _resample, _same_grid, _to_native,
                                        _translation, _working_grid)
from csvdnet.preprocessing.meta import PreprocessMeta
from csvdnet.preprocessing.registration import register_sequences

if TYPE_CHECKING:
    from csvdnet.io import Image

# The automatic brain mask is computed on a grid this coarse when the working grid is finer.
_AUTO_MASK_SPACING_MM = 2.0

MIN_OVERLAP = 0.5
"""Smallest fraction of the reference's brain box a sequence's field of view must cover."""


def _given_brain_region(images: Mapping[str, Image], cfg: PreprocessConfig,
                        brain_mask: Image | None, grid: np.ndarray,
                        shape: tuple[int, int, int]) -> np.ndarray:
    """The brain region on the uncropped grid for ``"label"`` (the mask) and ``"none"`` (the
    reference's field of view)."""
    reference = images[cfg.reference]
    to_ref = np.linalg.inv(reference.affine) @ grid
    if cfg.brain_mask == "none":
        return _resample(np.ones(reference.shape[:3], bool), to_ref, shape, 0, bool)
    if brain_mask is None:
        raise CsvdnetInputError(_location(images), "preprocess.brain_mask is 'label' but no "
                                                   "brain_mask label was given")
    if not _same_grid(brain_mask, reference.shape, reference.affine):
        raise CsvdnetInputError(brain_mask.path, f"brain mask grid {tuple(brain_mask.shape)} "
                                                 f"differs from the reference {cfg.reference} "
                                                 f"({reference.path})")
    region = _resample(np.asarray(brain_mask.data) > 0.5, to_ref, shape, 0, bool)
    if not region.any():
        raise CsvdnetInputError(brain_mask.path, "brain mask is empty (all zero)")
    return region


def _check_overlap(images: Mapping[str, Image], reference: str, region: np.ndarray,
                   grid: np.ndarray) -> None:
    """Raise if a sequence's field of view covers less than :data:`MIN_OVERLAP` of the box."""
    start, stop = _bounding_box(region)
    axes = [np.linspace(a, b - 1, num=min(b - a, 16)) for a, b in zip(start, stop)]
    samples = apply_affine(grid, np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T)
    for name, image in images.items():
        if name == reference:
            continue
        voxels = apply_affine(np.linalg.inv(image.affine), samples)
        covered = float(np.mean(_inside(voxels, image.shape)))
        if covered < MIN_OVERLAP:
            raise CsvdnetInputError(
                image.path, f"field of view covers {covered:.0%} of the brain box of the "
                            f"reference {reference} (needs >= {MIN_OVERLAP:.0%}): another "
                            f"session, or a wrong affine?")


def _mask_helper(images: Mapping[str, Image], reference: str) -> str | None:
    return next((n for n in _MASK_HELPERS if n in images and n != reference), None)


def _crop_box(region: np.ndarray, spacing: np.ndarray,
              cfg: PreprocessConfig) -> tuple[np.ndarray, ...]:
    """Start and shape of the working block on the uncropped grid, and the brain box (start,
    stop) in the block.

    The brain box grows by the margin (kept inside the uncropped grid), then symmetrically to
    a multiple of ``cfg.pad_multiple`` (possibly past the field of view).
    """
    box_start, box_stop = _bounding_box(region)
    margin = np.ceil(cfg.crop_margin_mm / spacing - 1e-6).astype(int)
    start = np.maximum(box_start - margin, 0)
    stop = np.minimum(box_stop + margin, region.shape)
    size = stop - start
    padded = -(-size // cfg.pad_multiple) * cfg.pad_multiple
    start = start - (padded - size) // 2
    return start, padded, box_start - start, box_stop - start


def _normalise(volume: np.ndarray, mask: np.ndarray, percentiles: Sequence[float],
               path: Any) -> tuple[np.ndarray, dict[str, float]]:
    """Clip to the in-brain percentiles, z-score with the in-brain mean and std."""
    lo, hi = np.percentile(volume[mask], list(percentiles))
    clipped = np.clip(volume, lo, hi)
    inside = clipped[mask]
    mean, std = float(inside.mean()), float(inside.std())
    if not std > 1e-6 * max(1.0, abs(mean)):
        raise CsvdnetInputError(path, "image is constant inside the brain mask")
    params = {"clip_low": float(lo), "clip_high": float(hi), "mean": mean, "std": std}
    return ((clipped - mean) / std).astype(np.float32), params


def preprocess_subject(images: Mapping[str, Image], cfg: PreprocessConfig,
                       brain_mask: Image | None = None) -> tuple[np.ndarray, PreprocessMeta]:
    """Bring one subject's sequences onto the normalised working grid (see the module doc).

    :func:`preprocess_subject_and_mask` without the brain mask; arguments, result and errors
    as there.
    """
    array, meta, _ = preprocess_subject_and_mask(images, cfg, brain_mask)
    return array, meta


def preprocess_subject_and_mask(images: Mapping[str, Image], cfg: PreprocessConfig,
                                brain_mask: Image | None = None
                                ) -> tuple[np.ndarray, PreprocessMeta, np.ndarray]:
    """:func:`preprocess_subject`, also returning the brain region it used on the working grid.

    Args:
        images: Sequence name -> image, in channel order; must include ``cfg.reference``.
        cfg: Preprocessing settings.
        brain_mask: Brain mask on the reference grid, used when ``cfg.brain_mask == "label"``.

    Returns:
        ``(array, meta, brain)``: float32 ``(X, Y, Z, C)`` array in the channel order of
        ``images``, the :class:`PreprocessMeta` that inverts it, and the bool brain region
        (``cfg.brain_mask``) on the working grid (QC pictures show it).

    Raises:
        CsvdnetInputError: Reference sequence missing; a sequence not covering the brain; a
            brain mask missing, on another grid or empty; a constant image; registration failure.
    """
    if cfg.reference not in images:
        raise CsvdnetInputError(_location(images), f"reference sequence {cfg.reference!r} is "
                                                   f"missing (sequences: {', '.join(images)})")
    reference = images[cfg.reference]
    spacing = (_ras_spacing(reference.affine) if cfg.spacing is None
               else np.asarray(cfg.spacing, dtype=np.float64))
    grid, grid_shape = _working_grid(reference.affine, reference.shape, spacing)

    if cfg.brain_mask == "auto":
        # The automatic mask is found on a grid of at least 2 mm (8x fewer voxels than 1 mm, and
        # the mask only sets the crop box, with a margin, and the normalisation statistics),
        # then taken to the working grid. The reference's foreground stands in for the brain
        # until the helper sequence is registered.
        mask_grid, mask_shape = _working_grid(reference.affine, reference.shape,
                                              np.maximum(spacing, _AUTO_MASK_SPACING_MM))
        reference_coarse = _resample(reference.data,
                                     np.linalg.inv(reference.affine) @ mask_grid, mask_shape, 1)
        region, region_grid = _foreground(reference_coarse), mask_grid
        if not region.any():
            raise CsvdnetInputError(reference.path, "image is constant: no brain to find")
    else:
        region, region_grid = _given_brain_region(images, cfg, brain_mask, grid, grid_shape), grid
    _check_overlap(images, cfg.reference, region, region_grid)

    moving = {name: image for name, image in images.items() if name != cfg.reference}
    registered = register_sequences(reference, moving) if cfg.register and moving else {}
    transforms = {name: registered.get(name, np.eye(4)) for name in images}
    grids = {name: {"path": None if image.path is None else str(image.path),
                    "shape": _ints(image.shape[:3]),
                    "affine": np.asarray(image.affine, dtype=np.float64)}
             for name, image in images.items()}

    def to_native(name: str, working_affine: np.ndarray) -> np.ndarray:
        return _to_native(grids[name]["affine"], transforms[name], working_affine)

    if cfg.brain_mask == "auto":
        helper = _mask_helper(images, cfg.reference)
        volumes = [reference_coarse] + ([] if helper is None else [
            _resample(images[helper].data, to_native(helper, mask_grid), mask_shape, 1)])
        coarse = auto_brain_mask(volumes, voxel_sizes(mask_grid))
        if not coarse.any():
            raise CsvdnetInputError(reference.path, "automatic brain mask is empty: no brain "
                                                    "stands out from the background")
        region = _resample(coarse, np.linalg.inv(mask_grid) @ grid, grid_shape, 0, bool)

    start, shape, box_start, box_stop = _crop_box(region, spacing, cfg)
    working_affine = grid @ _translation(start)
    mask = _crop(region, start, shape)

    channels, normalisation = [], {}
    for name, image in images.items():
        volume = _resample(image.data, to_native(name, working_affine), shape,
                           cfg.interpolation_order)
        volume, normalisation[name] = _normalise(volume, mask, cfg.clip_percentiles, image.path)
        channels.append(volume)

    meta = PreprocessMeta(
        reference=cfg.reference,
        channels=list(images),
        reference_shape=_ints(reference.shape[:3]),
        reference_affine=np.asarray(reference.affine, dtype=np.float64),
        working_shape=_ints(shape),
        working_affine=working_affine,
        brain_box=(_ints(box_start), _ints(box_stop)),
        sequence_transforms=transforms,
        sequence_grids=grids,
        normalisation=normalisation,
        brain_mask=cfg.brain_mask,
        config=config_to_dict(cfg),
    )
    return np.stack(channels, axis=-1), meta, mask
