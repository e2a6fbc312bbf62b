"""write_results end to end: a tiny DICOM study + fake predict output -> SEG, SR, SC read back."""

from __future__ import annotations

import json
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

import _dicom_results_fixtures as fx
from csvdnet.dicom.results import write_results
from csvdnet.errors import CsvdnetInputError, CsvdnetOutputError

CHANNELS = ("flair", "swi", "dwi")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_results")
    sources = {c: fx.write_series(root / "in" / c, c) for c in CHANNELS}
    subject = fx.write_subject(root / "pred")
    files = write_results(subject, sources, root / "out", model_id=fx.MODEL_ID,
                          model_sha256=fx.SHA)
    return root, sources, subject, files


def _world_of_pixels(headers, frames):
    """World LPS of every set pixel of ``frames`` (aligned with ``headers``)."""
    points = []
    for ds, frame in zip(headers, frames):
        r, c = np.nonzero(frame)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        ipp = np.asarray(ds.ImagePositionPatient, float)
        points.append(ipp + np.outer(c * dc, iop[:3]) + np.outer(r * dr, iop[3:]))
    return np.concatenate(points) if points else np.zeros((0, 3))


def _seg_on(study, channel):
    root, sources, _, _ = study
    seg = hd.seg.segread(root / "out" / f"seg-{channel}.dcm")
    headers = fx.read_headers(sources[channel])
    return seg, headers


def _frames(seg, headers, number):
    return seg.get_pixels_by_source_instance(
        [h.SOPInstanceUID for h in headers], segment_numbers=[number])[..., 0]


def _ras_to_voxel(world_lps):
    affine, _ = fx.flair_affine()
    ras = world_lps * np.array([-1.0, -1.0, 1.0])
    return (ras - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T


def test_written_files_and_series(study):
    root, sources, _, files = study
    assert [f.name for f in files] == ["seg-flair.dcm", "seg-dwi.dcm", "seg-swi.dcm", "sr.dcm",
                                       "report-1.dcm"]
    numbers = {}
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == fx.STUDY
        assert ds.PatientID == fx.PATIENT["PatientID"]
        assert str(ds.PatientName) == fx.PATIENT["PatientName"]
        assert ds.AccessionNumber == fx.PATIENT["AccessionNumber"]
        numbers[path.name] = (ds.SeriesNumber, ds.SeriesDescription)
    assert numbers["seg-flair.dcm"] == (9901, "csvdnet WMH+lacunes+EPVS")  # no T2 / T1 given
    assert numbers["seg-dwi.dcm"] == (9902, "csvdnet RSSI")
    assert numbers["seg-swi.dcm"] == (9903, "csvdnet microbleeds")
    assert numbers["sr.dcm"] == (9910, "csvdnet measurements")
    assert numbers["report-1.dcm"] == (9920, "csvdnet report")
    assert not list((root / "in").rglob("*.dcm"))  # nothing written beside the inputs


def test_flair_seg_lands_on_the_planted_lesions(study):
    seg, headers = _seg_on(study, "flair")
    codes = [(d.SegmentLabel, d.SegmentedPropertyTypeCodeSequence[0].CodeValue,
              d.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
              d.SegmentedPropertyCategoryCodeSequence[0].CodeValue) for d in seg.SegmentSequence]
    assert codes == [("WMH", "110702", "DCM", "49755003"),
                     ("lacune", "230698000", "SCT", "49755003"),
                     ("EPVS", "EPVS", "99CSVDNET", "49755003")]
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "csvdnet"
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert fx.SHA in algorithm.AlgorithmParameters and fx.MODEL_ID in algorithm.AlgorithmParameters
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == headers[0].SeriesInstanceUID
    _, shape = fx.flair_affine()
    for number, task in ((1, "wmh"), (2, "lacune")):
        frames = _frames(seg, headers, number)
        voxels = np.rint(_ras_to_voxel(_world_of_pixels(headers, frames))).astype(int)
        planted = np.zeros(shape, bool)
        planted[fx.PLANTED[task]] = True
        found = np.zeros(shape, bool)
        found[tuple(voxels.T)] = True
        np.testing.assert_array_equal(found, planted)  # every planted voxel, nothing else


def test_points_are_spheres_on_the_oblique_swi(study):
    seg, headers = _seg_on(study, "swi")
    assert seg.SegmentSequence[0].SegmentLabel == "microbleed"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "50960005"
    world = _world_of_pixels(headers, _frames(seg, headers, 1))
    affine, _ = fx.flair_affine()
    centre = fx.voxel_to_ras(affine, [fx.CMB_VOXEL])[0] * np.array([-1.0, -1.0, 1.0])
    distance = np.linalg.norm(world - centre, axis=1)
    assert len(world) >= 20 and distance.max() <= 2.5 + 1e-6
    assert np.linalg.norm(world.mean(axis=0) - centre) < 1.0


def test_rssi_smaller_than_a_dwi_voxel_keeps_one(study):
    seg, headers = _seg_on(study, "dwi")
    world = _world_of_pixels(headers, _frames(seg, headers, 1))
    assert len(world) == 1
    affine, _ = fx.flair_affine()
    box = [(s.start - 0.5, s.stop - 0.5) for s in fx.PLANTED["rssi"]]
    centre = fx.voxel_to_ras(affine, [[np.mean(b) for b in box]])[0] * np.array([-1, -1, 1.0])
    assert np.linalg.norm(world[0] - centre) <= np.linalg.norm([1.5, 1.5, 2.5]) + 1e-6


def _numbers(sr):
    """Tracking identifier -> {concept meaning: value} of every measurement group."""
    out = {}
    report = sr.content
    groups = (report.get_volumetric_roi_measurement_groups()
              + report.get_image_measurement_groups())
    for group in groups:
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        out[group.tracking_identifier] = values
    return out


def test_sr_numbers_equal_report_json(study):
    root, _, subject, _ = study
    report = json.loads((subject / "report.json").read_text())
    sr = hd.sr.srread(root / "out" / "sr.dcm")
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    numbers = _numbers(sr)
    m = report["measurements"]
    assert numbers["csvdnet wmh"]["Volume"] == pytest.approx(m["wmh_volume_ml"] * 1000)
    assert numbers["csvdnet wmh"]["Number of lesions"] == report["markers"]["wmh"]["count"]
    assert numbers["csvdnet wmh"]["Fazekas periventricular grade"] == m["fazekas_pv"]
    assert "Fazekas deep white matter grade" not in numbers["csvdnet wmh"]  # null: absent
    assert numbers["csvdnet lacune"]["Volume"] == pytest.approx(m["lacune_volume_ml"] * 1000)
    assert numbers["csvdnet rssi"]["Number of lesions"] == m["rssi_count"]
    assert numbers["csvdnet cmb"]["Number of lesions"] == m["cmb_count"]
    assert numbers["csvdnet cmb"]["Lobar microbleeds"] == m["cmb_lobar"]
    assert numbers["csvdnet cmb"]["Deep microbleeds"] == 0  # a measured 0 stays 0
    assert "Infratentorial microbleeds" not in numbers["csvdnet cmb"]
    assert "Volume" not in numbers["csvdnet cmb"]  # points have no volume
    assert numbers["csvdnet epvs"]["Basal ganglia EPVS grade"] == m["epvs_bg_grade"]
    scores = numbers["csvdnet scores"]
    assert scores["Total score, rule set caa-svd-2016 v1"] == 1
    assert "Total score, rule set staals-2014 v1" not in scores  # undecided total: absent
    assert scores["Total SVD score, csvdnet ordinal head"] == report["ordinal"]["total"]
    segments = {g.tracking_identifier: g.referenced_segment
                for g in sr.content.get_volumetric_roi_measurement_groups()}
    seg_flair = pydicom.dcmread(root / "out" / "seg-flair.dcm", stop_before_pixels=True)
    lacune = segments["csvdnet lacune"]
    assert lacune.referenced_sop_instance_uid == seg_flair.SOPInstanceUID
    assert lacune.referenced_segment_numbers == [2]
    schemes = [s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence]
    assert "99CSVDNET" in schemes


def test_rerun_gives_the_same_uids_and_bytes(study, tmp_path):
    root, sources, subject, files = study
    again = write_results(subject, sources, tmp_path / "again", model_id=fx.MODEL_ID,
                          model_sha256=fx.SHA)
    for first, second in zip(files, again):
        a, b = pydicom.dcmread(first), pydicom.dcmread(second)
        assert (a.SeriesInstanceUID, a.SOPInstanceUID) == (b.SeriesInstanceUID, b.SOPInstanceUID)
        assert first.read_bytes() == second.read_bytes()
    other = json.loads((subject / "report.json").read_text())
    other["measurements"]["fazekas_pv"] = 3  # other findings: same series, new instance
    changed = tmp_path / "changed"
    shutil.copytree(subject, changed)
    (changed / "report.json").write_text(json.dumps(other))
    sr = write_results(changed, sources, tmp_path / "c", model_id=fx.MODEL_ID,
                       model_sha256=fx.SHA)[3]
    a, b = pydicom.dcmread(files[3]), pydicom.dcmread(sr)
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID


@pytest.mark.parametrize("tool", ["dciodvfy", "dcmdump"])
def test_objects_validate(study, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (apt-get install dicom3tools dcmtk)")
    _, _, _, files = study
    for path in files:
        run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
        text = run.stdout + run.stderr
        if tool == "dcmdump":
            assert run.returncode == 0 and "E:" not in text, text
        else:
            errors = [line for line in text.splitlines() if line.startswith("Error")]
            assert not errors, f"{path.name}: {errors}"


def test_inconsistent_series_is_refused_before_anything_is_written(study, tmp_path):
    root, sources, subject, _ = study
    broken = tmp_path / "dwi"
    shutil.copytree(root / "in" / "dwi", broken)
    bad = sorted(broken.iterdir())[2]
    ds = pydicom.dcmread(bad)
    ds.PixelSpacing = [2.0, 3.0]
    ds.save_as(bad)
    dest = tmp_path / "out"
    with pytest.raises(CsvdnetInputError, match=f"{bad.name}.*pixel spacing"):
        write_results(subject, {**sources, "dwi": sorted(broken.iterdir())}, dest,
                      model_id=fx.MODEL_ID, model_sha256=fx.SHA)
    assert not dest.exists() or not any(dest.iterdir())


def test_refuses_other_model_and_input_folder(study, tmp_path):
    root, sources, subject, _ = study
    with pytest.raises(CsvdnetInputError, match="made by model"):
        write_results(subject, sources, tmp_path / "o", model_id="x", model_sha256="cd" * 32)
    with pytest.raises(CsvdnetOutputError, match="input folder"):
        write_results(subject, sources, root / "in" / "flair" / "csvdnet", model_id=fx.MODEL_ID,
                      model_sha256=fx.SHA)
    with pytest.raises(CsvdnetInputError, match="no FLAIR"):
        write_results(subject, {"swi": sources["swi"]}, tmp_path / "o", model_id=fx.MODEL_ID,
                      model_sha256=fx.SHA)


def test_a_failed_write_leaves_no_object(study, tmp_path, monkeypatch):
    _, sources, subject, _ = study
    real = pydicom.Dataset.save_as

    def save_as(self, filename, *args, **kwargs):
        if self.Modality == "SR":
            raise OSError(28, "No space left on device")
        return real(self, filename, *args, **kwargs)

    monkeypatch.setattr(pydicom.Dataset, "save_as", save_as)
    dest = tmp_path / "full"
    with pytest.raises(CsvdnetOutputError, match="sr.dcm: No space left on device"):
        write_results(subject, sources, dest, model_id=fx.MODEL_ID, model_sha256=fx.SHA)
    assert not list(dest.iterdir())


def test_series_of_another_frame_of_reference_is_not_drawn_on(study, tmp_path):
    _, sources, subject, _ = study
    swi = fx.write_series(tmp_path / "swi", "swi", uid_seed="moved",
                          frame_of_reference="1.2.826.0.1.3680043.8.498.99")
    files = write_results(subject, {**sources, "swi": swi}, tmp_path / "out",
                          model_id=fx.MODEL_ID, model_sha256=fx.SHA)
    assert [f.name for f in files][:2] == ["seg-flair.dcm", "seg-dwi.dcm"]
    assert not (tmp_path / "out" / "seg-swi.dcm").exists()
    labels = [d.SegmentLabel for d in pydicom.dcmread(files[0]).SegmentSequence]
    assert labels == ["WMH", "lacune", "microbleed", "EPVS"]


def test_findings_follow_the_coregistration_onto_a_moved_series(study, tmp_path):
    """report.json's ``inputs.sequence_transforms`` (reference world -> series world): the ball
    on the SWI moves with it, the FLAIR's masks do not."""
    _, sources, subject, files = study
    moved = tmp_path / "pred"
    shutil.copytree(subject, moved)
    report = json.loads((moved / "report.json").read_text())
    shift = np.eye(4)
    shift[:3, 3] = [4.0, -3.0, 2.0]  # RAS mm
    report["inputs"]["sequence_transforms"] = {"swi": shift.tolist(), "flair": np.eye(4).tolist()}
    (moved / "report.json").write_text(json.dumps(report))
    out = write_results(moved, sources, tmp_path / "out", model_id=fx.MODEL_ID,
                        model_sha256=fx.SHA)
    headers = fx.read_headers(sources["swi"])

    def centre(path):
        seg = hd.seg.segread(path)
        return _world_of_pixels(headers, _frames(seg, headers, 1)).mean(axis=0)

    lps_shift = np.array([-4.0, 3.0, 2.0])
    np.testing.assert_allclose(centre(out[2]) - centre(files[2]), lps_shift, atol=0.6)
    assert pydicom.dcmread(out[0]).PixelData == pydicom.dcmread(files[0]).PixelData
