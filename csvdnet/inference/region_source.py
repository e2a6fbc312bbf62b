"""Where a predicted subject's region map comes from (``csvdnet predict --regions``).

- ``registered``: the MNI152 region atlas placed on the subject's own anatomy by
  :func:`csvdnet.inference.regions.place_regions`, registering the T1 (else the reference
  sequence) with a brain mask chosen by :func:`registration_mask`;
- ``labels``: the subject's own parcellation (:func:`supplied_regions`), sides still from the
  template's affine; the registered map, with a flag, for a subject without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from csvdnet.errors import CsvdnetInputError

__all__ = ["REGION_MASK_MAX_VOXEL_MM", "REGION_SOURCES", "check_region_source", "on_native_grid",
           "region_map", "registration_mask", "supplied_regions"]

REGION_SOURCES = ("registered", "labels")
"""Where a subject's region map comes from: ``registered``, the region atlas placed on the
subject by :func:`csvdnet.inference.regions.place_regions`; ``labels``, the subject's own
``regions`` label (``labels/regions.nii.gz``, a manifest column ``regions`` or
``regions@<sequence>``: a parcellation in :data:`csvdnet.atlas.REGION_CODES`, e.g. derived
from FreeSurfer or SynthSeg), the registered map where a subject has none (with a flag)."""


def check_region_source(regions: str) -> str:
    """``regions`` if it is one of :data:`REGION_SOURCES`.

    Raises:
        CsvdnetInputError: An unknown source (named as the ``--regions`` option).
    """
    if regions not in REGION_SOURCES:
        raise CsvdnetInputError("--regions", f"unknown region source {regions!r}; known: "
                                             f"{', '.join(REGION_SOURCES)}")
    return regions


def region_map(source_kind: str, subject: Any, images: dict[str, Any], meta: Any,
               brain_working: np.ndarray, flags: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The subject's region map on the reference grid and its reference world -> MNI affine.

    Args:
        source_kind: One of :data:`REGION_SOURCES`.
        subject: The :class:`csvdnet.io.Subject` (its ``regions`` label, if any).
        images: The loaded sequences by name.
        meta: The subject's :class:`csvdnet.preprocessing.PreprocessMeta`.
        brain_working: Preprocessing's brain mask on the working grid.
        flags: The report's warnings; a missing supplied map is added to them.
    """
    from csvdnet.inference import regions as regioning

    reference = images[meta.reference]
    affine = np.asarray(reference.affine, np.float64)
    # T1 shows the template's contrast best; its world is the reference's moved by the
    # co-registration: the reference grid is mapped through it to the T1's world.
    source = "t1" if "t1" in images else meta.reference
    supplied = (subject.labels.get("regions") if source_kind == "labels"
                and isinstance(getattr(subject, "labels", None), dict) else None)
    native_mask = registration_mask(brain_working, meta, images[source], source)
    transform = np.asarray(meta.sequence_transforms[source], np.float64)
    if supplied is not None:
        # The user's parcellation; the template's affine still gives left and right.
        world_to_mni = regioning.template_to_subject(images[source], native_mask) @ transform
        return supplied_regions(Path(supplied), subject, meta, reference.shape, affine,
                                world_to_mni), world_to_mni
    if source_kind == "labels":
        flags.append("no region map supplied for this subject (--regions labels): regions "
                     "placed by template registration")
    return regioning.place_regions(images[source], native_mask, reference.shape, affine,
                                   transform)


REGION_MASK_MAX_VOXEL_MM = 2.0
"""Up to this voxel size the template registration finds its own brain mask on the image it
registers: preprocessing's mask is the union of two sequences' foregrounds (2.9 l where the
brain is ~1.3 l on a demo subject: scalp kept), fine for a crop box but not to bound a
registration metric (basal ganglia Dice 0.49 with it vs 0.88 with the T1's own mask, demo
subject, seed 51). Coarser images get preprocessing's mask: the automatic mask needs voxels of
~2 mm or finer to cut the brain from the scalp."""


def registration_mask(working_mask: np.ndarray, meta: Any, image: Any,
                       sequence: str) -> np.ndarray | None:
    """The brain mask the template registration is given (None: it finds its own)."""
    sizes = np.sqrt(np.sum(np.asarray(image.affine, np.float64)[:3, :3] ** 2, axis=0))
    if np.all(sizes <= REGION_MASK_MAX_VOXEL_MM + 1e-6):
        return None
    return on_native_grid(working_mask, meta, image, sequence)


def on_native_grid(working_mask: np.ndarray, meta: Any, image: Any, sequence: str) -> np.ndarray:
    """A working-grid mask resampled onto ``sequence``'s own grid (the brain mask preprocessing
    found, given to the template registration: its own mask fails on coarse images)."""
    from scipy import ndimage

    native_to_working = np.linalg.inv(meta.working_to_native(sequence))
    return ndimage.affine_transform(np.asarray(working_mask, np.float32), native_to_working[:3, :3],
                                    native_to_working[:3, 3], output_shape=image.shape[:3],
                                    order=1, mode="constant", cval=0.0) >= 0.5


def supplied_regions(path: Path, subject: Any, meta: Any, shape: Sequence[int],
                      affine: np.ndarray, world_to_mni: np.ndarray | None = None) -> np.ndarray:
    """A subject's own region map on the reference grid: nearest neighbour through the
    co-registration of the sequence it is drawn on. Codes of :data:`csvdnet.atlas.REGION_CODES`,
    or any parcellation with a lookup table beside it (FreeSurfer / SynthSeg names, a BIDS
    ``_dseg.tsv``: :mod:`csvdnet.inference.region_lut`), translated on its own grid.

    Args:
        world_to_mni: Reference world -> MNI (the template's affine); needed with a lookup table
            (the centrum semiovale is the white matter above the ventricles in MNI z).

    Raises:
        CsvdnetInputError: Unreadable, codes that are not region codes, or a lookup table that
            does not fit (naming the file).
    """
    from scipy import ndimage

    from csvdnet.atlas import REGION_CODES
    from csvdnet.inference import region_lut
    from csvdnet.io import load_nifti

    image = load_nifti(path, kind="labelmap")
    data = np.asarray(image.data)
    if not np.all(np.isfinite(data)) or np.any(data != np.round(data)) or np.any(data < 0):
        raise CsvdnetInputError(path, "a region map must hold whole, non-negative labels")
    sequence = getattr(subject, "label_sequence", {}).get("regions", meta.reference)
    to_sequence = np.asarray(meta.sequence_transforms.get(sequence, np.eye(4)), np.float64)
    table_path = region_lut.lookup_table_path(path)
    if table_path.is_file():
        table = region_lut.lookup_table(table_path)
        label_to_mni = (np.eye(4) if world_to_mni is None else
                        np.asarray(world_to_mni, np.float64)) @ np.linalg.inv(to_sequence)
        data = region_lut.translate_parcellation(data, table, np.asarray(image.affine),
                                                 label_to_mni, path)
    unknown = sorted(set(np.unique(data).astype(int).tolist()) - set(REGION_CODES.values()))
    if unknown:
        raise CsvdnetInputError(path, f"codes {unknown[:8]} are not csvdnet region codes "
                                      f"({', '.join(f'{v} {k}' for k, v in REGION_CODES.items())}"
                                      f"); other labels need a lookup table "
                                      f"{table_path.name} (columns index, name) beside it")
    # reference voxel -> reference world -> the sequence's world -> the label's voxel
    matrix = np.linalg.inv(np.asarray(image.affine, np.float64)) @ to_sequence @ affine
    return ndimage.affine_transform(data.astype(np.uint8), matrix[:3, :3], matrix[:3, 3],
                                    output_shape=tuple(int(n) for n in shape[:3]), order=0,
                                    mode="constant", cval=0)
