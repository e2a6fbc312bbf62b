"""Atomic writes: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os

import pytest

from csvdnet import fsutil
from csvdnet.fsutil import atomic_dir, atomic_path, remove_stale_parts, write_text_atomic


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


def test_files_are_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    write_text_atomic(tmp_path / "a.txt", "x")
    assert events[:2] == ["fsync", "replace"] and events[-1] == "fsync"  # file, rename, folder
    events.clear()
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("y")
    assert events.index("replace") > events.index("fsync")


def test_a_replaced_folder_is_never_missing(tmp_path, monkeypatch):
    target = tmp_path / "subject"
    target.mkdir()
    (target / "image.npy").write_text("old")
    real_replace = os.replace

    def replace(a, b):  # every rename during the swap: the folder must still be there
        assert target.is_dir()
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    with atomic_dir(target) as tmp:
        (tmp / "image.npy").write_text("new")
    assert (target / "image.npy").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["subject"]


def test_the_umask_is_never_changed(tmp_path, monkeypatch):
    def no_umask(_):
        raise AssertionError("os.umask is process-wide: threads would race on it")

    monkeypatch.setattr(os, "umask", no_umask)
    write_text_atomic(tmp_path / "a.txt", "x")
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("y")
    assert (tmp_path / "a.txt").read_text() == "x" and (tmp_path / "d" / "f").is_file()


def test_leftover_parts_of_killed_writers_are_removed(tmp_path):
    dead = tmp_path / f".subject.{2 ** 22 + 12345}.0123abcd.part"  # above any pid_max default
    dead.mkdir()
    (dead / "image.npy").write_text("half")
    dead_file = tmp_path / f".index.{2 ** 22 + 12345}.0123abcd.part.json"
    dead_file.write_text("{")
    live = tmp_path / f".other.{os.getpid()}.0123abcd.part"
    live.mkdir()
    keep = tmp_path / "subject"
    keep.mkdir()
    (tmp_path / ".hidden").write_text("not ours")

    assert sorted(p.name for p in remove_stale_parts(tmp_path)) == sorted([dead.name,
                                                                         dead_file.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "subject",
                                                                  ".hidden"])
    assert fsutil._PART.match(live.name)


DEAD_PID = 2 ** 22 + 12345  # above any pid_max default: no such process


def test_stale_parts_are_found_in_sub_folders_too(tmp_path):
    nested = tmp_path / "sub-01" / "ses-1"
    nested.mkdir(parents=True)
    dead = nested / f".anat.{DEAD_PID}.0123abcd.part"
    dead.mkdir()
    live = tmp_path / f".sub-02.{os.getpid()}.0123abcd.part"
    (live / f".inner.{DEAD_PID}.0123abcd.part").mkdir(parents=True)  # inside a live writer's

    assert remove_stale_parts(tmp_path) == []
    assert remove_stale_parts(tmp_path, recursive=True) == [dead]
    assert (live / f".inner.{DEAD_PID}.0123abcd.part").is_dir()


def test_final_path_names_the_destination_of_a_temporary_path(tmp_path):
    part = tmp_path / f".sub-01.{os.getpid()}.0123abcd.part" / "wmh_prob.nii.gz"
    assert fsutil.final_path(part) == tmp_path / "sub-01" / "wmh_prob.nii.gz"
    tsv = tmp_path / f".scores.{os.getpid()}.0123abcd.part.tsv"
    assert fsutil.final_path(tsv) == tmp_path / "scores.tsv"
    assert fsutil.final_path(tmp_path / "plain.txt") == tmp_path / "plain.txt"


def test_check_writable_probes_and_cleans_up(tmp_path, monkeypatch):
    import errno

    assert fsutil.check_writable(tmp_path / "new" / "out") == tmp_path / "new" / "out"
    assert list((tmp_path / "new" / "out").iterdir()) == []
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if "write-test" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(fsutil.os, "open", read_only)
    with pytest.raises(OSError, match="Read-only file system") as caught:
        fsutil.check_writable(tmp_path)
    assert caught.value.filename == str(tmp_path)


def test_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_ones(tmp_path):
    import json
    import socket

    lock = tmp_path / ".csvdnet" / "lock"
    with fsutil.folder_lock(lock, "csvdnet predict a") as held:
        assert json.loads(held.read_text())["pid"] == os.getpid()
        with pytest.raises(fsutil.FolderLocked, match=f"held by pid {os.getpid()}"):
            with fsutil.folder_lock(lock):
                pass
    assert not lock.exists()  # released on exit
    lock.write_text(json.dumps({"pid": DEAD_PID, "host": socket.gethostname()}))
    with fsutil.folder_lock(lock) as held:  # a killed run's: stale
        assert json.loads(held.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"pid": DEAD_PID, "host": "another-machine"}))
    with pytest.raises(fsutil.FolderLocked, match="on another-machine"):
        with fsutil.folder_lock(lock):  # another host's process cannot be checked: respected
            pass
