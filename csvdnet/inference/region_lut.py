"""A user's parcellation with a lookup table (FreeSurfer, SynthSeg, BIDS ``_dseg``) as csvdnet
regions.

``csvdnet predict --regions labels`` takes each subject's own ``regions`` label. In csvdnet's
codes (:data:`csvdnet.atlas.REGION_CODES`) it is used as it is. With a lookup table beside it
(the BIDS ``_dseg`` convention: the label's name with ``.tsv`` instead of ``.nii[.gz]``, tab
separated, columns ``index`` and ``name``), its labels are translated by name:

======================  ======================================================================
class                   names (case, ``Left-`` / ``Right-`` / ``lh`` / ``rh`` prefixes, spaces
                        and underscores ignored)
======================  ======================================================================
background              ``Unknown``, ``background``
ventricles              ``Lateral-Ventricle``, ``Inf-Lat-Vent``, ``3rd-Ventricle``,
                        ``5th-Ventricle``, ``choroid-plexus``
csf                     ``CSF``, ``4th-Ventricle``, ``vessel``
infratentorial          ``Cerebellum-*``, ``Brain-Stem``, ``VentralDC``, ``pons`` ...
basal_ganglia           ``Caudate``, ``Putamen``, ``Pallidum``, ``Accumbens-area``
thalamus                ``Thalamus``, ``Thalamus-Proper``
cortex                  ``Cerebral-Cortex``, ``ctx-*`` (aparc parcels), ``Hippocampus``,
                        ``Amygdala``
white matter            ``Cerebral-White-Matter``, ``wm-*`` (wmparc), ``UnsegmentedWhiteMatter``,
                        ``WM-hypointensities``, ``non-WM-hypointensities``, ``CC_*``,
                        ``Optic-Chiasm``
csvdnet's own names     each :data:`~csvdnet.atlas.REGION_CODES` name, taken as it is
======================  ======================================================================

Cortex and white matter are then divided as :mod:`csvdnet.atlas` divides the template's
(:func:`divide_white_matter`, the same order and distances on the subject's own grid): cortex
is ``juxtacortical`` (lobar); white matter within :data:`~csvdnet.atlas.PERIVENTRICULAR_MM` of
the ventricles is ``periventricular``, within :data:`~csvdnet.atlas.JUXTACORTICAL_MM` of the
cortex ``juxtacortical``, above the lateral ventricles' roof (MNI z through the template's
affine) ``centrum_semiovale``, and the rest ``deep_wm``. A name in none of these classes is
refused, naming the table and the names, rather than guessed.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from csvdnet.atlas import JUXTACORTICAL_MM, PERIVENTRICULAR_MM, REGION_CODES
from csvdnet.errors import CsvdnetInputError

__all__ = ["CLASSES", "divide_white_matter", "lookup_table", "lookup_table_path",
           "translate_parcellation"]

CORTEX, WHITE_MATTER = 100, 101
"""Class codes (outside :data:`~csvdnet.atlas.REGION_CODES`) of tissue still to be divided."""

CLASSES: dict[str, int] = {
    "unknown": REGION_CODES["background"],
    "lateralventricle": REGION_CODES["ventricles"],
    "inflatvent": REGION_CODES["ventricles"],
    "3rdventricle": REGION_CODES["ventricles"],
    "5thventricle": REGION_CODES["ventricles"],
    "choroidplexus": REGION_CODES["ventricles"],
    "csf": REGION_CODES["csf"],
    "4thventricle": REGION_CODES["csf"],
    "vessel": REGION_CODES["csf"],
    "brainstem": REGION_CODES["infratentorial"],
    "ventraldc": REGION_CODES["infratentorial"],
    "pons": REGION_CODES["infratentorial"],
    "medulla": REGION_CODES["infratentorial"],
    "midbrain": REGION_CODES["infratentorial"],
    "caudate": REGION_CODES["basal_ganglia"],
    "putamen": REGION_CODES["basal_ganglia"],
    "pallidum": REGION_CODES["basal_ganglia"],
    "accumbensarea": REGION_CODES["basal_ganglia"],
    "thalamus": REGION_CODES["thalamus"],
    "thalamusproper": REGION_CODES["thalamus"],
    "cerebralcortex": CORTEX,
    "hippocampus": CORTEX,
    "amygdala": CORTEX,
    "cerebralwhitematter": WHITE_MATTER,
    "unsegmentedwhitematter": WHITE_MATTER,
    "wmhypointensities": WHITE_MATTER,
    "nonwmhypointensities": WHITE_MATTER,
    "opticchiasm": WHITE_MATTER,
    **{name.replace("_", ""): code for name, code in REGION_CODES.items()},
}
"""Normalised structure name (:func:`_normalise`) -> csvdnet region code, or :data:`CORTEX` /
:data:`WHITE_MATTER` for tissue :func:`divide_white_matter` divides."""

_PREFIXES = (("cerebellum", REGION_CODES["infratentorial"]), ("ctx", CORTEX),
             ("wm", WHITE_MATTER), ("cc", WHITE_MATTER))


def _normalise(name: str) -> str:
    """Lower case, no separators, no hemisphere prefix: ``Left-Lateral-Ventricle`` ->
    ``lateralventricle``; ``ctx-lh-precuneus`` -> ``ctxprecuneus``."""
    text = name.strip().lower().replace("_", "-").replace(" ", "-")
    text = re.sub(r"^(left|right)-", "", text)
    text = re.sub(r"-(lh|rh)-", "-", text)
    text = re.sub(r"^(lh|rh)-", "", text)
    return text.replace("-", "")


def _class_of(name: str) -> int | None:
    key = _normalise(name)
    if key in CLASSES:
        return CLASSES[key]
    for prefix, code in _PREFIXES:
        if key.startswith(prefix) and key != prefix:
            return code
    return None


def lookup_table_path(label: Path) -> Path:
    """Where a label's lookup table is: its name with ``.tsv`` for ``.nii[.gz]``."""
    name = label.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return label.with_name(name[: -len(suffix)] + ".tsv")
    return label.with_name(name + ".tsv")


def lookup_table(path: Path) -> dict[int, int]:
    """Label value -> csvdnet region code (or :data:`CORTEX` / :data:`WHITE_MATTER`) from a
    lookup table (columns ``index`` and ``name``, tab separated).

    Raises:
        CsvdnetInputError: Unreadable, without the two columns, a bad index, or names in no
            class (all of them listed).
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CsvdnetInputError(path, f"cannot read the lookup table ({exc})") from None
    if not rows or not {"index", "name"} <= set(rows[0]):
        raise CsvdnetInputError(path, "a lookup table needs tab-separated columns 'index' "
                                      "and 'name' (the BIDS _dseg.tsv convention)")
    table: dict[int, int] = {}
    unknown: list[str] = []
    for number, row in enumerate(rows, start=2):
        try:
            index = int(str(row["index"]).strip())
        except ValueError:
            raise CsvdnetInputError(path, f"line {number}: index {row['index']!r} is not a "
                                          f"whole number") from None
        code = _class_of(str(row["name"] or ""))
        if code is None:
            unknown.append(f"{index} {row['name']}")
        else:
            table[index] = code
    if unknown:
        raise CsvdnetInputError(path, f"structures csvdnet cannot place in a region: "
                                      f"{', '.join(unknown[:12])}"
                                      + (f" (+{len(unknown) - 12} more)" if len(unknown) > 12
                                         else "")
                                      + "; rename them to a csvdnet region name "
                                        f"({', '.join(REGION_CODES)}) in the table")
    return table


def translate_parcellation(data: np.ndarray, table: dict[int, int], affine: np.ndarray,
                           world_to_mni: np.ndarray, path: Path) -> np.ndarray:
    """A parcellation's labels as csvdnet region codes, cortex and white matter divided.

    Args:
        data: Whole-number labels.
        table: :func:`lookup_table`'s mapping.
        affine: The label image's voxel -> world affine.
        world_to_mni: 4x4 world -> MNI (the template's affine; gives "above the ventricles").
        path: The label file (for errors).

    Raises:
        CsvdnetInputError: A label value that is not in the table (values listed).
    """
    values = np.unique(data).astype(int)
    missing = [int(v) for v in values if v not in table]
    if missing:
        raise CsvdnetInputError(path, f"label values {missing[:8]} are not in its lookup table "
                                      f"{lookup_table_path(path).name}")
    lut = np.zeros(int(values.max()) + 1 if len(values) else 1, dtype=np.int32)
    for value in values:
        lut[value] = table[int(value)]
    classes = lut[np.asarray(data, dtype=np.int64)]
    return divide_white_matter(classes, affine, world_to_mni)


def divide_white_matter(classes: np.ndarray, affine: np.ndarray,
                        world_to_mni: np.ndarray) -> np.ndarray:
    """Region codes from classes: :data:`CORTEX` and :data:`WHITE_MATTER` divided by the
    atlas's rules (module docstring); every other value is already a region code."""
    from scipy import ndimage

    spacing = np.sqrt(np.sum(np.asarray(affine, np.float64)[:3, :3] ** 2, axis=0))
    regions = np.where(classes >= CORTEX, 0, classes).astype(np.uint8)
    cortex, white = classes == CORTEX, classes == WHITE_MATTER
    regions[cortex] = REGION_CODES["juxtacortical"]
    ventricles = classes == REGION_CODES["ventricles"]
    unassigned = white.copy()

    def assign(name: str, where: np.ndarray) -> None:
        where = where & unassigned
        regions[where] = REGION_CODES[name]
        unassigned[where] = False

    if ventricles.any():
        distance = ndimage.distance_transform_edt(~ventricles, sampling=spacing)
        assign("periventricular", distance <= PERIVENTRICULAR_MM)
    if cortex.any():
        distance = ndimage.distance_transform_edt(~cortex, sampling=spacing)
        assign("juxtacortical", distance <= JUXTACORTICAL_MM)
    if ventricles.any():
        to_mni = np.asarray(world_to_mni, np.float64) @ np.asarray(affine, np.float64)
        grid = np.indices(classes.shape[:3]).reshape(3, -1)
        mni_z = (to_mni[2, :3] @ grid + to_mni[2, 3]).reshape(classes.shape[:3])
        assign("centrum_semiovale", mni_z > mni_z[ventricles].max())
    assign("deep_wm", unassigned)
    return regions
