"""A grading worker's own mount namespace, and each student's IPC folder as a small tmpfs.

The IPC folder is the one host folder a student's kernel may write to (its sockets live
there). On the host's disk it would take whatever a student writes: gigabytes, or a tree a
thousand folders deep that a recursive clean-up chokes on. So each student's IPC folder is a
tmpfs of its own, limited in size and in inodes (its pages are charged to the student's
memory cgroup, since the student's processes write them), and it goes with one unmount, lazy
and not recursive, after the student.

To mount without touching the host's mount table, every grading worker (a local pool's
process, a cluster worker's grading process) first enters a mount namespace of its own
(`enter_worker_namespace`; with a user namespace too when it is not root, which is how an
unprivileged TA may mount a tmpfs). Whatever it mounts vanishes when the worker dies, however
it dies. The worker's folder of IPC folders is made a shared mount there, so that a tmpfs
mounted in it for a student appears inside the worker's zygote sandbox too (bubblewrap's
mounts are slaves of the worker's).
"""
from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

from . import held_folders

CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_BIND, MS_REC, MS_PRIVATE, MS_SHARED, MS_NOSUID, MS_NODEV = 0x1000, 0x4000, 0x40000, 0x100000, 0x2, 0x4
MNT_DETACH = 2
IPC_MB = 64  # a student's IPC folder: sockets, the kernel's logs; nothing else belongs there
IPC_INODES = 1024

_libc = ctypes.CDLL(None, use_errno=True)
_state: dict[str, str] = {}


class MountError(OSError):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"{what}: {os.strerror(err)}")


def enter_worker_namespace() -> str:
    """Give this process a mount namespace of its own (and a user namespace if it is not root)
    and a shared folder for its students' IPC folders; that folder's path. Once per process,
    while it has a single thread (a process pool's initializer)."""
    if "ipc_root" in _state and _state.get("pid") == str(os.getpid()):
        return _state["ipc_root"]
    if threading.active_count() > 1:
        raise MountError(0, "a grading worker must enter its namespace while it has one thread")
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS if uid == 0 else CLONE_NEWNS | CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare (a mount namespace for the grading worker)")
    if uid != 0:  # the TA, seen as themselves, with the right to mount in this namespace only
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    root = held_folders.make("cl-")
    _check(_libc.mount(root.encode(), root.encode(), None, MS_BIND, None), f"bind {root}")
    _check(_libc.mount(b"none", root.encode(), None, MS_SHARED, None), f"mount --make-shared {root}")
    _state.update(ipc_root=root, pid=str(os.getpid()))
    import atexit
    import multiprocessing.util

    # a pool's worker leaves through multiprocessing's finalizers, other processes through atexit
    atexit.register(_leave)
    multiprocessing.util.Finalize(None, _leave, exitpriority=5)
    return root


def _leave() -> None:
    """At the worker's exit: its folder of IPC folders goes (a killed worker's, with the next sweep)."""
    root = _state.pop("ipc_root", None)
    if root is not None and _state.get("pid") == str(os.getpid()):
        _libc.umount2(root.encode(), MNT_DETACH)
        held_folders.drop(root)


def in_worker_namespace() -> bool:
    return _state.get("pid") == str(os.getpid())


def student_folder(prefix: str = "s-") -> str:
    """A new IPC folder for one student in this worker's shared folder: a tmpfs of `IPC_MB` and
    `IPC_INODES`, mode 0700 (the sandbox maps its user to the grader's)."""
    import tempfile

    folder = tempfile.mkdtemp(prefix=prefix, dir=_state["ipc_root"])
    options = f"size={IPC_MB * 2**20},nr_inodes={IPC_INODES},mode=700".encode()
    _check(_libc.mount(b"tmpfs", folder.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), f"mount tmpfs {folder}")
    return folder


def release(folder: str) -> None:
    """Unmount a student's IPC tmpfs (lazily: whatever is open in it goes with its last user) and
    remove its mount point. Never recursive, never raises."""
    _libc.umount2(folder.encode(), MNT_DETACH)
    try:
        os.rmdir(folder)
    except OSError:
        held_folders.remove_tree(folder)


def probe() -> None:
    """Raise MountError, with the reason, where a grading worker could not have its namespace
    (as root it always can; an unprivileged TA needs user namespaces, as bubblewrap does)."""
    if os.geteuid() == 0:
        return
    import subprocess
    import sys

    code = ("import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
            f"sys.exit(0 if libc.unshare({CLONE_NEWNS | CLONE_NEWUSER}) == 0 else ctypes.get_errno())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    if result.returncode != 0:
        raise MountError(result.returncode, "a grading worker needs a mount namespace of its own for the students' "
                                            "IPC folders, and unshare(CLONE_NEWUSER | CLONE_NEWNS) failed here: "
                                            f"{os.strerror(result.returncode)} (user namespaces disabled?)")
