"""``csvdnet demo``: one synthetic subject through an exported model, reports and a table."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from csvdnet import demo
from csvdnet.cli import cli
from csvdnet.errors import CsvdnetInputError


def test_without_a_shipped_model_the_demo_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "SHIPPED_MODEL", tmp_path / "saved_models" / "csvdnet-synthetic")
    monkeypatch.delenv(demo.MODEL_ENV, raising=False)
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 2
    assert "no shipped model is installed" in result.output and "--model" in result.output
    assert not (tmp_path / "demo").exists()  # nothing made before the model is found


def test_the_shipped_model_is_found_beside_the_package(tmp_path, monkeypatch):
    shipped = tmp_path / "saved_models" / "csvdnet-synthetic"
    (shipped / "1").mkdir(parents=True)
    (shipped / "2").mkdir()
    (shipped / "2" / "metadata.json").write_text("{}")
    monkeypatch.setattr(demo, "SHIPPED_MODEL", shipped)
    monkeypatch.delenv(demo.MODEL_ENV, raising=False)
    assert demo.resolve_model(None) == shipped / "2"
    monkeypatch.setenv(demo.MODEL_ENV, str(tmp_path / "other"))
    assert demo.resolve_model(None) == tmp_path / "other"
    assert demo.resolve_model(tmp_path / "given") == tmp_path / "given"
    assert demo.SHIPPED_MODEL.parts[-2:] == ("saved_models", "csvdnet-synthetic")


def test_format_table_pads_columns():
    text = demo.format_table([("lacunes", "1", "2", "1"), ("RSSI (never scored)", "0", "0", "-")])
    lines = text.splitlines()
    assert lines[0].split() == ["marker", "found", "truth", "Staals", "point"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].index("1") == lines[3].index("0") == lines[0].index("found")


def test_a_damaged_model_fails_before_anything_is_made(tmp_path):
    model = tmp_path / "model" / "1"
    model.mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"")  # an export without its metadata.json
    with pytest.raises(CsvdnetInputError, match="metadata.json: missing"):
        demo.run_demo(tmp_path / "demo", model.parent)
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_demo_writes_the_reports_and_prints_the_table(exported_model, tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--model", str(exported_model),
                                      "--profile", "tiny"])
    assert result.exit_code == 0, result.output
    report_json = out / "predictions" / "sub-0000" / "report.json"
    report_html = report_json.with_suffix(".html")
    assert report_json.is_file() and report_html.is_file()
    assert (out / "predictions" / "scores.tsv").is_file()
    assert (out / "predictions" / "sub-0000" / "wmh_mask.nii.gz").is_file()
    assert f"report: {report_html}" in result.output
    report = json.loads(report_json.read_text())
    assert report["model"]["kind"] == "saved_model"
    assert report["model"]["id"] == f"tiny/1@{report['model']['sha256'][:12]}"
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["marker", "found", "truth"]
    rows = {line.split("  ")[0]: line for line in lines[2:9]}
    assert set(rows) == {"WMH (Fazekas PV/deep)", "lacunes", "microbleeds",
                         "EPVS (basal ganglia grade)", "RSSI (never scored)",
                         "total SVD score (Staals)", "total SVD score (ordinal head)"}
    truth = (out / "cohort" / "ratings.csv").read_text().splitlines()
    header, row = truth[0].split(","), truth[1].split(",")
    true_total = row[header.index("total_score")]
    assert int(true_total) >= 2  # the demo subject is made with markers to find
    assert rows["total SVD score (Staals)"].split()[-1] == true_total
    assert str(report["scores"]["staals-2014"]["total"]) in rows["total SVD score (Staals)"]
