"""Small vessel disease markers, and the mimics a model must ignore, drawn into an anatomy.

Each marker has the look and the place radiologists know (STRIVE, Wardlaw et al. 2013):

- **WMH** replace white matter (:func:`~csvdnet.synth.lesions.wmh._draw_wmh`). Periventricular grade (Fazekas PV) 1: caps at
  the frontal and occipital horns and / or a pencil-thin lining; 2: a smooth halo; 3: an
  irregular halo whose fingers reach into the deep WM. Deep grade 1: punctate foci; 2: foci
  beginning to merge (clusters); 3: large confluent areas in the centrum semiovale. Below grade
  3 the periventricular lesions stay inside the 10 mm band and the deep foci outside it, so
  the grades match the atlas's periventricular / deep regions; every cap and focus is large
  enough to be labelled on the reference grid.
- **Lacunes**: round / ovoid cavities of 3-15 mm (axial), often elongated along the perforating
  arteries (vertically), filled with CSF-like fluid, most (70 %) with a gliotic rim that is bright
  on FLAIR; in the basal ganglia, thalamus or deep WM.
- **RSSI**: lobulated ovoid acute infarcts, < 20 mm axially (up to ~30 mm along the perforator),
  in the perforator territories (basal ganglia, thalamus, corona radiata, pons); bright on DWI,
  FLAIR and T2.
- **Microbleeds**: susceptibility blooms of 2-10 mm visible diameter (:class:`Bloom`) whose dark
  spot on SWI is wider than on T2 and absent on FLAIR / T1; lobar (cortico-subcortical
  junction) or deep / infratentorial.
- **EPVS**: CSF-filled tubes < 3 mm wide along the perforating vessels: near-vertical in the
  basal ganglia (dots on axial slices), radial in the centrum semiovale (lines). The basal
  ganglia count on the rated side and slice is the plan's.
- **Mimics**: veins (dark tubes on SWI only: medullary veins radial in the deep WM, internal
  cerebral and thalamostriate veins, cortical veins in the sulci), sulcal and cisternal CSF
  (already in the anatomy), grade-1 periventricular caps in subjects whose WMH score no point.

Shapes are rasterised with supersampling, so their partial volume is exact to 1/27 of a voxel
(on the fine grid, and straight onto the reference grid for the lacune and RSSI labels);
painting conserves volume (:meth:`Anatomy.paint`). Lesions of the same kind keep more than two
reference voxels apart, so each is one 26-connected component of its label.

One module per marker, drawn in this order by :func:`plant_lesions` (:mod:`.plant`), which
fixes the order of the random draws: :mod:`.wmh`, :mod:`.lacunes`, :mod:`.rssi`,
:mod:`.microbleeds`, :mod:`.epvs`, :mod:`.veins` (the mimics). :mod:`.placer` chooses free
positions in the right regions and :mod:`.drawing` orients, lobulates and paints the shapes.
"""

from csvdnet.synth.lesions.plant import Lesions, plant_lesions
from csvdnet.synth.shapes import Bloom, Ellipsoid, Tube, rasterize, reference_mask

__all__ = ["Bloom", "Ellipsoid", "Lesions", "Tube", "plant_lesions", "rasterize", "reference_mask"]
