"""Grading's folders in /tmp: sockets, kernels' connection files, a zygote's control socket.

They must be in /tmp (a Unix socket's path is limited to about 100 bytes), and a grader that is
killed (a Dask worker lost, the OOM killer) cannot remove them. So each is held: its maker
keeps an open descriptor of it with an exclusive `flock`, which the kernel releases when the
maker dies, however it dies (forks of the maker, nbgrader's runs, share it while they live).
`sweep` removes the folders whose lock is free: their grader is gone. It runs whenever a
grader makes a new one, so a killed grader's folders go when the next grading starts on that
machine. Removal is never recursive (`remove_tree`: a student may leave a tree deeper than
Python's recursion limit) and never raises.
"""
from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from pathlib import Path


PREFIXES = ("cl-", "clz-")  # a grader's IPC folder, a zygote's control folder
TMP = "/tmp" if os.path.isdir("/tmp") else None
_held: dict[str, int] = {}  # folder -> the open descriptor that holds its lock


def make(prefix: str) -> str:
    """A new private folder in /tmp, locked by this process until `drop` (or its death)."""
    assert prefix in PREFIXES, prefix
    sweep()
    folder = tempfile.mkdtemp(prefix=prefix, dir=TMP)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held[folder] = fd
    return folder


def drop(folder: str) -> None:
    """Remove a folder `make` made, and let go of its lock."""
    remove_tree(str(folder))
    fd = _held.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def sweep(min_age_s: float = 60.0) -> list[str]:
    """Remove this user's grading folders in /tmp that no living process holds (made more than
    `min_age_s` ago: a folder is locked the moment after it is made). Returns what went."""
    removed = []
    root = Path(TMP or tempfile.gettempdir())
    for path in root.iterdir():
        if not path.name.startswith(PREFIXES) or str(path) in _held:
            continue
        try:
            info = path.lstat()  # a link is not a folder here, and is never followed
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or time.time() - info.st_mtime < min_age_s:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its grader lives
            continue
        else:
            remove_tree(str(path))  # (never raises: one folder's trouble is no other grading's)
            removed.append(str(path))
        finally:
            os.close(fd)
    return removed


def remove_tree(path: str, limit: int = 200_000) -> None:
    """Remove `path` and what is under it: any depth (no recursion, and no path longer than one
    name: a student's tree may be deeper than Python's recursion limit and than PATH_MAX), links
    removed and never followed, at most `limit` entries looked at. Never raises; what cannot be
    removed stays."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
        fd = os.open(path, flags)
    except OSError:
        return
    names: list[str] = []  # the folders entered, from `path` down
    stuck: list[set[str]] = [set()]  # per level: entries that could not be removed
    seen = 0
    try:
        while seen < limit:
            child = None
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        seen += 1
                        if entry.name in stuck[-1]:
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            child = entry.name
                            break
                        try:
                            os.unlink(entry.name, dir_fd=fd)
                        except OSError:
                            stuck[-1].add(entry.name)
            except OSError:
                pass
            if child is not None:
                try:
                    inner = os.open(child, flags, dir_fd=fd)
                except OSError:
                    stuck[-1].add(child)
                    continue
                os.close(fd)
                fd, names, stuck = inner, [*names, child], [*stuck, set()]
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd, name = parent, names.pop()
            stuck.pop()
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                stuck[-1].add(name)
    except OSError:
        pass
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass
