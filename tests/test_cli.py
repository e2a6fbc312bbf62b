"""The command line, driven through click's CliRunner on tiny cohorts made here."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from csvdnet import __version__
from csvdnet.cli import cli


def _head(shape, spacing, seed):
    """A smooth bright ellipsoid 'head' with a darker core, on a RAS grid centred at 0."""
    grid = np.stack(np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)],
                                indexing="ij"), -1)
    r = np.sqrt(((grid / [20.0, 24.0, 18.0]) ** 2).sum(-1))
    rng = np.random.default_rng(seed)
    data = np.where(r < 1, 100.0, 0.0) + np.where(r < 0.5, 60.0, 0.0)
    return (data + rng.normal(0, 2, shape)).clip(0).astype(np.float32)


def _write(path, data, spacing, lps=False):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(data.shape) - 1) / 2 * np.array(spacing)
    if lps:  # the same object stored with the first two axes flipped
        data = data[::-1, ::-1]
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        affine = flip @ affine
    nib.save(nib.Nifti1Image(data, affine), str(path))


@pytest.fixture()
def cohort(tmp_path):
    root = tmp_path / "cohort"
    for i, sid in enumerate(["s01", "s02"]):
        d = root / sid
        (d / "labels").mkdir(parents=True)
        _write(d / "flair.nii.gz", _head((24, 28, 12), (2.0, 2.0, 3.5), i), (2.0, 2.0, 3.5))
        _write(d / "t1.nii.gz", _head((28, 32, 24), (1.6, 1.6, 1.8), i + 10), (1.6, 1.6, 1.8),
               lps=True)
        mask = np.zeros((24, 28, 12), np.uint8)
        mask[10:13, 12:15, 5:7] = 1
        _write(d / "labels" / "wmh.nii.gz", mask, (2.0, 2.0, 3.5))
    (root / "s01" / "labels" / "cmb.csv").write_text("x,y,z\n1.0,2.0,0.0\n")
    return root


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_version_and_help():
    result = _run(["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = _run(["--help"])
    assert result.exit_code == 0
    for command in ("synth", "preprocess"):
        assert command in result.output


def test_help_does_not_import_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from csvdnet.cli import cli; "
            "CliRunner().invoke(cli, ['--help']); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_preprocess_mixed_grids(cohort, tmp_path):
    out = tmp_path / "cache"
    result = _run(["preprocess", str(cohort), "--out", str(out), "--sequences", "flair,t1",
                   "--spacing", "2", "--no-register", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "preprocessed 2 of 2 subjects" in result.output
    index = json.loads((out / "index.json").read_text())
    assert index["channels"] == ["flair", "t1"] and index["subjects"] == ["s01", "s02"]
    image = np.load(out / "s01" / "image.npy")
    assert image.ndim == 4 and image.shape[-1] == 2 and image.dtype == np.float32
    assert all(n % 16 == 0 for n in image.shape[:3])
    wmh = np.load(out / "s01" / "wmh.npy")
    assert wmh.shape == image.shape[:3] and wmh.sum() > 0
    subject = json.loads((out / "s01" / "subject.json").read_text())
    assert len(subject["points"]["cmb"]) == 1
    assert "cmb" not in json.loads((out / "s02" / "subject.json").read_text())["labels"]


def test_bad_subject_is_recorded_and_others_go_on(cohort, tmp_path):
    (cohort / "s02" / "t1.nii.gz").write_bytes(b"not a nifti at all")
    out = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["preprocess", str(cohort), "--out", str(out),
                                      "--sequences", "flair,t1", "--no-register", "--quiet"])
    assert result.exit_code == 1
    assert "failed s02:" in result.output and "t1.nii.gz" in result.output
    assert "1 of 2 subjects failed" in result.output
    assert (out / "s01" / "image.npy").is_file() and not (out / "s02").exists()
    assert "s02" in json.loads((out / "index.json").read_text())["failed"]


def test_input_error_is_one_line_exit_2(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,flair\na,missing.nii.gz\n")  # no subject column: the whole cohort
    result = CliRunner().invoke(cli, ["preprocess", str(manifest), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "m.csv" in lines[0]
    assert "missing column(s) subject" in lines[0] and "Traceback" not in result.output


def test_a_manifest_row_naming_a_missing_file_fails_that_subject_only(cohort, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"subject,flair,t1\ns01,{cohort}/s01/flair.nii.gz,{cohort}/s01/t1.nii.gz\n"
                        f"s02,{cohort}/s02/flair.nii.gz,{cohort}/s02/missing.nii.gz\n")
    out = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["preprocess", str(manifest), "--out", str(out),
                                      "--sequences", "flair,t1", "--no-register", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "preprocessed 1 of 2 subjects" in result.output
    assert "failed s02:" in result.output and "missing.nii.gz does not exist" in result.output
    assert json.loads((out / "index.json").read_text())["subjects"] == ["s01"]


@pytest.mark.parametrize("args, message", [
    (["--spacing", "-1"], "preprocess.spacing: must be positive, got [-1.0, -1.0, -1.0]"),
    (["--sequences", "flair,t3"], "no subject has a t3 image: is the sequence name right?"),
    (["--reference", "t3"], "preprocess.reference: 't3' is not one of data.channels"),
    (["--reference", "t2"], "no subject has a t2 image (the reference sequence): is the "
                            "sequence name right?"),
])
def test_bad_arguments_are_usage_errors_before_any_work(cohort, tmp_path, args, message):
    out = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["preprocess", str(cohort), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()  # nothing was written: no subject was tried


def test_bad_config_exit_2(cohort, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preprocess:\n  spacingg: 2\n")
    result = CliRunner().invoke(cli, ["preprocess", str(cohort), "--out", str(tmp_path / "o"),
                                      "--config", str(cfg)])
    assert result.exit_code == 2 and "unknown key preprocess.spacingg" in result.output



def test_preprocess_jobs_gives_the_same_cache(cohort, tmp_path):
    args = ["preprocess", str(cohort), "--sequences", "flair,t1", "--no-register", "--quiet"]
    assert _run(args + ["--out", str(tmp_path / "one")]).exit_code == 0
    result = _run(args + ["--out", str(tmp_path / "two"), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    for sid in ("s01", "s02"):
        np.testing.assert_array_equal(np.load(tmp_path / "one" / sid / "image.npy"),
                                      np.load(tmp_path / "two" / sid / "image.npy"))
