"""A seccomp filter for graded kernels: no new namespaces, no mounts.

Inside its sandbox a kernel is an unprivileged user, but Linux lets any process create a user
namespace of its own, and in it mount file systems: a student's code could mount a tmpfs and
fill it (memory outside every per-process limit), or build namespaces that hide its
processes. The kernels (and everything they start) run under this filter, which makes these
system calls fail with EPERM: `unshare` and `clone` with a namespace flag, `setns`, `mount`
and its new API (`fsopen`, `fsmount`, `open_tree`, `move_mount`, `fspick`, `mount_setattr`),
`umount2`, `pivot_root`, `chroot`. `clone3` fails with ENOSYS (its flags sit behind a
pointer, out of a filter's sight), and C libraries then fall back to `clone`, which the
filter can read, as Docker and Chromium arrange it. System calls of another ABI (32-bit
x86, x32) fail with EPERM.

The program is a few dozen classic BPF instructions, written here rather than taken from
libseccomp: the zygote's kernels install it with one `prctl` from Python, and the cold path
hands the same bytes to bubblewrap (`--seccomp FD`); no library needs to be present in the
sandbox. x86-64 and arm64 are covered; `program()` raises elsewhere.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_BIT = 0x40000000
SYSCALLS = {  # name -> number, per architecture (asm/unistd.h)
    "x86_64": {"clone": 56, "unshare": 272, "clone3": 435, "setns": 308, "mount": 165, "umount2": 166,
               "pivot_root": 155, "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430,
               "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442},
    "aarch64": {"clone": 220, "unshare": 97, "clone3": 435, "setns": 268, "mount": 40, "umount2": 39,
                "pivot_root": 41, "chroot": 51, "open_tree": 428, "move_mount": 429, "fsopen": 430,
                "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442},
}
DENIED = ("setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
          "fsmount", "fspick", "mount_setattr")
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET; unshare also takes CLONE_NEWTIME (0x80,
# which in clone's flags is part of the exit signal)
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
UNSHARE_NAMESPACES = CLONE_NAMESPACES | 0x00000080

LD_W_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16  # struct seccomp_data; arg0's low 32 bits (little-endian)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def program(machine: str | None = None) -> bytes:
    """The filter as an array of `struct sock_filter` (what prctl and bubblewrap take)."""
    machine = machine or platform.machine()
    if machine not in SYSCALLS:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine} (x86_64 and aarch64 only)")
    numbers = SYSCALLS[machine]
    # (code, jump if true -> label, jump if false -> label, k); labels resolved below
    code: list[tuple] = [
        (LD_W_ABS, None, None, OFFSET_ARCH),
        (JEQ, None, "eperm", AUDIT_ARCH[machine]),
        (LD_W_ABS, None, None, OFFSET_NR),
    ]
    if machine == "x86_64":
        code.append((JGE, "eperm", None, X32_BIT))
    code += [(JEQ, "unshare", None, numbers["unshare"]),
             (JEQ, "clone", None, numbers["clone"]),
             (JEQ, "enosys", None, numbers["clone3"])]
    code += [(JEQ, "eperm", None, numbers[name]) for name in DENIED]
    code += [(RET, None, None, ALLOW),
             ("unshare", LD_W_ABS, None, None, OFFSET_ARG0),
             (JSET, "eperm", None, UNSHARE_NAMESPACES),
             (RET, None, None, ALLOW),
             ("clone", LD_W_ABS, None, None, OFFSET_ARG0),
             (JSET, "eperm", None, CLONE_NAMESPACES),
             (RET, None, None, ALLOW),
             ("eperm", RET, None, None, ERRNO | errno.EPERM),
             ("enosys", RET, None, None, ERRNO | errno.ENOSYS)]
    labels, rows = {}, []
    for row in code:
        if isinstance(row[0], str):
            labels[row[0]] = len(rows)
            row = row[1:]
        rows.append(row)
    out = b""
    for i, (op, true, false, k) in enumerate(rows):
        jt = labels[true] - i - 1 if true else 0
        jf = labels[false] - i - 1 if false else 0
        out += struct.pack("=HBBI", op, jt, jf, k)
    return out


class _Filter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Put this process (and what it starts from now on) under the filter; raises OSError."""
    prog = program()
    buffer = ctypes.create_string_buffer(prog, len(prog))
    fprog = _Filter(len(prog) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    for args in ((PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0)):
        if libc.prctl(*args) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl({args[0]}): {os.strerror(err)}")


def program_fd() -> int:
    """A readable descriptor holding the program (for bubblewrap's --seccomp), inheritable."""
    prog = program()
    read_end, write_end = os.pipe()
    os.write(write_end, prog)  # a few hundred bytes: within a pipe's buffer
    os.close(write_end)
    os.set_inheritable(read_end, True)
    return read_end
