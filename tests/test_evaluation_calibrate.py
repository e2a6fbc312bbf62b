"""Thresholds and smallest sizes calibrated on validation subjects (csvdnet/evaluation/calibrate.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from csvdnet.errors import CsvdnetInputError
from csvdnet.evaluation.calibrate import (SMALLEST_LACUNE_MM3, calibrate_detection,
                                          calibrate_segmentation)
from csvdnet.run.calibration import CALIBRATION_FILE, load_calibration
from csvdnet.run.record import run_config


def _lacune_subject() -> tuple[np.ndarray, np.ndarray, float]:
    """A 4-voxel lacune predicted at 0.6 and a 1-voxel false positive at 0.9 (1 mm voxels)."""
    truth = np.zeros((12, 12, 12), bool)
    truth[2:4, 2:4, 2] = True
    probability = np.zeros((12, 12, 12), np.float32)
    probability[truth] = 0.6
    probability[9, 9, 9] = 0.9
    return truth, probability, 1.0


def test_segmentation_search_picks_threshold_and_smallest_size_by_lesion_f1():
    found = calibrate_segmentation("lacune", [_lacune_subject()], configured=(0.5, 0.0),
                                   thresholds=(0.5, 0.7), sizes_mm3=(0.0, 2.0))
    # 0.5 / 0 mm3: 2 components, 1 hit: p 0.5, r 1, F1 2/3. 0.5 / 2 mm3: the false voxel goes, F1 1.
    # 0.7: the lacune is missed (F1 0 with or without the size limit).
    assert (found.threshold, found.min_lesion_mm3) == (0.5, 2.0)
    assert found.value == pytest.approx(1.0) and found.configured == pytest.approx(2 / 3)
    assert found.lesions == 1 and found.metric == "lesion_f1"
    assert found.details["dice"] == pytest.approx(1.0)


def test_the_lacune_floor_never_exceeds_the_smallest_lacune():
    # A 20-voxel (20 mm^3) lacune at 0.6 and three 16-voxel false positives at 0.9: an 18 mm^3
    # floor would score best on these subjects (it deletes the false positives and keeps the
    # lacune), but would delete any true lacune of 14-18 mm^3 whatever the network did: the
    # search stops at the 3 mm sphere's 14.1 mm^3.
    truth = np.zeros((24, 24, 24), bool)
    truth[2:7, 2:4, 2:4] = True
    probability = np.where(truth, 0.6, 0.0)
    for x in (10, 15, 20):
        probability[x:x + 2, 10:12, 10:14] = 0.9
    found = calibrate_segmentation("lacune", [(truth, probability, 1.0)], configured=(0.5, 0.0),
                                   thresholds=(0.5, 0.7), sizes_mm3=(0.0, 10.0, 18.0, 30.0))
    assert SMALLEST_LACUNE_MM3 == pytest.approx(14.137, abs=1e-3)
    assert found.min_lesion_mm3 <= SMALLEST_LACUNE_MM3
    assert (found.threshold, found.min_lesion_mm3) == (0.5, 0.0)
    # RSSI have no smallest size by definition: 18 mm^3 (above the false positives) is allowed.
    rssi = calibrate_segmentation("rssi", [(truth, probability, 1.0)], configured=(0.5, 0.0),
                                  thresholds=(0.5, 0.7), sizes_mm3=(0.0, 10.0, 18.0, 30.0))
    assert (rssi.threshold, rssi.min_lesion_mm3) == (0.5, 18.0)


def test_wmh_search_keeps_the_configured_size_and_maximises_dice():
    truth, probability, voxel = _lacune_subject()
    found = calibrate_segmentation("wmh", [(truth, probability, voxel)], configured=(0.5, 0.0),
                                   thresholds=(0.5, 0.7, 0.95), sizes_mm3=(0.0, 2.0))
    # Sizes are not searched for WMH: 0.5 keeps the false voxel, Dice 2*4 / (5 + 4) = 8/9.
    assert (found.threshold, found.min_lesion_mm3) == (0.5, 0.0)
    assert found.metric == "dice" and found.value == pytest.approx(8 / 9)


def test_detection_search_picks_the_threshold_of_the_best_f1():
    heatmap = np.zeros((16, 16, 16), np.float32)
    heatmap[3, 3, 3], heatmap[12, 12, 12], heatmap[3, 12, 8] = 0.9, 0.35, 0.4
    true = np.array([[3, 3, 3], [12, 12, 12]], float)
    found = calibrate_detection([(true, heatmap, (1.0, 1.0, 1.0))], configured=0.5,
                                thresholds=(0.3, 0.5))
    # 0.3: 2 found, 1 false: F1 4/5. 0.5: 1 found, 1 missed: F1 2/3.
    assert found.threshold == 0.3 and found.value == pytest.approx(0.8)
    assert found.configured == pytest.approx(2 / 3)
    assert found.details == {"tp": 2, "fp": 1, "fn": 0, "fp_per_subject": 1.0}


def test_detection_search_picks_the_ridge_fraction_and_keeps_exempt_peaks():
    # One EPVS (true at voxel 5) drawn as a ridge at 0.6 from voxel 4 to 11 along x with a
    # second bump at 10 (0.8; 1 mm voxels, 6 mm apart): two peaks, one of them false.
    heatmap = np.zeros((16, 12, 12), np.float32)
    heatmap[4:12, 6, 6] = 0.6
    heatmap[5, 6, 6], heatmap[10, 6, 6] = 0.9, 0.8
    true = np.array([[5, 6, 6]], float)
    subject = (true, heatmap, (1.0, 1.0, 1.0))
    found = calibrate_detection([subject], configured=0.5, thresholds=(0.5,),
                                ridges=(0.0, 0.5, 0.8))
    # 0.0: F1 2/3 (1 found, 1 false). 0.5: the path from the bump to the peak stays at 0.6 >=
    # 0.4, so the bump is the peak's ridge: F1 1. 0.8: 0.6 < 0.64, kept: F1 2/3.
    assert (found.ridge, found.threshold, found.value) == (0.5, 0.5, 1.0)
    assert found.configured == pytest.approx(2 / 3)
    # Where the bump lies in the basal ganglia nothing drops it: ties go to the configured
    # fraction (here 0.8).
    where = np.zeros(heatmap.shape, bool)
    where[10, 6, 6] = True
    found = calibrate_detection([subject], configured=0.5, thresholds=(0.5,),
                                ridges=(0.0, 0.5), configured_ridge=0.8, exempt=[where])
    assert found.ridge == 0.8 and found.value == pytest.approx(2 / 3)


def test_calibrate_run_writes_the_record_that_run_config_applies(tiny_run, tmp_path):
    from csvdnet.evaluation.calibrate import calibrate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run[1], run)  # the session's run stays uncalibrated for other tests
    record = calibrate_run(run)
    assert json.loads((run / CALIBRATION_FILE).read_text()) == record
    assert record["subjects"] == json.loads((run / "split.json").read_text())["validation"]
    for task, found in record["tasks"].items():  # a tiny run: calibrated or told why not
        assert found["calibrated"] or found["reason"]
    # run_config applies what the file says (here a hand-set value, so the test can fail).
    record["thresholds"]["wmh"] = 0.37
    record["min_lesion_mm3"]["lacune"] = 12.5
    assert set(record["peak_ridge"]) <= {"epvs"}
    record["peak_ridge"] = {"epvs": 0.65}
    (run / CALIBRATION_FILE).write_text(json.dumps(record))
    cfg = run_config(run)
    assert cfg.inference.thresholds["wmh"] == 0.37
    assert cfg.inference.min_lesion_mm3["lacune"] == 12.5
    assert cfg.inference.peak_ridge == {"epvs": 0.65}
    # A calibration written before ridges were calibrated leaves the config's.
    del record["peak_ridge"]
    (run / CALIBRATION_FILE).write_text(json.dumps(record))
    assert run_config(run).inference.peak_ridge == {}
    assert run_config(run, calibrated=False).inference.thresholds["wmh"] == 0.5


def test_a_bad_calibration_file_is_named(tmp_path):
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(CsvdnetInputError, match="calibration.json.*not valid JSON"):
        load_calibration(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"format": "csvdnet-calibration",
                                                         "thresholds": {"wmh": "high"},
                                                         "min_lesion_mm3": {}}))
    with pytest.raises(CsvdnetInputError, match="thresholds must map tasks to numbers"):
        load_calibration(tmp_path)
    assert load_calibration(tmp_path / "absent") is None
