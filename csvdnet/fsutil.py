"""Durable atomic writes: a killed run never leaves a half-written file that looks complete.

A file is written under a temporary name beside its destination, flushed to disk (``fsync``) and
renamed over the destination; the folder is synced too, so after a crash the destination holds
either the old or the new content, never a truncated one. A folder is built the same way and,
where the kernel can (Linux ``renameat2(RENAME_EXCHANGE)``), swapped with the one it replaces in
one step, so a reader never finds the destination missing. Temporary entries start with a dot
and end in ``.part``, with the writing process id in the name: :func:`remove_stale_parts` clears
those left by killed runs.

Permissions are those of a plain create: temporary files are opened with mode 0666 and folders
made with 0777, which the kernel reduces by the umask. The umask is never read or changed here:
changing it is process-wide and not thread-safe (registrations run in threads).

:func:`file_sha256` is the one checksum of a file's bytes (exported models list one per file;
a model's id carries its weights' or metadata's).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

# .<stem>.<pid>.<random>.part[<suffix>]: the pid tells a live writer from a killed one.
_PART = re.compile(r"^\.(?P<stem>.*)\.(?P<pid>\d+)\.[0-9a-f]{8}\.part(?:\..*)?$")
_RENAME_EXCHANGE = 2  # linux/fs.h


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _part_name(stem: str, suffix: str = "") -> str:
    return f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.part{suffix}"


def _fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file's (or a folder's entries') data to disk; folders that refuse are skipped."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return  # e.g. Windows cannot open folders; the rename is still atomic
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if not directory or exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (deepest first), then ``root`` itself."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync_path(Path(folder) / name)
        _fsync_path(Path(folder), directory=True)


@functools.lru_cache(maxsize=1)
def _renameat2():
    """glibc's renameat2, or None (not Linux, or a C library without it)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name, use_errno=True), "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # old kernel or a filesystem without exchange
    raise OSError(err, os.strerror(err), str(a), None, str(b))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; sync it and rename it onto ``path`` on success.

    The temporary name keeps the final extension (``suffix`` defaults to everything after the
    first dot of the name, e.g. ``.nii.gz``) so writers that choose a format by extension work.
    On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The final destination.
        suffix: Extension the temporary file must end with.

    Yields:
        The temporary path to write to (already created, empty).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        name = path.name
        suffix = name[name.index("."):] if "." in name else ""
    while True:
        tmp = path.parent / _part_name(path.name.split(".")[0], suffix)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent, directory=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; sync it and put it in place on success.

    An existing ``path`` is replaced only once the new folder is complete, by an atomic
    exchange where the system offers one (Linux), so ``path`` is never missing; elsewhere by two
    renames, with ``path`` absent for the instant between them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / _part_name(path.name)
        try:
            os.mkdir(tmp, 0o777)
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists() and _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old content
        elif path.exists():
            old = path.parent / _part_name(path.name)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_path(path.parent, directory=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically and durably (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_parts(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Remove the temporary ``.part`` files and folders that killed writers left in ``folder``.

    Only entries named by this module whose writing process no longer runs on this machine
    are removed (a live writer's are kept); the folder's other contents are never touched.

    Args:
        folder: Where to look.
        recursive: Also in its sub-folders (not inside a live writer's ``.part`` folder).

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    if recursive:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and not _PART.match(entry.name):
                removed += remove_stale_parts(entry, recursive=True)
    for entry in folder.iterdir():
        match = _PART.match(entry.name)
        if match is None or _alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


def final_path(path: str | os.PathLike) -> Path:
    """The destination a temporary ``.part`` path of this module stands for.

    A failing write inside :func:`atomic_dir` / :func:`atomic_path` names its temporary path;
    this gives the path a user knows (``OUT/.sub-01.4242.0a1b2c3d.part/wmh_prob.nii.gz`` ->
    ``OUT/sub-01/wmh_prob.nii.gz``).
    """
    parts = []
    for part in Path(path).parts:
        match = _PART.match(part)
        if match is None:
            parts.append(part)
        else:
            suffix = part[part.index(".part") + len(".part"):]
            parts.append(match["stem"] + suffix)
    return Path(*parts)


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and write, sync and remove a probe file in it.

    Returns:
        The folder.

    Raises:
        OSError: The folder cannot be created or written (read-only, immutable, permission,
            no space), with ``filename`` set to the path that failed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / _part_name("write-test")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(folder)) from None
    try:
        os.write(fd, b"csvdnet")
        os.fsync(fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(folder)) from None
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()
    return folder


class FolderLocked(RuntimeError):
    """Another live process holds the lock (:func:`folder_lock`).

    Attributes:
        holder: What the lock file says: ``pid``, ``host``, ``since`` (ISO time), ``command``.
    """

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        super().__init__(f"{path}: held by pid {holder.get('pid')} on {holder.get('host')} "
                         f"since {holder.get('since')}")


def _read_holder(lock: Path) -> dict | None:
    """The lock file's record, or None when it is gone; a half-written one reads as empty."""
    import json

    try:
        text = lock.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


_EMPTY_LOCK_SECONDS = 10.0
"""A lock file still empty after this long was left by a writer killed while creating it."""


def _age_seconds(path: Path) -> float:
    import time

    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


@contextlib.contextmanager
def folder_lock(lock: str | os.PathLike, command: str = "") -> Iterator[Path]:
    """Hold an advisory lock file while the block runs; remove it on exit.

    The lock file is created exclusively and holds the process id, host name, start time and
    ``command``. A lock whose process no longer runs on this host (a killed run), or one left
    empty for :data:`_EMPTY_LOCK_SECONDS`, is stale: it is removed and taken over. A lock of
    another host is respected (its process cannot be checked from here).

    Raises:
        FolderLocked: A live process (or another host) holds the lock.
    """
    import datetime
    import json
    import socket

    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    record = json.dumps({"pid": os.getpid(), "host": host, "command": command,
                         "since": datetime.datetime.now(datetime.timezone.utc).isoformat(
                             timespec="seconds")})
    for _ in range(10):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = _read_holder(lock)
            if holder is None:
                continue  # released meanwhile
            pid = holder.get("pid")
            stale = (holder.get("host") == host and isinstance(pid, int) and not _alive(pid))
            # An empty record: its writer was killed between creating and filling the file.
            stale = stale or (not holder and _age_seconds(lock) > _EMPTY_LOCK_SECONDS)
            if not stale:
                raise FolderLocked(lock, holder) from None
            # Take the stale lock aside under a unique name: of two runs finding it stale,
            # only one renames it, and both then race fairly for the exclusive create.
            aside = lock.with_name(_part_name(lock.name))
            with contextlib.suppress(FileNotFoundError):
                os.replace(lock, aside)
                aside.unlink()
            continue
        try:
            os.write(fd, record.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        break
    else:
        raise FolderLocked(lock, _read_holder(lock) or {})
    try:
        yield lock
    finally:
        holder = _read_holder(lock)
        if holder is not None and holder.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
