"""The rating-layer oracle (csvdnet.inference.oracle): truth in, what a perfect network outputs."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
from _oracle import CFG, SHAPE, write_subject

from csvdnet import DETECTION_TASKS, SEGMENTATION_TASKS
from csvdnet.config import Config, DataConfig, PreprocessConfig, dump_config
from csvdnet.inference.oracle import (SCORE_LOGIT, missing_tasks, model_heatmap_sigma,
                                      oracle_outputs, oracle_predict, score_logits)
from csvdnet.inference.predictor import Predictor
from csvdnet.inference.result import ModelInfo
from csvdnet.io import read_cohort, save_nifti
from csvdnet.scoring import ordinal_class

TASKS = SEGMENTATION_TASKS + DETECTION_TASKS
TINY_CHANNELS = ("flair", "t1", "t2", "swi", "dwi")


def _never(batch):
    raise AssertionError("the oracle must not run the network")


def _predictor(channels, cfg: PreprocessConfig) -> Predictor:
    """A predictor whose network fails if called; thresholds 0.5, no smallest lesion size."""
    info = ModelInfo(id="oracle-test", path="-", sha256="0" * 64, kind="run", channels=channels,
                     spacing=tuple(cfg.spacing), thresholds={t: 0.5 for t in TASKS},
                     min_lesion_mm3={}, modality_dropout=False)
    return Predictor(_never, info, cfg, window=(16, 16, 16), overlap=0.25, gaussian=True,
                     rule_sets=("staals-2014",))


def _write_points(path, world) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "z"])
        writer.writerows(np.atleast_2d(world).tolist())
    return str(path)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """``(predictor, prepared, folder)``: the analytic phantom (2 mm LPS) preprocessed at 2 mm."""
    folder = tmp_path_factory.mktemp("oracle-phantom")
    subject = write_subject(folder / "s1", "LPS")
    predictor = _predictor(("flair", "t1"), CFG)
    return predictor, predictor.prepare(subject), folder


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    """Two ``tiny``-profile synthetic subjects (``csvdnet synth --profile tiny``)."""
    from csvdnet.synth import generate_cohort

    manifest = generate_cohort(tmp_path_factory.mktemp("oracle-tiny") / "cohort", 2, 11,
                               profile="tiny", progress=False)
    return read_cohort(manifest, sequences=TINY_CHANNELS)


def test_tiny_subject_rates_its_lacunes_microbleeds_and_total_exactly(tiny_cohort):
    predictor = _predictor(TINY_CHANNELS, PreprocessConfig(spacing=(2.0,) * 3, pad_multiple=16,
                                                           register=False))
    for subject in tiny_cohort:
        truth = subject.ratings
        assert truth.lacune_count >= 1 and truth.cmb_count >= 1  # the check has something to count
        result = oracle_predict(predictor, subject, heatmap_sigma_mm=2.0)
        m = result.measurements
        assert m.lacune_count == truth.lacune_count, subject.id
        assert m.cmb_lobar + m.cmb_deep + m.cmb_infratentorial == truth.cmb_count, subject.id
        assert result.ordinal.total == truth.total_score, subject.id
        assert result.timings["network"] == 0.0


@pytest.mark.parametrize("subvoxel, offset_mm, peak", [
    (True, 0.3, np.exp(-0.5 * (0.3 / 2.0) ** 2)),  # sigma 2 mm; the peak voxel 0.3 mm away
    (False, 0.3, 1.0),  # training's drawing: exactly 1 at the nearest voxel
    (True, -0.9, np.exp(-0.5 * (0.9 / 2.0) ** 2)),
])
def test_point_peaks_at_its_working_voxel(phantom, tmp_path, subvoxel, offset_mm, peak):
    predictor, prepared, _ = phantom
    voxel = np.asarray(prepared.array.shape[:3]) // 2 + (3, -2, 1)
    # The working grid is canonical RAS at 2 mm: +x mm is +0.5 voxel along axis 0.
    world = prepared.meta.working_to_world(voxel[None].astype(float))[0] + (offset_mm, 0, 0)
    labels = {"cmb": _write_points(tmp_path / "cmb.csv", world)}
    out = oracle_outputs(prepared, labels, heatmap_sigma_mm=2.0, total=None,
                         subvoxel=subvoxel)
    heatmap = out["cmb"][0, ..., 0]
    assert np.unravel_index(np.argmax(heatmap), heatmap.shape) == tuple(voxel)
    assert heatmap.max() == pytest.approx(peak, abs=1e-5)
    # The next voxel along x is 2 mm - offset from the point.
    beside = heatmap[tuple(voxel + (1 if offset_mm > 0 else -1, 0, 0))]
    expected = np.exp(-0.5 * ((2.0 - abs(offset_mm if subvoxel else 0.0)) / 2.0) ** 2)
    assert beside == pytest.approx(expected, abs=1e-5)


def test_the_model_names_what_a_heatmap_peak_is(phantom, tmp_path):
    # Two EPVS 5.5 mm apart whose nearest working voxels (2 mm) touch by a corner, drawn as a
    # perfect network would: both voxels hold 0.87. Found in a 3x3x3 cube (the default, and
    # every export without the key) they are one plateau, one finding; a model whose
    # inference.peak_neighbourhood says "faces" gets both.
    predictor, prepared, _ = phantom
    voxel = np.asarray(prepared.array.shape[:3], float) // 2
    world = prepared.meta.working_to_world(np.stack([voxel - 0.3, voxel + 1.3]))
    out = oracle_outputs(prepared, {"epvs": _write_points(tmp_path / "epvs.csv", world)},
                         heatmap_sigma_mm=2.0, total=None)
    assert len(predictor.finish(prepared, out, 0.0).findings["epvs"]) == 1
    other = _predictor(("flair", "t1"), CFG)
    other.info = dataclasses.replace(other.info, peak_neighbourhood={"epvs": "faces"})
    found = other.finish(prepared, out, 0.0).findings["epvs"]
    assert len(found) == 2
    placed = np.sort(np.asarray([f.world for f in found]), axis=0)
    np.testing.assert_allclose(placed, np.sort(world, axis=0), atol=0.3)


def test_mask_lands_on_the_working_grid_whole(phantom, tmp_path):
    predictor, prepared, folder = phantom
    reference = prepared.images["flair"]
    mask = np.zeros(SHAPE, np.float32)
    mask[20:23, 24:27, 18:21] = 1.0  # 27 voxels of 2 mm: 216 mm^3
    path = save_nifti(mask, reference.affine, tmp_path / "lacune.nii.gz")
    out = oracle_outputs(prepared, {"lacune": path}, heatmap_sigma_mm=2.0, total=None)
    lacune = out["lacune"][0, ..., 0]
    assert lacune.sum() == 27.0
    centre = prepared.meta.working_to_world(np.argwhere(lacune > 0).mean(axis=0)[None])[0]
    expected = (reference.affine @ np.array([21.0, 25.0, 19.0, 1.0]))[:3]
    np.testing.assert_allclose(centre, expected, atol=1e-3)
    result = predictor.finish(prepared, out, 0.0)
    assert result.measurements.lacune_count == 1
    assert result.quantities["lacune_volume_ml"] == pytest.approx(0.216, abs=1e-6)


def test_a_missing_label_gives_zeros(phantom, tmp_path):
    _, prepared, _ = phantom
    labels = {"epvs": _write_points(tmp_path / "epvs.csv", np.zeros((0, 3)))}
    out = oracle_outputs(prepared, labels, heatmap_sigma_mm=2.0, total=None)
    assert set(out) == set(TASKS) | {"score"}
    for task in TASKS:
        assert out[task].shape == (1, *prepared.array.shape[:3], 1)
        assert out[task].dtype == np.float32
        assert not out[task].any(), task
    assert not out["score"].any()
    assert missing_tasks(labels) == ("wmh", "rssi", "lacune", "cmb")


@pytest.mark.parametrize("total", range(5))
def test_score_logits_decode_to_the_total(total):
    logits = score_logits(total)
    assert logits.shape == (1, 4)
    assert ordinal_class(logits[0]) == total
    assert set(np.abs(logits[0])) == {SCORE_LOGIT}


def test_heatmap_sigma_comes_from_the_run_or_the_training_default(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(Config(data=DataConfig(heatmap_sigma_mm=3.5))),
                                     encoding="utf-8")
    assert model_heatmap_sigma(run)[0] == 3.5
    export = tmp_path / "model" / "1"
    export.mkdir(parents=True)
    (export / "metadata.json").write_text('{"format": "csvdnet-model"}', encoding="utf-8")
    sigma, source = model_heatmap_sigma(export.parent)
    assert sigma == DataConfig().heatmap_sigma_mm and "default" in source



def _bench_rating():
    """benchmarks/bench_rating.py as a module (benchmarks/ is not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("bench_rating", folder / "bench_rating.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writes_predicts_outputs_without_running_the_network(tiny_cohort, tmp_path):
    from csvdnet.inference.cohort import predict_cohort

    bench = _bench_rating()
    predictor = _predictor(TINY_CHANNELS, PreprocessConfig(spacing=(2.0,) * 3, pad_multiple=16,
                                                           register=False))
    rater = bench.OracleRater(predictor, 2.0, subvoxel=True)
    summary = predict_cohort(rater, list(tiny_cohort), tmp_path / "out")
    assert not summary.failed and sorted(summary.done) == [s.id for s in tiny_cohort]
    with open(tmp_path / "out" / "scores.tsv", newline="", encoding="utf-8") as handle:
        rows = {row["subject"]: row for row in csv.DictReader(handle, delimiter="\t")}
    for subject in tiny_cohort:
        truth, oracle = bench.truth_row(subject), bench.oracle_row(rows[subject.id])
        assert oracle["lacune_count"] == truth["lacune_count"], subject.id
        assert oracle["cmb_count"] == truth["cmb_count"], subject.id
        assert int(rows[subject.id]["ordinal_total"]) == truth["total"], subject.id
        assert rater.missing[subject.id] == []
    assert bench.diff_line("s", {"total": 2, "lacune_count": 1},
                           {"total": 1, "lacune_count": 1}) == "s: total 2->1"


@pytest.mark.parametrize("region, found", [("centrum_semiovale", 1), ("basal_ganglia", 2)])
def test_a_ridge_is_one_finding_outside_the_basal_ganglia(phantom, monkeypatch, region, found):
    # A network's long EPVS: a ridge at 0.7 along 5 working voxels (2 mm) with two bumps on it
    # (0.9, 0.8; 6 mm apart). Two peaks; a model with inference.peak_ridge 0.6 reports one in
    # the centrum semiovale (long EPVS) and both in the basal ganglia (dense).
    from csvdnet.atlas import REGION_CODES
    from csvdnet.inference import regions as regioning

    predictor, prepared, _ = phantom
    shape = prepared.array.shape[:3]
    centre = np.asarray(shape) // 2
    heatmap = np.zeros(shape, np.float32)
    for k in range(5):
        heatmap[tuple(centre + (k - 2, 0, 0))] = 0.7
    heatmap[tuple(centre + (-2, 0, 0))] = 0.9
    heatmap[tuple(centre + (1, 0, 0))] = 0.8
    out = oracle_outputs(prepared, {}, heatmap_sigma_mm=2.0, total=None)
    out["epvs"] = heatmap[None, ..., None]

    def place(image, mask, ref_shape, affine, to_image=None):
        return (np.full(tuple(ref_shape)[:3], REGION_CODES[region], np.uint8),
                np.eye(4) if to_image is None else np.asarray(to_image, np.float64))

    monkeypatch.setattr(regioning, "place_regions", place)
    assert len(predictor.finish(prepared, out, 0.0).findings["epvs"]) == 2  # no ridge: two
    other = _predictor(("flair", "t1"), CFG)
    other.info = dataclasses.replace(other.info, peak_ridge={"epvs": 0.6})
    epvs = other.finish(prepared, out, 0.0).findings["epvs"]
    assert len(epvs) == found and {f.region for f in epvs} == {region}
    assert epvs[0].confidence == pytest.approx(0.9)
