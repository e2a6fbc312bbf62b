"""Predictor: geometry of every output, missing sequences, test-time flips.

The network is replaced by an oracle that thresholds the FLAIR channel: what these tests check
is everything around the network (preprocessing, windows, inversion onto the reference grid,
postprocessing, files), which must put a finding exactly where the input shows it whatever
the input's orientation.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from _oracle import SHAPE, mni_at_world_origin, normalised_level, oracle_predictor, write_subject
from _phantom import LESION, rotation

from csvdnet.errors import CsvdnetInputError
from csvdnet.inference import outputs
from csvdnet.inference.predictor import Predictor, flip_average
from csvdnet.io import Subject


@pytest.fixture(autouse=True)
def mni_identity(monkeypatch):
    """The phantom sits at the MNI origin: skip the template registration (tested apart)."""
    mni_at_world_origin(monkeypatch)


@pytest.mark.parametrize("orientation, turn", [("RAS", None), ("LPS", None),
                                               ("PIR", rotation(20.0, (1.0, 2.0, 0.5)))])
def test_findings_land_on_the_planted_lesion_in_every_orientation(tmp_path, orientation, turn):
    subject = write_subject(tmp_path / "s1", orientation, turn)
    result = oracle_predictor(normalised_level(subject)).predict(subject)
    reference = nib.load(subject.sequences["flair"])
    assert result.shape == SHAPE and np.allclose(result.affine, reference.affine)

    folder = outputs.write_subject(result, tmp_path / "out")
    for path in folder.glob("*.nii.gz"):
        written = nib.load(path)
        assert written.shape == SHAPE, path.name
        assert np.allclose(written.affine, reference.affine, atol=1e-4), path.name
    assert nib.load(folder / "wmh_prob.nii.gz").get_data_dtype() == np.float32

    # The mask is the lesion core: its world centroid is the planted centre.
    mask = np.asarray(nib.load(folder / "wmh_mask.nii.gz").dataobj) > 0
    centroid = nib.affines.apply_affine(reference.affine, np.argwhere(mask).mean(axis=0))
    np.testing.assert_allclose(centroid, LESION[0], atol=1.0)
    (finding,) = result.findings["wmh"]
    np.testing.assert_allclose(finding.world, LESION[0], atol=1.0)
    # Volume of the core above 950 of a sigmoid-edged 4 mm ball: ~ (4 - 1 mm * ln 19 / 4)^3 ...
    # bounded loosely by the ball itself.
    assert 0 < finding.volume_mm3 < 4 / 3 * np.pi * 4 ** 3
    lesions = list(csv.DictReader(open(folder / "wmh_lesions.tsv"), delimiter="\t"))
    assert len(lesions) == 1 and float(lesions[0]["x"]) == pytest.approx(LESION[0][0], abs=1.0)
    dseg = np.asarray(nib.load(folder / "csvd_dseg.nii.gz").dataobj)
    assert set(np.unique(dseg)) == {0, 1} and np.array_equal(dseg == 1, mask)
    assert json.loads((folder / "report.json").read_text())["subject"] == "s1"


def test_masks_are_thresholded_on_the_reference_grid(tmp_path):
    """The mask is the interpolated probability thresholded on the reference grid (never a
    working-grid mask brought back by nearest neighbour)."""
    subject = write_subject(tmp_path / "s1", "RAS")
    predictor = oracle_predictor(normalised_level(subject))
    result = predictor.predict(subject)
    prob, mask = result.probabilities["wmh"], result.masks["wmh"]
    assert prob.dtype == np.float32
    np.testing.assert_array_equal(mask, prob >= 0.5)


def test_missing_sequence_is_an_error_unless_the_model_can_do_without(tmp_path):
    subject = write_subject(tmp_path / "s1", "RAS")
    lacking = Subject(id="s1", sequences={"flair": subject.sequences["flair"]})
    with pytest.raises(CsvdnetInputError, match="t1 missing"):
        oracle_predictor(0.0).predict(lacking)
    level = normalised_level(Subject(id="s1", sequences={"flair": subject.sequences["flair"]}))
    result = oracle_predictor(level, dropout=True).predict(lacking)
    assert any("t1" in flag and "missing" in flag for flag in result.flags)
    assert len(result.findings["wmh"]) == 1
    no_reference = Subject(id="s2", sequences={"t1": subject.sequences["t1"]})
    with pytest.raises(CsvdnetInputError, match="reference sequence 'flair' is missing"):
        oracle_predictor(0.0, dropout=True).predict(no_reference)


def test_flip_average_mirrors_dense_outputs_back():
    def predict(batch):  # a left-right asymmetric "network"
        ramp = np.arange(batch.shape[1], dtype=float)[None, :, None, None, None]
        return {"wmh": np.broadcast_to(ramp, batch.shape[:4] + (1,)) + batch[..., :1],
                "score": np.array([[batch[0, 0, 0, 0, 0], 0.0]])}

    batch = np.zeros((1, 4, 2, 2, 1))
    batch[0, 0] = 8.0
    out = flip_average(predict, batch)
    # ramp (0..3) averaged with its mirror (3..0): 1.5 everywhere; the input itself comes
    # back to where it was.
    np.testing.assert_allclose(out["wmh"][0, :, 0, 0, 0], [9.5, 1.5, 1.5, 1.5])
    np.testing.assert_allclose(out["score"], [[4.0, 0.0]])  # (8 + 0) / 2: not mirrored


def test_tta_predictor_finds_the_same_lesion(tmp_path):
    subject = write_subject(tmp_path / "s1", "LPS")
    level = normalised_level(subject)
    plain = oracle_predictor(level).predict(subject)
    flipped = oracle_predictor(level, tta=True).predict(subject)
    assert len(flipped.findings["wmh"]) == 1
    assert abs(flipped.findings["wmh"][0].world[0] - plain.findings["wmh"][0].world[0]) < 1.0


def test_unknown_rule_set_is_refused():
    with pytest.raises(CsvdnetInputError, match="unknown rule set"):
        Predictor(lambda b: {}, oracle_predictor(0.0).info, oracle_predictor(0.0).preprocess_cfg,
                                        window=(16,) * 3, overlap=0.25, gaussian=True,
                                        rule_sets=("fazekas-1987",))


def test_a_small_lacune_at_probability_one_is_kept_whatever_the_models_floor(tmp_path):
    # A 16 mm^3 lacune (two 2 mm working voxels, a 3 mm lacune's size) at probability 1, with a
    # calibrated floor of 30 mm^3 and threshold 0.95 (the shipped model's): the floor is clamped
    # to the smallest lacune (14.1 mm^3) and the mask is decided on the working grid, so the
    # lacune is counted, whole.
    from _oracle import CFG
    from csvdnet.inference.result import ModelInfo

    subject = write_subject(tmp_path / "s1", "LPS")

    def forward(batch):
        shape = np.asarray(batch).shape[:4] + (1,)
        lacune = np.zeros(shape, np.float32)
        centre = np.array(shape[1:4]) // 2
        lacune[0, centre[0]:centre[0] + 2, centre[1], centre[2], 0] = 1.0
        zeros = np.zeros(shape, np.float32)
        return {"wmh": zeros, "rssi": zeros, "lacune": lacune, "cmb": zeros, "epvs": zeros,
                "score": np.array([[3.0, 1.0, -1.0, -3.0]])}

    info = ModelInfo(id="oracle", path="-", sha256="0" * 64, kind="run",
                     channels=("flair", "t1"), spacing=(2.0, 2.0, 2.0),
                     thresholds={"wmh": 0.5, "rssi": 0.5, "lacune": 0.95, "cmb": 0.5,
                                 "epvs": 0.5},
                     min_lesion_mm3={"wmh": 0.0, "lacune": 30.0}, modality_dropout=False)
    predictor = Predictor(forward, info, CFG, window=(128, 128, 128), overlap=0.25,
                          gaussian=False, rule_sets=("staals-2014",))
    result = predictor.predict(subject)
    (lacune,) = result.findings["lacune"]
    assert lacune.volume_mm3 == pytest.approx(16.0)
    assert result.measurements.lacune_count == 1


def test_a_supplied_region_map_overrides_the_registered_one(tmp_path):
    # --regions labels: the subject's own parcellation (csvdnet codes), here drawn on the T1
    # grid of the phantom, which is the FLAIR's grid: the result carries it unchanged.
    subject = write_subject(tmp_path / "s1", "LPS")
    t1 = nib.load(subject.sequences["t1"])
    codes = np.zeros(SHAPE, np.uint8)
    codes[10:30, 12:35, 5:40] = 2  # basal ganglia
    codes[30:40, 12:35, 5:40] = 5  # periventricular
    path = tmp_path / "regions.nii.gz"
    nib.save(nib.Nifti1Image(codes, t1.affine), path)
    supplied = Subject(id="s1", sequences=subject.sequences, labels={"regions": path},
                       label_sequence={"regions": "t1"})
    predictor = oracle_predictor(normalised_level(subject), regions="labels")
    result = predictor.predict(supplied)
    np.testing.assert_array_equal(result.regions, codes)
    assert not any("region map" in flag for flag in result.flags)
    # A subject without one keeps the registered map, with a flag.
    plain = predictor.predict(subject)
    assert any("no region map supplied" in flag for flag in plain.flags)
    assert not np.array_equal(plain.regions, codes)
    # Codes that are not csvdnet region codes (e.g. FreeSurfer's) are refused, naming the file.
    codes[0, 0, 0] = 17
    nib.save(nib.Nifti1Image(codes, t1.affine), path)
    with pytest.raises(CsvdnetInputError, match=r"regions\.nii\.gz.*\[17\]"):
        predictor.predict(supplied)
    with pytest.raises(CsvdnetInputError, match="unknown region source"):
        oracle_predictor(0.0, regions="atlas")


def test_the_template_registration_finds_its_own_mask_on_fine_images():
    # Preprocessing's mask (union of two sequences' foregrounds, scalp kept) bounded the
    # registration metric and misplaced the basal ganglia (Dice 0.49 vs 0.88 on a demo T1):
    # images of voxels <= 2 mm get the registration's own mask; coarser ones keep it.
    from types import SimpleNamespace

    from csvdnet.inference.region_source import registration_mask

    fine = SimpleNamespace(affine=np.diag([1.5, 1.5, 2.0, 1.0]), shape=(4, 4, 4))
    assert registration_mask(np.ones((4, 4, 4), bool), None, fine, "t1") is None
    coarse = SimpleNamespace(affine=np.diag([4.0, 4.0, 4.0, 1.0]), shape=(4, 4, 4))
    meta = SimpleNamespace(working_to_native=lambda name: np.eye(4))
    mask = registration_mask(np.ones((4, 4, 4), bool), meta, coarse, "t1")
    assert mask.shape == (4, 4, 4) and mask.all()


def test_a_marker_whose_sequence_is_missing_is_null_never_0(tmp_path):
    """Without SWI the network's microbleed heatmap is of a blank channel: not a measurement.
    The marker is null in every table (never 0, which would read as "no microbleeds"), the
    Staals total is undecided and says why, and no microbleed files are written."""
    from csvdnet.inference.cohort import score_row
    from csvdnet.inference.predictor import unmeasured_tasks

    assert unmeasured_tasks(["swi"]) == ("cmb",) and unmeasured_tasks(["t2"]) == ()
    assert set(unmeasured_tasks(["swi", "dwi"])) == {"cmb", "rssi"}
    subject = write_subject(tmp_path / "s1", "RAS")
    predictor = oracle_predictor(normalised_level(subject), channels=("flair", "t1", "swi"),
                                 dropout=True)
    result = predictor.predict(subject)  # no swi: the oracle's cmb output is all zeros
    assert "cmb" not in result.findings and "cmb" not in result.masks
    assert result.measurements.cmb_count is None and result.measurements.cmb_lobar is None
    staals = result.scores["staals-2014"]
    assert staals.total is None and staals.undecided == ("microbleeds",)
    assert any("cmb not measured" in flag for flag in result.flags)
    assert result.agreement is None  # nothing to agree with
    row = score_row(result)
    assert row["cmb_count"] == "" and row["staals_total"] == "" and row["lacune_count"] == "0"
    assert "cmb not measured" in row["flags"]

    folder = outputs.write_subject(result, tmp_path / "out")
    assert not (folder / "cmb_points.tsv").exists() and (folder / "epvs_points.tsv").exists()
    report = json.loads((folder / "report.json").read_text())
    assert report["markers"]["cmb"]["count"] is None
    assert "swi missing" in report["markers"]["cmb"]["not_measured"]
    assert report["markers"]["epvs"]["not_measured"] is None
    assert report["scores"]["staals-2014"]["undecided"] == ["microbleeds"]
    assert report["measurements"]["cmb_count"] is None
    page = (folder / "report.html").read_text()
    assert "not measured: swi missing" in page and 'data-undecided="microbleeds"' in page
