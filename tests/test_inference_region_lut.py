"""A parcellation with a lookup table (FreeSurfer / SynthSeg names, BIDS _dseg.tsv) as csvdnet
regions: names to classes, white matter divided by the atlas's rules on a hand-made volume."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _oracle import SHAPE, mni_at_world_origin, normalised_level, oracle_predictor, write_subject

from csvdnet.atlas import REGION_CODES as R
from csvdnet.errors import CsvdnetInputError
from csvdnet.inference import region_lut
from csvdnet.io import Subject


def _table(path, rows):
    path.write_text("index\tname\n" + "".join(f"{i}\t{n}\n" for i, n in rows))
    return path


@pytest.mark.parametrize("name, code", [
    ("Left-Putamen", R["basal_ganglia"]), ("Right-Accumbens-area", R["basal_ganglia"]),
    ("Left-Thalamus-Proper", R["thalamus"]), ("left thalamus", R["thalamus"]),
    ("Left-Lateral-Ventricle", R["ventricles"]), ("3rd-Ventricle", R["ventricles"]),
    ("4th-Ventricle", R["csf"]), ("CSF", R["csf"]), ("Brain-Stem", R["infratentorial"]),
    ("Right-Cerebellum-Cortex", R["infratentorial"]), ("ctx-lh-precuneus", region_lut.CORTEX),
    ("left cerebral cortex", region_lut.CORTEX), ("Left-Hippocampus", region_lut.CORTEX),
    ("left cerebral white matter", region_lut.WHITE_MATTER),
    ("wm-rh-insula", region_lut.WHITE_MATTER), ("CC_Posterior", region_lut.WHITE_MATTER),
    ("WM-hypointensities", region_lut.WHITE_MATTER), ("Unknown", R["background"]),
    ("centrum_semiovale", R["centrum_semiovale"]), ("deep_wm", R["deep_wm"])])
def test_structure_names_of_freesurfer_synthseg_and_csvdnet(tmp_path, name, code):
    table = region_lut.lookup_table(_table(tmp_path / "seg.tsv", [(7, name)]))
    assert table == {7: code}


def test_a_table_with_names_in_no_class_or_without_its_columns_is_refused(tmp_path):
    path = _table(tmp_path / "seg.tsv", [(2, "Left-Putamen"), (30, "Left-vessel-wall"),
                                         (77, "Optic-Nerve-Glioma")])
    with pytest.raises(CsvdnetInputError, match=r"seg\.tsv.*30 Left-vessel-wall, 77 Optic"):
        region_lut.lookup_table(path)
    (tmp_path / "bad.tsv").write_text("label,structure\n1,CSF\n")
    with pytest.raises(CsvdnetInputError, match="columns 'index' and 'name'"):
        region_lut.lookup_table(tmp_path / "bad.tsv")
    assert region_lut.lookup_table_path(tmp_path / "sub-1_dseg.nii.gz").name == "sub-1_dseg.tsv"


def test_white_matter_is_divided_by_the_atlas_rules():
    # 1 mm grid, world = voxel index, MNI = world. Ventricles: a block at z 20-23; cortex: the
    # x = 0 plane; the rest white matter.
    classes = np.full((60, 30, 60), region_lut.WHITE_MATTER, np.int32)
    classes[0] = region_lut.CORTEX
    classes[28:33, 10:20, 20:24] = R["ventricles"]
    regions = region_lut.divide_white_matter(classes, np.eye(4), np.eye(4))
    assert regions[0, 5, 5] == R["juxtacortical"]  # cortex
    assert regions[30, 15, 14] == R["periventricular"]  # 6 mm below the ventricles
    assert regions[30, 15, 10] == R["periventricular"]  # 10 mm: the band's edge
    assert regions[30, 15, 9] == R["deep_wm"]  # 11 mm below, far from the cortex
    assert regions[3, 15, 9] == R["juxtacortical"]  # 3 mm from the cortex
    assert regions[4, 15, 9] == R["deep_wm"]
    assert regions[30, 15, 35] == R["centrum_semiovale"]  # above the ventricles' roof (z 23)
    assert regions[45, 15, 24] == R["centrum_semiovale"]  # 12 mm aside, just above the roof
    assert regions[45, 15, 23] == R["deep_wm"]  # level with the roof
    assert regions[30, 15, 21] == R["ventricles"]


def test_predict_takes_a_freesurfer_style_parcellation_with_its_table(tmp_path, monkeypatch):
    mni_at_world_origin(monkeypatch)
    subject = write_subject(tmp_path / "s1", "RAS")
    t1 = nib.load(subject.sequences["t1"])
    labels = np.full(SHAPE, 2, np.int16)  # Left-Cerebral-White-Matter
    labels[10:20, 10:20, 10:20] = 12  # Left-Putamen
    labels[20:24, 10:20, 10:20] = 4  # Left-Lateral-Ventricle
    labels[:2] = 3  # Left-Cerebral-Cortex
    path = tmp_path / "aseg.nii.gz"
    nib.save(nib.Nifti1Image(labels, t1.affine), path)
    _table(tmp_path / "aseg.tsv", [(2, "Left-Cerebral-White-Matter"), (3, "Left-Cerebral-Cortex"),
                                   (4, "Left-Lateral-Ventricle"), (12, "Left-Putamen")])
    supplied = Subject(id="s1", sequences=subject.sequences, labels={"regions": path},
                       label_sequence={"regions": "t1"})
    result = oracle_predictor(normalised_level(subject), regions="labels").predict(supplied)
    assert np.all(result.regions[10:20, 10:20, 10:20] == R["basal_ganglia"])
    assert np.all(result.regions[20:24, 10:20, 10:20] == R["ventricles"])
    assert np.all(result.regions[:2] == R["juxtacortical"])
    assert result.regions[26, 15, 15] == R["periventricular"]  # WM 3 voxels (6 mm) away
    # A label value the table does not list is refused, naming the file and the value.
    labels[5, 5, 5] = 99
    nib.save(nib.Nifti1Image(labels, t1.affine), path)
    with pytest.raises(CsvdnetInputError, match=r"aseg\.nii\.gz.*\[99\].*aseg\.tsv"):
        oracle_predictor(0.0, regions="labels").predict(supplied)
