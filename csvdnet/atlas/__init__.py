"""MNI152 anatomy and the region atlas derived from it: the one source of brain regions.

One concept per module:

- :mod:`csvdnet.atlas.template`: the MNI152 2009a template and tissue maps (nilearn, offline),
  the :class:`Atlas` on its MNI grid, and :func:`load_atlas` with its disk cache.
- :mod:`csvdnet.atlas.regions`: the region codes (:data:`REGION_CODES`, :data:`LOBAR_REGIONS`,
  :data:`DEEP_REGIONS`, the band widths) and the rules deriving the region map.
- :mod:`csvdnet.atlas.subject`: the region map on a subject's grid through a world -> MNI
  mapping (:func:`regions_in_subject`, :func:`world_to_mni_from_mask`).

Every public name is importable from ``csvdnet.atlas`` as before.
"""

from csvdnet.atlas.regions import (DEEP_REGIONS, JUXTACORTICAL_MM, LOBAR_REGIONS,
                                   PERIVENTRICULAR_MM, REGION_CODES, REGION_NAMES)
from csvdnet.atlas.subject import regions_in_subject, world_to_mni_from_mask
from csvdnet.atlas.template import Atlas, load_atlas

__all__ = [
    "Atlas",
    "DEEP_REGIONS",
    "JUXTACORTICAL_MM",
    "LOBAR_REGIONS",
    "PERIVENTRICULAR_MM",
    "REGION_CODES",
    "REGION_NAMES",
    "load_atlas",
    "regions_in_subject",
    "world_to_mni_from_mask",
]
