"""Grading's folders in /tmp: sockets, kernels' connection files, a zygote's control socket.

They must be in /tmp (a Unix socket's path is limited to about 100 bytes), and a grader that is
killed (a Dask worker lost, the OOM killer) cannot remove them. So each is held: its maker
keeps an open descriptor of it with an exclusive `flock`, which the kernel releases when the
maker dies, however it dies (forks of the maker, nbgrader's runs, share it while they live).
`sweep` removes the folders whose lock is free: their grader is gone. It runs whenever a
grader makes a new one, so a killed grader's folders go when the next grading starts on that
machine.
"""
from __future__ import annotations

import fcntl
import os
import shutil
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
    shutil.rmtree(folder, ignore_errors=True)
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
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
        finally:
            os.close(fd)
    return removed
