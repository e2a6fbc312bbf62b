"""``evaluate`` / ``csvdnet evaluate`` end to end: predictions made from the ground truth (some
perturbed, one missing) so every reported number is known."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from csvdnet.atlas import REGION_CODES
from csvdnet.cli import cli
from csvdnet.evaluation import evaluate
from csvdnet.io import save_nifti, write_points

from _eval_predictions import Edits, write_truth_as_prediction

SHAPE = (16, 16, 6)
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
RATINGS = {"sub-a": (1, 1, 2, 1, 1, 0, 2), "sub-b": (3, 0, 1, 0, 0, 0, 1),
           "sub-c": (0, 0, 0, 0, 0, 0, 0)}


def _subject(root, sid, rng, with_rssi=True):
    folder = root / sid
    save_nifti(rng.normal(size=SHAPE).astype(np.float32), AFFINE, folder / "flair.nii.gz")
    wmh = np.zeros(SHAPE, np.uint8)
    wmh[2:6, 2:6, 1:3] = 1  # 32 voxels
    wmh[10:12, 10:12, 4] = 1  # 4 voxels
    wmh[2:6, 6, 1:3] = 2  # excluded
    labels = folder / "labels"
    save_nifti(wmh, AFFINE, labels / "wmh.nii.gz", dtype=np.uint8)
    lacune = np.zeros(SHAPE, np.uint8)
    lacune[13, 2:4, 2] = 1
    save_nifti(lacune, AFFINE, labels / "lacune.nii.gz", dtype=np.uint8)
    if with_rssi:
        save_nifti(np.zeros(SHAPE, np.uint8), AFFINE, labels / "rssi.nii.gz", dtype=np.uint8)
    regions = np.full(SHAPE, REGION_CODES["deep_wm"], np.uint8)
    regions[:, :8] = REGION_CODES["basal_ganglia"]
    save_nifti(regions, AFFINE, labels / "regions.nii.gz", dtype=np.uint8)
    write_points(labels / "cmb.csv", [[3.0, 12.0, 4.0]])
    # EPVS tubes 8 mm long (length_mm: matched by extent), one per region.
    write_points(labels / "epvs.csv", [[8.0, 4.0, 5.0], [8.0, 12.0, 5.0]],
                 columns={"length_mm": [8.0, 8.0]})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    for sid in RATINGS:
        _subject(root, sid, rng, with_rssi=sid != "sub-b")
    with open(root / "ratings.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "fazekas_pv", "fazekas_deep", "epvs_bg_grade", "cmb_count",
                         "lacune_count", "rssi_count", "total_score"])
        writer.writerows([sid, *values] for sid, values in RATINGS.items())
    return root


def _drop_small_lesion_add_false_one(mask):
    mask = mask.copy()
    mask[10:12, 10:12, 4] = False
    mask[8, 1, 0] = True  # a lone false positive component
    return mask


EDITS = {"sub-b": Edits(
    masks={"wmh": _drop_small_lesion_add_false_one},
    # The CMB stays; a false one is added. EPVS peaks sit 3.5 mm from the midpoints, along the
    # tube (found by extent, missed by midpoint matching).
    points={"cmb": lambda w: np.vstack([w, [[12.0, 3.0, 8.0]]]),
            "epvs": lambda w: w + [0.0, 0.0, 3.5]},
    scores={"ordinal_total": 2})}


@pytest.fixture(scope="module")
def predictions(cohort, tmp_path_factory):
    """Both layouts of the same predictions: plain and BIDS derivatives."""
    return {bids: write_truth_as_prediction(cohort, tmp_path_factory.mktemp("pred"), EDITS,
                                            skip=("sub-c",), bids=bids)
            for bids in (False, True)}


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "bids"])
def evaluated(cohort, predictions, tmp_path_factory, request):
    pred = predictions[request.param]
    out = tmp_path_factory.mktemp("eval")
    return evaluate(cohort, pred, out), pred, out


def _rows(path):
    with open(path, newline="") as handle:
        return {row["subject"]: row for row in csv.DictReader(handle, delimiter="\t")}


def test_missing_prediction_and_label_are_reported(evaluated):
    result, _, out = evaluated
    rows = _rows(out / "metrics_per_subject.tsv")
    assert list(rows) == ["sub-a", "sub-b", "sub-c"]
    assert rows["sub-c"]["prediction"] == "missing"
    assert "no prediction folder" in rows["sub-c"]["problems"]
    assert rows["sub-c"]["wmh_dice"] == "n/a"
    assert "label rssi: none in the cohort" in rows["sub-b"]["problems"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["subjects"]["missing_prediction"] == ["sub-c"]
    assert summary["subjects"]["evaluated"] == 2
    assert summary["segmentation"]["rssi"]["n_subjects"] == 1
    html = (out / "evaluation.html").read_text()
    assert "sub-c" in html and "no prediction folder" in html


def test_segmentation_numbers_are_the_planted_ones(evaluated):
    result, _, out = evaluated
    rows = _rows(out / "metrics_per_subject.tsv")
    assert float(rows["sub-a"]["wmh_dice"]) == 1.0
    # sub-b: 32 of 36 voxels kept, 1 false voxel: Dice 64 / 69; AVD |36 - 33| / 36.
    assert float(rows["sub-b"]["wmh_dice"]) == pytest.approx(64 / 69, abs=1e-5)
    assert float(rows["sub-b"]["wmh_avd_pct"]) == pytest.approx(300 / 36, abs=1e-4)
    assert float(rows["sub-b"]["wmh_lesion_recall"]) == 0.5
    assert float(rows["sub-b"]["wmh_lesion_precision"]) == 0.5
    wmh = result.summary["segmentation"]["wmh"]
    assert wmh["pooled_dice"]["value"] == pytest.approx((72 + 64) / (72 + 69))
    assert wmh["per_subject"]["dice"]["median"] == pytest.approx((1 + 64 / 69) / 2)
    lacune = result.summary["detection"]["lacune"]["pooled"]
    assert (lacune["tp"], lacune["fp"], lacune["fn"]) == (2, 0, 0)


def test_detection_numbers_are_the_planted_ones(evaluated):
    result, _, out = evaluated
    cmb = result.summary["detection"]["cmb"]
    assert (cmb["pooled"]["tp"], cmb["pooled"]["fp"], cmb["pooled"]["fn"]) == (2, 1, 0)
    assert cmb["false_positives_per_subject"]["mean"] == 0.5
    assert cmb["froc"]["at"]["1"] == 1.0
    assert cmb["count"]["bias"] == 0.5
    epvs = result.summary["detection"]["epvs"]
    assert epvs["radius_mm"] == 1.5
    assert (epvs["pooled"]["tp"], epvs["pooled"]["fp"]) == (4, 0)
    regions = epvs["regions"]
    assert regions["basal_ganglia"]["true"] == 2 and regions["deep"]["true"] == 2
    assert cmb["regions"]["basal_ganglia"]["precision"] == 0.0  # the false CMB, y = 3 mm


def test_ratings_and_total_scores(evaluated):
    result, _, out = evaluated
    total = result.summary["total_score"]
    assert total["rule"]["accuracy"] == 1.0
    assert total["ordinal"]["accuracy"] == 0.5 and total["ordinal"]["within_one"] == 1.0
    assert total["ordinal"]["confusion"][1][2] == 1
    assert result.summary["grades"]["fazekas_pv"]["kappa_quadratic"] == 1.0
    assert result.summary["staals_components"]["wmh"]["accuracy"] == 1.0
    rows = _rows(out / "metrics_per_subject.tsv")
    assert rows["sub-b"]["total_ordinal_error"] == "1"


def test_html_links_the_worst_subject_to_its_report(evaluated):
    result, pred, out = evaluated
    html = (out / "evaluation.html").read_text()
    # Three panels: segmentation (Dice, lesion F1, volume Bland-Altman), detection (FROC, count
    # Bland-Altman), confusion matrices.
    assert html.count("data:image/png;base64,") == 3
    assert "report.html" in html
    link = html.split('href="')[1].split('"')[0]
    assert (out / link).resolve().is_file()
    assert str(pred.name) in link


def test_progress_names_each_subjects_state(cohort, predictions, tmp_path):
    # sub-a has no problem at all, sub-c no prediction: the progress callback gets a state for
    # both (a clean subject once made it index an empty problem list).
    states = {}
    evaluate(cohort, predictions[False], tmp_path / "eval",
             on_subject=lambda subject, state: states.__setitem__(subject, state))
    assert states == {"sub-a": "evaluated", "sub-b": "evaluated", "sub-c": "no prediction"}


def test_cli(cohort, predictions, tmp_path):
    pred = predictions[True]
    out = tmp_path / "cli"
    result = CliRunner().invoke(cli, ["evaluate", "--cohort", str(cohort), "--pred", str(pred),
                                      "--out", str(out), "--radius", "cmb=2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 of 3 subjects evaluated" in result.output
    assert "no prediction: sub-c" in result.output
    assert json.loads((out / "summary.json").read_text())["detection"]["cmb"]["radius_mm"] == 2
    bad = CliRunner().invoke(cli, ["evaluate", "--cohort", str(cohort), "--pred", str(pred),
                                   "--out", str(out), "--radius", "wmh=2"])
    assert bad.exit_code == 2


@pytest.mark.slow
def test_synthetic_cohort_numbers_agree_with_the_planted_truth(tmp_path):
    from csvdnet.io import load_nifti, read_cohort, read_points
    from csvdnet.synth import generate_cohort

    manifest = generate_cohort(tmp_path / "cohort", 2, 5, profile="tiny", progress=False)
    second = read_cohort(manifest).subjects[1]
    wmh = np.rint(load_nifti(second.labels["wmh"], kind="labelmap").data) == 1
    keep = wmh.copy()
    keep[: wmh.shape[0] // 2] = False  # drop the lesion voxels of one half of the grid
    n_cmb = len(read_points(second.labels["cmb"]))
    epvs = list(csv.DictReader(open(second.labels["epvs"])))

    def along(world):  # 0.4 x the tube's length along its axis: on the centreline, off the point
        return world + np.array([[0.4 * float(r["length_mm"]) * float(r[f"d{axis}"])
                                  for axis in "xyz"] for r in epvs])

    edits = {second.id: Edits(masks={"wmh": lambda m: m & keep}, points={
        "cmb": lambda w: w[:0], "epvs": along}, scores={"ordinal_total": 4})}
    pred = write_truth_as_prediction(manifest.parent, tmp_path / "pred", edits)
    result = evaluate(manifest, pred, tmp_path / "eval")
    rows = {r["subject"]: r for r in result.rows}
    first = rows[read_cohort(manifest).subjects[0].id]
    assert first["wmh_dice"] == 1.0 and first["wmh_hd95_mm"] == 0.0
    assert first["epvs_det_f1"] == 1.0 and first["cmb_det_fp"] == 0
    row = rows[second.id]
    kept, total = int(keep.sum()), int(wmh.sum())
    assert row["wmh_dice"] == pytest.approx(2 * kept / (total + kept))
    assert row["wmh_avd_pct"] == pytest.approx((total - kept) / total * 100)
    assert (row["cmb_det_tp"], row["cmb_det_fn"]) == (0, n_cmb)
    assert row["epvs_det_tp"] == len(epvs) and row["epvs_det_fp"] == 0
    total_score = result.summary["total_score"]
    true_totals = [r["total_true"] for r in result.rows]
    assert total_score["rule"]["accuracy"] == 1.0
    assert total_score["ordinal"]["accuracy"] == (0.5 if true_totals[1] != 4 else 1.0)
    assert result.summary["grades"]["fazekas_pv"]["accuracy"] == 1.0


def test_a_cohort_entry_without_its_reference_is_reported(cohort, predictions, tmp_path):
    import shutil

    copy = tmp_path / "cohort"
    shutil.copytree(cohort, copy)
    for flair in (copy / "sub-a").glob("flair.nii*"):  # a T1 left, the reference gone
        flair.rename(flair.with_name(flair.name.replace("flair", "t1")))
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "--cohort", str(copy), "--pred",
                                      str(predictions[False]), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "not evaluated, cohort entry unusable: sub-a" in result.output
    unreadable = json.loads((out / "summary.json").read_text())["subjects"]["unreadable_in_cohort"]
    assert list(unreadable) == ["sub-a"] and "flair" in unreadable["sub-a"]


def test_an_unrelated_prediction_folder_is_refused_and_nothing_is_written(cohort, tmp_path):
    unrelated = tmp_path / "holiday_photos"
    (unrelated / "2019").mkdir(parents=True)
    (unrelated / "notes.txt").write_text("not a prediction\n")
    out = tmp_path / "eval"

    result = CliRunner().invoke(cli, ["evaluate", "--cohort", str(cohort), "--pred",
                                      str(unrelated), "--out", str(out)])

    assert result.exit_code == 2, result.output
    assert (f"{unrelated}: no subject of the cohort could be evaluated: 3 without a prediction "
            "folder here (sub-a, sub-b, sub-c)") in result.output
    assert "evaluated" not in result.output.replace("could be evaluated", "")
    assert not (out / "summary.json").exists() and not (out / "metrics_per_subject.tsv").exists()


def _shift_prediction_grid(pred, subject_id, mm):
    """Rewrite a subject's prediction maps as if made from another image (shifted grid)."""
    from csvdnet.io import load_nifti

    for path in (pred / subject_id).glob("*.nii.gz"):
        image = load_nifti(path, kind="labelmap")
        affine = image.affine.copy()
        affine[0, 3] += mm
        save_nifti(image.data, affine, path)


def test_predictions_of_another_image_are_not_evaluated_loudly(cohort, predictions, tmp_path):
    import shutil

    pred = tmp_path / "pred"
    shutil.copytree(predictions[False], pred)
    _shift_prediction_grid(pred, "sub-a", 7.0)  # same id, another cohort's image
    out = tmp_path / "eval"

    result = CliRunner().invoke(cli, ["evaluate", "--cohort", str(cohort), "--pred", str(pred),
                                      "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "1 of 3 subjects evaluated" in result.output
    assert ("sub-a: NOT EVALUATED: the prediction is on another grid than the subject's "
            "reference image (affines differ by up to 7 mm)") in result.output
    rows = _rows(out / "metrics_per_subject.tsv")
    assert rows["sub-a"]["prediction"] == "other grid"
    assert rows["sub-a"]["wmh_dice"] == "n/a" and rows["sub-a"]["total_rule"] == "n/a"
    subjects = json.loads((out / "summary.json").read_text())["subjects"]
    assert subjects["evaluated"] == 1 and list(subjects["not_evaluated"]) == ["sub-a"]
    assert subjects["missing_prediction"] == ["sub-c"]

    _shift_prediction_grid(pred, "sub-b", -3.0)  # now no subject is comparable: refused
    refused = CliRunner().invoke(cli, ["evaluate", "--cohort", str(cohort), "--pred", str(pred),
                                       "--out", str(tmp_path / "eval2")])
    assert refused.exit_code == 2
    assert ("no subject of the cohort could be evaluated: 2 with a prediction on another grid "
            "than the cohort's image (sub-a, sub-b); 1 without a prediction folder here (sub-c)"
            ) in refused.output


def test_a_marker_predict_did_not_measure_is_reported_with_its_reason(cohort, predictions,
                                                                       tmp_path):
    """Predict writes no microbleed files without SWI and says why in report.json: evaluate
    scores the other markers and names that reason, never counting 0 microbleeds found."""
    import shutil

    pred = tmp_path / "pred"
    shutil.copytree(predictions[False], pred)
    (pred / "sub-a" / "cmb_points.tsv").unlink()
    (pred / "sub-a" / "report.json").write_text(json.dumps({"markers": {"cmb": {
        "not_measured": "not measured: swi missing (the marker cannot be seen without it)"},
        "epvs": {"not_measured": None}}}))
    result = evaluate(cohort, pred, tmp_path / "eval")
    rows = _rows(tmp_path / "eval" / "metrics_per_subject.tsv")
    assert "cmb: not measured: swi missing" in rows["sub-a"]["problems"]
    assert rows["sub-a"]["cmb_det_f1"] == "n/a" and float(rows["sub-a"]["wmh_dice"]) == 1.0
    cmb = result.summary["detection"]["cmb"]["pooled"]
    assert (cmb["tp"], cmb["fn"]) == (1, 0)  # sub-b only: sub-a's microbleed is not a miss
