"""review export: rejected components leave the masks, added balls are painted, nothing is
written when no review is done."""

from __future__ import annotations

import numpy as np
import pytest
from _review_fixture import SUBJECT, make_prediction
from click.testing import CliRunner

from csvdnet.cli import cli
from csvdnet.errors import CsvdnetInputError
from csvdnet.io import load_nifti, read_cohort
from csvdnet.inference.report_html import REVIEW_MARK
from csvdnet.review.export import export_cohort
from csvdnet.review.rating import reviewed_overlay, reviewed_rating
from csvdnet.review.store import ReviewStore, read_review
from csvdnet.review.subject import ReviewSubject


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make_prediction(tmp_path_factory.mktemp("review-export"))


def test_nothing_done_is_one_line_and_no_cohort(planted, tmp_path):
    result = CliRunner().invoke(cli, ["review", "export", str(planted["pred"]), "--out",
                                      str(tmp_path / "c")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "no subject has a review" in result.output
    assert not (tmp_path / "c").exists()


def test_rejected_wmh_component_removed_and_added_lacune_painted(planted, tmp_path):
    subject = ReviewSubject.load(planted["pred"], SUBJECT)
    ids = {f.id for f in subject.findings}
    store = ReviewStore(planted["pred"], "erin")
    labels, matched = subject.components("wmh")
    rejected = sorted(matched)[0]
    lacune_at = (subject.affine @ [*planted["missed_voxel"], 1.0])[:3].tolist()
    store.change(SUBJECT, subject.report, {"add": "lacune", "world": lacune_at, "region":
                                           "deep_wm", "side": "L", "radius_mm": 4.0}, ids)
    for fid in sorted(ids):
        store.change(SUBJECT, subject.report,
                     {"decide": fid, "decision": "reject" if fid == rejected else "accept"}, ids)
    result = export_cohort(planted["pred"], tmp_path / "cohort", "erin")
    assert result.written == [SUBJECT]
    [exported] = read_cohort(tmp_path / "cohort" / "manifest.csv").subjects
    wmh = load_nifti(exported.labels["wmh"], kind="labelmap").data > 0
    assert np.array_equal(wmh, (labels > 0) & (labels != matched[rejected]))
    lacune = load_nifti(exported.labels["lacune"], kind="labelmap").data > 0
    spacing = np.sqrt(np.sum(subject.affine[:3, :3] ** 2, axis=0))
    ball = 4 / 3 * np.pi * 4.0 ** 3 / np.prod(spacing)  # voxels of a 4 mm ball
    assert 0.4 * ball <= lacune.sum() <= 2.5 * ball
    assert lacune[tuple(np.rint(planted["missed_voxel"]).astype(int))]
    review_tsv = (tmp_path / "cohort" / "review.tsv").read_text().splitlines()
    assert review_tsv[1].split("\t")[:2] == [SUBJECT, "erin"]
    # report.html: the reviewed state beside the model's, after the score cards
    page = (planted["pred"] / SUBJECT / "report.html").read_text()
    section = page[page.index(REVIEW_MARK):]
    assert section.count('data-reviewer="erin"') == 1 and 'data-status="done"' in section
    rated = reviewed_rating(subject, read_review(store.path(SUBJECT)))
    row = section[section.index('data-item="lacune_count"'):]
    model_lacunes = subject.model_ratings()["lacune_count"]
    assert row.startswith('data-item="lacune_count" class="changed"')  # highlighted
    assert row[:row.index("</tr>")].endswith(f'<td>Lacunes</td><td>{model_lacunes}</td>'
                                             f'<td><b>{rated["ratings"]["lacune_count"]}</b></td>')
    assert rated["ratings"]["lacune_count"] == model_lacunes + 1
    # the page's overlay shows the same reviewed masks, one bit per task
    bits = reviewed_overlay(subject, read_review(store.path(SUBJECT)))
    assert np.array_equal((bits & 1) > 0, wmh) and np.array_equal((bits & 4) > 0, lacune)
    export_cohort(planted["pred"], tmp_path / "cohort", "erin")  # again: replaced, not added
    assert (planted["pred"] / SUBJECT / "report.html").read_text().count("<!--review:erin-->") == 1


def test_a_marker_predict_did_not_measure_stays_unmeasured(tmp_path):
    """A report whose microbleeds were not measured (no SWI): no CMB card, no CMB label, a
    microbleed point left undecided by the rules, as in report.json."""
    import json

    planted = make_prediction(tmp_path)
    folder = planted["pred"] / SUBJECT
    report = json.loads((folder / "report.json").read_text())
    report["markers"]["cmb"] = {"kind": "detection", "count": None, "findings": [],
                                "not_measured": "swi missing"}
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "cmb_points.tsv").unlink()
    subject = ReviewSubject.load(planted["pred"], SUBJECT)
    assert "cmb" not in subject.measured_tasks()
    assert not [f for f in subject.findings if f.task == "cmb"]
    rated = reviewed_rating(subject, None)
    assert rated["ratings"]["cmb_count"] is None
    assert rated["totals"]["staals-2014"] is None or "microbleeds" not in rated["points"][
        "staals-2014"]
    store = ReviewStore(planted["pred"], "fay")
    ids = {f.id for f in subject.findings}
    for fid in sorted(ids):
        store.change(SUBJECT, subject.report, {"decide": fid, "decision": "accept"}, ids)
    with pytest.raises(CsvdnetInputError, match="not a cohort written by review export"):
        export_cohort(planted["pred"], tmp_path / "cohort", "fay")  # the images' own cohort
    export_cohort(planted["pred"], tmp_path / "reviewed", "fay")
    [exported] = read_cohort(tmp_path / "reviewed" / "manifest.csv").subjects
    assert "cmb" not in exported.labels and "epvs" in exported.labels
    header = (tmp_path / "reviewed" / "manifest.csv").read_text().splitlines()[0].split(",")
    assert "cmb" not in header
    ratings = (tmp_path / "reviewed" / "ratings.csv").read_text().splitlines()[1].split(",")
    assert ratings[4] == ""  # cmb_count not rated


TINY_RECIPE = """
data: {{cache: {cache}, channels: [flair, t1, t2, swi, dwi], val_fraction: 0.0,
       patch_size: [16, 16, 16], whole_brain_every: 2}}
preprocess: {{spacing: [4.0, 4.0, 4.0], pad_multiple: 16, register: false}}
model: {{input_channels: 5, base_filters: 4, depth: 2, blocks_per_level: [1, 1, 1],
        dropout: 0.0}}
inference: {{window: [16, 16, 16], overlap: 0.25}}
train: {{run_dir: {run}, epochs: 1, steps_per_epoch: 2, batch_size: 1, warmup_steps: 1,
        mixed_precision: float32}}
"""


@pytest.mark.slow
def test_the_exported_cohort_preprocesses_and_trains_as_it_is(planted, tmp_path):
    """predict -> review -> train: csvdnet preprocess and csvdnet train on the export, no edit."""
    subject = ReviewSubject.load(planted["pred"], SUBJECT)
    ids = {f.id for f in subject.findings}
    store = ReviewStore(planted["pred"], "gus")
    for fid in sorted(ids):
        store.change(SUBJECT, subject.report, {"decide": fid, "decision": "accept"}, ids)
    export_cohort(planted["pred"], tmp_path / "reviewed", "gus")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.format(cache=tmp_path / "cache", run=tmp_path / "run"))
    runner = CliRunner()
    result = runner.invoke(cli, ["preprocess", str(tmp_path / "reviewed" / "manifest.csv"),
                                 "--out", str(tmp_path / "cache"), "--config", str(recipe)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["train", str(recipe), "--quiet", "--no-calibrate"])
    assert result.exit_code == 0, result.output
    assert "done: epoch 1, step 2" in result.output
