"""Atomic writes: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os

import pytest

from csvdnet.fsutil import atomic_dir, atomic_path, write_text_atomic


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_written_files_follow_the_umask(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "x")
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("y")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "img.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.nii.gz"]


def test_failed_directory_keeps_the_old_one(tmp_path):
    target = tmp_path / "subject"
    target.mkdir()
    (target / "image.npy").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "image.npy").write_text("half")
            raise RuntimeError("killed")
    assert (target / "image.npy").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["subject"]
    with atomic_dir(target) as tmp:
        (tmp / "image.npy").write_text("new")
    assert (target / "image.npy").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["subject"]
