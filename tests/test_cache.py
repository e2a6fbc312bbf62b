"""The preprocessed cache: layout, failures recorded, resume, reader."""

from __future__ import annotations

import dataclasses
import gzip
import json

import numpy as np
import pytest

from csvdnet.cache import load_cache, load_cached_subject, preprocess_cohort
from csvdnet.cache import write as cache_write
from csvdnet.config import PreprocessConfig, to_dict
from csvdnet.errors import CsvdnetInputError
from csvdnet.io import Ratings, read_cohort, save_nifti, write_points, write_ratings

FLAIR_SHAPE = (28, 28, 28)  # 3 mm, RAS, centred on the origin
T1_SHAPE = (22, 22, 22)  # 4 mm, LPS
CFG = PreprocessConfig(spacing=(3.0, 3.0, 3.0), register=False, pad_multiple=8)


def _affine(shape, spacing, flip=(1.0, 1.0, 1.0), shift=0.0) -> np.ndarray:
    affine = np.diag([*(np.asarray(flip) * spacing), 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + shift
    return affine


FLAIR = _affine(FLAIR_SHAPE, 3.0)
T1 = _affine(T1_SHAPE, 4.0, flip=(-1.0, -1.0, 1.0))
CMB = FLAIR[:3, :3] @ [14, 15, 14] + FLAIR[:3, 3]  # world mm, inside the wmh cube


def _head(affine, shape) -> np.ndarray:
    """Scalp, dark skull and a brain with an intensity slope (so its std is not zero)."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    r = np.sqrt(((world / [36.0, 38.0, 34.0]) ** 2).sum(-1))
    brain = np.sqrt(((world / [27.0, 29.0, 25.0]) ** 2).sum(-1)) < 1
    return np.where(r < 1, 80.0, 0.0) * (r > 0.85) + brain * (60.0 + world[..., 0])


def _subject(root, name, *, t1_shift=0.0, labels=True, t1=True):
    folder = root / name
    save_nifti(_head(FLAIR, FLAIR_SHAPE), FLAIR, folder / "flair.nii.gz")
    if t1:
        t1_affine = T1.copy()
        t1_affine[:3, 3] += t1_shift  # a wrong affine: the head is elsewhere in the world
        save_nifti(_head(T1, T1_SHAPE), t1_affine, folder / "t1.nii.gz")
    if labels:
        wmh = np.zeros(FLAIR_SHAPE, np.uint8)
        wmh[14:16, 14:16, 14:16] = 1  # 2 x 2 x 2 voxels at the working spacing
        save_nifti(wmh, FLAIR, folder / "labels" / "wmh.nii.gz")
        rssi = np.zeros(T1_SHAPE, np.uint8)
        rssi[10:13, 10:13, 10:13] = 1  # drawn on t1
        save_nifti(rssi, T1, folder / "labels" / "rssi@t1.nii.gz")
        regions = np.zeros(FLAIR_SHAPE, np.uint8)
        regions[8:20, 8:20, 8:14], regions[8:20, 8:20, 14:20] = 3, 7
        save_nifti(regions, FLAIR, folder / "labels" / "regions.nii.gz")
        write_points(folder / "labels" / "cmb.csv", [CMB])


@pytest.fixture()
def cohort(tmp_path):
    root = tmp_path / "cohort"
    _subject(root, "s01")
    _subject(root, "s02", labels=False)
    _subject(root, "s03", labels=False, t1_shift=500.0)
    _subject(root, "s04", labels=False, t1=False)
    write_ratings(root / "ratings.csv", {"s01": Ratings(fazekas_pv=2, cmb_count=1)})
    return read_cohort(root, sequences=("flair", "t1"))


def test_cache_writes_the_documented_files_and_records_failures(cohort, tmp_path):
    out = tmp_path / "cache"
    summary = preprocess_cohort(cohort, out, CFG, progress=False)

    assert summary.done == summary.written == ("s01", "s02") and summary.skipped == ()
    assert set(summary.failed) == {"s03", "s04"}
    assert "t1.nii.gz: field of view covers 0%" in summary.failed["s03"]
    assert "subject s04 has no t1 image" in summary.failed["s04"]
    index = json.loads((out / "index.json").read_text())
    assert index == {"format": "csvdnet-cache", "version": 1, "channels": ["flair", "t1"],
                     "preprocess": to_dict(CFG), "subjects": ["s01", "s02"],
                     "failed": summary.failed}
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "s01", "s02"]

    s01 = out / "s01"
    assert sorted(p.name for p in s01.iterdir()) == [
        "image.npy", "meta.json", "regions.npy", "rssi.npy", "subject.json", "wmh.npy"]
    image = np.load(s01 / "image.npy")
    assert image.dtype == np.float32 and image.shape[-1] == 2
    assert all(n % 8 == 0 for n in image.shape[:3])
    wmh, rssi, regions = (np.load(s01 / f"{n}.npy") for n in ("wmh", "rssi", "regions"))
    assert wmh.dtype == rssi.dtype == regions.dtype == np.uint8
    assert wmh.shape == rssi.shape == regions.shape == image.shape[:3]
    assert wmh.sum() == 8  # same spacing: voxel for voxel
    assert set(np.unique(regions)) == {0, 3, 7}
    assert (regions == 3).sum() == (regions == 7).sum() == 12 * 12 * 6
    assert rssi.sum() == 64  # 3 voxels of 4 mm = 12 mm = 4 voxels of 3 mm, per axis

    record = json.loads((s01 / "subject.json").read_text())
    assert record["id"] == "s01" and record["spacing"] == [3.0, 3.0, 3.0]
    assert record["labels"] == ["wmh", "rssi", "cmb"]
    (cmb,) = record["points"]["cmb"]
    assert wmh[tuple(np.round(cmb).astype(int))] == 1  # the point sits in the wmh cube
    assert record["ratings"]["fazekas_pv"] == 2 and record["ratings"]["total_score"] is None
    meta = json.loads((s01 / "meta.json").read_text())
    assert meta["channels"] == ["flair", "t1"] and meta["config"] == to_dict(CFG)

    s02 = json.loads((out / "s02" / "subject.json").read_text())
    assert s02["labels"] == [] and s02["points"] == {} and s02["ratings"] is None


def test_reader_returns_what_was_written(cohort, tmp_path):
    out = tmp_path / "cache"
    preprocess_cohort(cohort, out, CFG, progress=False)
    index, subjects = load_cache(out)
    assert subjects == ["s01", "s02"] and index["channels"] == ["flair", "t1"]

    subject = load_cached_subject(out, "s01")
    assert isinstance(subject.image, np.memmap) and not subject.image.flags.writeable
    np.testing.assert_array_equal(subject.image, np.load(out / "s01" / "image.npy"))
    assert subject.meta.channels == ["flair", "t1"] and subject.spacing == (3.0, 3.0, 3.0)
    assert sorted(subject.masks) == ["regions", "rssi", "wmh"]
    assert subject.points["cmb"].shape == (1, 3)
    assert subject.labels == ("wmh", "rssi", "cmb")
    assert subject.ratings["cmb_count"] == 1
    world = subject.meta.working_to_world(subject.points["cmb"])
    np.testing.assert_allclose(world, [CMB], atol=1e-9)


def test_resume_skips_complete_subjects_and_redoes_all_when_the_config_changes(
        cohort, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cache"
    preprocess_cohort(cohort, out, CFG, progress=True)
    assert "preprocess" in capsys.readouterr().err  # the progress bar

    calls = []
    original = cache_write.preprocess_subject
    monkeypatch.setattr(cache_write, "preprocess_subject",
                        lambda images, *a, **k: calls.append(images) or original(images, *a, **k))
    (out / "index.json").unlink()  # as after a killed run
    summary = preprocess_cohort(cohort, out, CFG, progress=False)
    assert summary.done == summary.skipped == ("s01", "s02") and summary.written == ()
    assert len(calls) == 1  # only s03 is tried again (s04 fails before preprocessing)
    assert load_cache(out)[1] == ["s01", "s02"]

    changed = dataclasses.replace(CFG, crop_margin_mm=8.0)
    assert preprocess_cohort(cohort, out, changed, progress=False).written == ("s01", "s02")
    assert preprocess_cohort(cohort, out, changed, progress=False,
                             overwrite=True).written == ("s01", "s02")
    assert json.loads((out / "s01" / "meta.json").read_text())["config"]["crop_margin_mm"] == 8.0


def test_a_subject_that_fails_now_loses_its_old_folder(cohort, tmp_path):
    out = tmp_path / "cache"
    preprocess_cohort(cohort, out, CFG, progress=False)
    (cohort.root / "s02" / "t1.nii.gz").write_bytes(b"not a nifti")
    summary = preprocess_cohort(cohort, out, CFG, progress=False, overwrite=True)
    assert "t1.nii.gz: not a readable NIfTI" in summary.failed["s02"]
    assert not (out / "s02").exists()


def test_other_exceptions_propagate(cohort, tmp_path, monkeypatch):
    def broken(*_, **__):
        raise RuntimeError("bug")

    monkeypatch.setattr(cache_write, "preprocess_subject", broken)
    with pytest.raises(RuntimeError, match="bug"):
        preprocess_cohort(cohort, tmp_path / "cache", CFG, progress=False)
    assert not (tmp_path / "cache" / "index.json").exists()


def test_channels_must_be_cohort_sequences_including_the_reference(cohort, tmp_path):
    with pytest.raises(CsvdnetInputError, match="must include the reference sequence flair"):
        preprocess_cohort(cohort, tmp_path / "cache", CFG, channels=["t1"], progress=False)
    with pytest.raises(CsvdnetInputError, match="channel.* swi are not sequences of the cohort"):
        preprocess_cohort(cohort, tmp_path / "cache", CFG, channels=["flair", "swi"],
                          progress=False)


def test_reading_what_is_not_a_cache_names_the_folder(tmp_path):
    with pytest.raises(CsvdnetInputError, match=rf"{tmp_path}: not a csvdnet cache"):
        load_cache(tmp_path)
    with pytest.raises(CsvdnetInputError, match="cache folder not found"):
        load_cache(tmp_path / "missing")
    (tmp_path / "index.json").write_text('{"format": "something-else"}')
    with pytest.raises(CsvdnetInputError, match=r"index\.json: not a csvdnet cache index"):
        load_cache(tmp_path)
    (tmp_path / "index.json").write_text("{")
    with pytest.raises(CsvdnetInputError, match=r"index\.json: not readable JSON"):
        load_cache(tmp_path)
    with pytest.raises(CsvdnetInputError, match=r"s09: subject s09 is not in the cache"):
        load_cached_subject(tmp_path, "s09")


def test_jobs_write_the_same_cache_as_one_process(cohort, tmp_path):
    serial = preprocess_cohort(cohort, tmp_path / "serial", CFG, progress=False)
    parallel = preprocess_cohort(cohort, tmp_path / "parallel", CFG, progress=False, jobs=2)

    assert parallel.done == serial.done and parallel.written == serial.written
    assert parallel.failed == serial.failed  # same messages, in cohort order
    assert list(parallel.failed) == ["s03", "s04"]
    assert ((tmp_path / "parallel" / "index.json").read_text()
            == (tmp_path / "serial" / "index.json").read_text())
    for subject in serial.done:
        for name in ("image.npy", "wmh.npy") if subject == "s01" else ("image.npy",):
            np.testing.assert_array_equal(np.load(tmp_path / "parallel" / subject / name),
                                          np.load(tmp_path / "serial" / subject / name))
    assert sorted(p.name for p in (tmp_path / "parallel").iterdir()) == [
        "index.json", "s01", "s02"]
    again = preprocess_cohort(cohort, tmp_path / "parallel", CFG, progress=False, jobs=2)
    assert again.skipped == ("s01", "s02") and again.written == ()


# --------------------------------------------------------------------------------------------
# Fail fast, and fail one subject only.

def _never_preprocess(monkeypatch):
    """Make the expensive step an error: a check that runs after it would be too late."""
    def expensive(*args, **kwargs):
        raise AssertionError("preprocess_subject ran before the input checks")

    monkeypatch.setattr(cache_write, "preprocess_subject", expensive)


def test_a_point_outside_the_image_fails_before_preprocessing(tmp_path, monkeypatch):
    root = tmp_path / "cohort"
    _subject(root, "s01")
    write_points(root / "s01" / "labels" / "cmb.csv", [CMB, [0.0, 0.0, 500.0]])
    _never_preprocess(monkeypatch)

    summary = preprocess_cohort(read_cohort(root, sequences=("flair", "t1")), tmp_path / "cache",
                                CFG, progress=False)

    assert "cmb.csv: point 2 of 2 at (0, 0, 500) mm is outside the field of view" in \
        summary.failed["s01"]


def test_a_label_on_another_grid_fails_before_preprocessing(tmp_path, monkeypatch):
    root = tmp_path / "cohort"
    _subject(root, "s01")
    shifted = FLAIR.copy()
    shifted[:3, 3] += 2.0  # same shape, another affine
    save_nifti(np.zeros(FLAIR_SHAPE, np.uint8), shifted, root / "s01" / "labels" / "wmh.nii.gz")
    _never_preprocess(monkeypatch)

    summary = preprocess_cohort(read_cohort(root, sequences=("flair", "t1")), tmp_path / "cache",
                                CFG, progress=False)

    assert "wmh.nii.gz: not on the grid of" in summary.failed["s01"]
    assert "same shape, but the affine origin differs by up to 2 mm" in summary.failed["s01"]


def _claim_shape(path, n: int) -> None:
    """Rewrite a .nii.gz header to claim n^3 voxels (the data stays as it was)."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    dims = np.frombuffer(bytes(raw[40:56]), dtype=np.int16).copy()
    dims[1:4] = n
    raw[40:56] = dims.tobytes()
    path.write_bytes(gzip.compress(bytes(raw)))


def test_problems_of_single_subjects_fail_them_alone(tmp_path):
    root = tmp_path / "cohort"
    _subject(root, "s01", labels=False)
    _subject(root, "s02", labels=False)
    (root / "s02" / "flair.nii.gz").unlink()  # no reference image
    _subject(root, "s03", labels=False)
    _claim_shape(root / "s03" / "flair.nii.gz", 30000)
    (root / "ratings.csv").write_text("subject,fazekas_pv\ns01,1\ns04,9\n")  # a bad row
    _subject(root, "s04", labels=False)

    cohort = read_cohort(root, sequences=("flair", "t1"))
    summary = preprocess_cohort(cohort, tmp_path / "cache", CFG, progress=False)

    assert summary.done == ("s01",)
    assert list(summary.failed) == ["s02", "s04", "s03"]  # located-or-not first, then the run's
    assert "no flair image (the reference sequence)" in summary.failed["s02"]
    assert "row 3, column fazekas_pv: 9 is out of range" in summary.failed["s04"]
    assert "the header claims shape (30000, 30000, 30000)" in summary.failed["s03"]
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["subjects"] == ["s01"] and set(index["failed"]) == {"s02", "s03", "s04"}


def test_a_sequence_no_subject_has_refuses_the_run(cohort, tmp_path):
    with pytest.raises(CsvdnetInputError, match="no subject has a swi image: is the sequence "
                                                "name right"):
        preprocess_cohort(read_cohort(cohort.root, sequences=("flair", "swi")), tmp_path / "c",
                          CFG, channels=("flair", "swi"), progress=False)
    assert not (tmp_path / "c").exists()


def test_leftover_part_folders_of_a_killed_run_are_removed(cohort, tmp_path):
    out = tmp_path / "cache"
    dead = out / ".s01.4194305.0123abcd.part"  # a pid above the default pid_max: not running
    dead.mkdir(parents=True)
    (dead / "image.npy").write_bytes(b"half")

    preprocess_cohort(cohort, out, CFG, progress=False)

    assert not dead.exists() and not any(p.name.endswith(".part") for p in out.iterdir())
