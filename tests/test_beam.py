"""``--engine beam``: cohort prediction and the preprocessing cache on Apache Beam (DirectRunner).

The Beam pipeline must write the same files as the local commands. What legitimately differs is
when and how fast it ran, and only that is masked before comparing bytes: ``report.json``
``created`` and ``timings``, the same two in ``report.html`` (the date line and the stage-seconds
table), and ``scores.tsv``'s ``seconds`` column. Everything else (NIfTI maps, TSVs, tables, the
rest of the reports, ``errors.tsv``, the cache's arrays and JSON) must be byte-identical.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from csvdnet.cli import cli

try:
    import apache_beam  # noqa: F401
    HAVE_BEAM = True
except ImportError:
    HAVE_BEAM = False

needs_beam = pytest.mark.skipif(
    not HAVE_BEAM, reason="apache_beam is not installed: pip install -e '.[beam,test]' "
                          "(CI runs these in a second step with the beam extra)")

TIMING_KEYS = ("created", "timings")
_HTML_DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
_HTML_SECONDS = re.compile(r"(<tr><td>[a-z_]+</td><td>)\d+\.\d\d(</td></tr>)")


def _masked(path: Path) -> bytes:
    """The file's bytes with its timing fields (and only those) masked."""
    data = path.read_bytes()
    if path.name.endswith("report.json"):
        report = json.loads(data)
        assert set(TIMING_KEYS) <= set(report)
        timing_stages = list(report["timings"])  # the same stages, in the same order
        for key in TIMING_KEYS:
            report[key] = None
        report["timings"] = timing_stages
        return json.dumps(report, indent=1).encode()
    if path.name.endswith("report.html"):
        text = data.decode()
        table = text.index("<th>stage</th><th>seconds</th>")
        end = text.index("</table>", table)
        text = text[:table] + _HTML_SECONDS.sub(r"\1#\2", text[table:end]) + text[end:]
        return _HTML_DATE.sub("DATE", text).encode()
    if path.parent.name == "rows" and path.suffix == ".json":  # OUT/.csvdnet/rows/<id>.json
        row = json.loads(data)
        row.pop("seconds", None)
        return json.dumps(row).encode()
    if path.name == "scores.tsv":
        rows = [line.split("\t") for line in data.decode().splitlines()]
        column = rows[0].index("seconds")
        return "\n".join("\t".join(r[:column] + r[column + 1:]) for r in rows).encode()
    return data


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_same_outputs(local: Path, beam: Path) -> None:
    assert _files(beam) == _files(local)
    different = [name for name in _files(local)
                 if _masked(local / name) != _masked(beam / name)]
    assert not different, f"beam outputs differ from local predict: {different}"


@pytest.fixture(scope="module")
def cohort_with_a_corrupt_subject(tiny_run, tmp_path_factory):
    """The tiny run's 3 subjects as a cohort folder, plus ``sub-0003`` whose FLAIR is corrupt."""
    manifest, _ = tiny_run
    cohort = tmp_path_factory.mktemp("beam_cohort") / "cohort"
    for subject in ("sub-0000", "sub-0001", "sub-0002"):
        shutil.copytree(manifest.parent / subject, cohort / subject)
    shutil.copytree(manifest.parent / "sub-0000", cohort / "sub-0003")
    (cohort / "sub-0003" / "flair.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    return cohort


def _predict(cohort: Path, model: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["predict", str(cohort), "--model", str(model), "--out",
                                    str(out), "--quiet", *extra])


@needs_beam
def test_beam_predict_writes_what_local_predict_writes_and_resumes(
        cohort_with_a_corrupt_subject, exported_model, tmp_path):
    cohort = cohort_with_a_corrupt_subject
    local, beam = tmp_path / "local", tmp_path / "beam"
    result = _predict(cohort, exported_model, local)
    assert result.exit_code == 1, result.output  # the corrupt subject
    result = _predict(cohort, exported_model, beam, "--engine", "beam", "--runner",
                      "DirectRunner")
    assert result.exit_code == 1, result.output
    assert "predicted 3, skipped 0 already done, failed 1 of 4" in result.output

    _assert_same_outputs(local, beam)
    errors = list(csv.DictReader(open(beam / "errors.tsv"), delimiter="\t"))
    assert [(e["subject"], e["error"]) for e in errors] == [("sub-0003", "input")]
    assert "flair.nii.gz" in errors[0]["message"]
    scores = list(csv.DictReader(open(beam / "scores.tsv"), delimiter="\t"))
    assert [r["subject"] for r in scores] == ["sub-0000", "sub-0001", "sub-0002"]
    assert not (beam / ".beam").exists()

    # A job that failed after finishing sub-0000 and sub-0001 but before writing scores.tsv:
    # sub-0002 never finished, sub-0001's row is only in the job's record of finished subjects.
    done_at = {s: (beam / s / "report.json").stat().st_mtime_ns
               for s in ("sub-0000", "sub-0001")}
    row_sub1 = next(r for r in scores if r["subject"] == "sub-0001")
    shutil.rmtree(beam / "sub-0002")
    (beam / ".beam" / "rows").mkdir(parents=True)
    (beam / ".beam" / "rows" / "sub-0001.json").write_text(json.dumps(row_sub1))
    with open(beam / "scores.tsv", "w") as handle:
        handle.write("".join(line for line in open(local / "scores.tsv")
                             if not line.startswith(("sub-0001", "sub-0002"))))
    result = _predict(cohort, exported_model, beam, "--engine", "beam")
    assert "predicted 1, skipped 2 already done, failed 1 of 4" in result.output, result.output
    assert {s: (beam / s / "report.json").stat().st_mtime_ns for s in done_at} == done_at
    _assert_same_outputs(local, beam)
    assert not (beam / ".beam").exists()

    # Nothing left to do: no pipeline runs, the tables stay as they are.
    result = _predict(cohort, exported_model, beam, "--engine", "beam")
    assert "predicted 0, skipped 3 already done, failed 1 of 4" in result.output, result.output
    _assert_same_outputs(local, beam)


@needs_beam
def test_beam_preprocess_writes_the_same_cache(tiny_run, tmp_path):
    manifest, _ = tiny_run
    args = ["preprocess", str(manifest), "--spacing", "4", "--no-register", "--quiet"]
    local, beam = tmp_path / "local", tmp_path / "beam"
    result = CliRunner().invoke(cli, [*args, "--out", str(local)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, [*args, "--out", str(beam), "--engine", "beam", "--",
                                      "--direct_num_workers=1"])
    assert result.exit_code == 0, result.output
    assert "preprocessed 3 of 3 subjects" in result.output
    assert _files(beam) == _files(local) and len(_files(local)) > 3
    assert all((local / f).read_bytes() == (beam / f).read_bytes() for f in _files(local))


@needs_beam
def test_beam_options_are_checked_before_anything_runs(tiny_run, tmp_path):
    manifest, run = tiny_run
    result = _predict(manifest, run, tmp_path / "out", "--engine", "beam", "--",
                      "--runner=FlinkRunner")
    assert result.exit_code == 2 and "csvdnet's --runner option" in result.output
    result = _predict(manifest, run, tmp_path / "out", "--engine", "beam", "--", "stray")
    assert result.exit_code == 2 and "stray: not a Beam option" in result.output
    assert not (tmp_path / "out").exists()


def test_beam_options_need_the_beam_engine(tiny_run, tmp_path):
    manifest, run = tiny_run
    result = _predict(manifest, run, tmp_path / "out", "--", "--direct_num_workers=2")
    assert result.exit_code == 2 and "need --engine beam" in result.output
    result = _predict(manifest, run, tmp_path / "out", "--engine", "beam", "--jobs", "2")
    assert result.exit_code == 2 and "--jobs is for --engine local" in result.output


def test_missing_beam_says_how_to_install_it(tiny_run, tmp_path, monkeypatch):
    manifest, run = tiny_run
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # import apache_beam: ImportError
    result = _predict(manifest, run, tmp_path / "out", "--engine", "beam")
    assert result.exit_code == 2
    assert "pip install 'csvdnet[beam]'" in result.output
    result = CliRunner().invoke(cli, ["preprocess", str(manifest), "--out",
                                      str(tmp_path / "cache"), "--engine", "beam"])
    assert result.exit_code == 2 and "pip install 'csvdnet[beam]'" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
