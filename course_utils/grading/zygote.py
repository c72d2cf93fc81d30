"""Graded kernels forked from one pre-imported process per student (a zygote), not started cold.

A graded notebook's first seconds went to importing torch, torchvision, scikit-learn and
matplotlib, in each of a student's 8 kernels. Here one process per student, inside that
student's bubblewrap sandbox (`sandbox.py`, same limits and mounts), imports them once and
never runs student code; each kernel is a fork of it. What `bwrap` gave every kernel, each
fork builds for itself before any student code runs:

    zygote (the student's sandbox, not dumpable)
      '- A: new user, mount, PID, network, IPC and UTS namespaces; waits for B
           '- B: PID 1 of the new PID namespace: fresh /tmp, home and /dev/shm, drops every
                 capability, reaps; when the kernel exits B exits, and the kernel's
                 namespace (every process the notebook started) dies with it
                 '- C: the ipykernel, as the kernelspec would have started it

The zygote forks one kernel at a time and, before the next, waits until the previous kernel's
namespace is gone (B's exit waits for every process in it): nothing of notebook 1 is alive
when notebook 2 starts. A kernel cannot reach the zygote: it is in another PID namespace
(no signals), the zygote and A are not dumpable and the kernel has no capabilities (no
ptrace, no /proc/PID/mem), and the control socket is not in its file system (the grader made
it outside the sandbox and passed the zygote its descriptor). /proc inside is the student
sandbox's (a nested user namespace may not mount a new one over bubblewrap's): `os.getpid()`
is 1, and other PIDs listed there are the zygote's, out of reach.

The kernelspec's launcher (`launcher.py`, outside, as the TA) asks the zygote for a kernel
over the control socket (`$COURSE_LAB_ZYGOTE`): it sends the connection file and the
kernel's stdout and stderr (a log file in the student's IPC folder), moves A into the
student's cgroup when A announces itself (before A builds anything), and lives exactly as
long as the kernel, so jupyter_client's handle on it works as before; killing the launcher
kills the kernel. If the zygote is gone, the launcher starts the kernel in its own
bubblewrap as before. C puts itself under the seccomp filter (`seccomp.py`: no namespaces or
mounts of its own) before it becomes the kernel.

Only libraries that do not look at the running kernel when imported are preloaded (not
tqdm.auto, which picks its notebook or console bar at import, nor ipywidgets, which registers
with the kernel at import); `course_utils` itself imports in the kernel (milliseconds).
"""
from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import re
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from . import held_folders, sandbox

CONTROL_ENV = sandbox.ZYGOTE_ENV  # the launcher's side: the control socket's path
KERNEL_OPTIONS = sandbox.KERNEL_OPTIONS
PRELOAD = ("numpy", "torch", "torch.nn", "torch.nn.functional", "torch.utils.data", "torchvision",
           "torchvision.transforms.v2", "PIL.Image", "matplotlib", "matplotlib.pyplot", "sklearn.datasets",
           "sklearn.model_selection", "sklearn.linear_model", "sklearn.preprocessing", "ipykernel.kernelapp",
           "ipykernel.debugger")  # (debugpy: every kernel imports it when it starts, 75 ms)
MAX_REQUEST = 1 << 20
_SCRATCH_BYTES = 512 * 2**20  # each fork's /tmp, home and /dev/shm (the spec's scratch_mb)
# the folder bound into the zygote's sandbox: one student's IPC folder, or (a worker's zygote
# that serves student after student) the folder holding each student's IPC folder in turn
_IPC_ROOT = "/nonexistent"
_ISOLATED = False  # in bubblewrap: each kernel is put under the seccomp filter

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 1, 4, 24, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class ZygoteError(OSError):
    """A system call a fork needs failed: the kernel does not start (the launcher says so)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise ZygoteError(err, f"{what}: {os.strerror(err)}")


# ---- the grader's side ----------------------------------------------------------------

class Zygote:
    """One student's zygote: `start` it before nbgrader runs, `stop` it after.

    `control` is the socket path to give the launchers (`CONTROL_ENV`); it lies in a private
    folder of the grader's, never mounted into a sandbox."""

    def __init__(self, spec, bwrap: str | None = None) -> None:
        self.spec, self.bwrap = spec, bwrap
        self.folder = Path(held_folders.make("clz-"))
        self.control = str(self.folder / "control.sock")
        self.process: subprocess.Popen | None = None

    def start(self) -> "Zygote":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.control)
            listener.listen(8)
            fd = listener.fileno()
            command = [sys.executable, "-m", "course_utils.grading.zygote", "--fd", str(fd),
                       "--scratch-mb", str(self.spec.scratch_mb), "--ipc-root", self.spec.ipc_dir]
            env = None
            if self.spec.isolate:
                command = sandbox.sandbox_command(self.spec, [*command, "--isolated"],
                                                  self.bwrap or sandbox.require_bubblewrap())
            else:
                env = sandbox._environment(self.spec)
                Path(env["HOME"], "data").mkdir(parents=True, exist_ok=True)

            def limits() -> None:
                sandbox.apply_limits(self.spec)
                sandbox.die_with_parent()  # the zygote never outlives its grader

            self.process = subprocess.Popen(command, env=env, pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                            cwd=None if self.spec.isolate else env["HOME"], preexec_fn=limits)
        finally:
            # only the zygote holds the listening socket now: if it dies, launchers are refused at
            # once (and fall back to a kernel of their own) instead of waiting forever
            listener.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # bubblewrap's PID 1: the whole sandbox goes with it
            self.process.wait()
        held_folders.drop(str(self.folder))

    def __enter__(self) -> "Zygote":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- the zygote's side ------------------------------------------------------------------

def preload() -> list[str]:
    """Import `PRELOAD`; the modules that failed (they fail again, with their message, in the kernel)."""
    failed = []
    # debugpy warns on stderr, when imported, that Python's frozen modules may hide breakpoints
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an optional library missing or broken: the kernel will say so
            failed.append(name)
    return failed


def serve(listen_fd: int, *, isolate: bool, scratch_mb: int, ipc_root: str) -> None:
    """The zygote's loop: one kernel at a time, for as long as its grader lives."""
    global _SCRATCH_BYTES, _IPC_ROOT, _ISOLATED
    _SCRATCH_BYTES, _IPC_ROOT, _ISOLATED = scratch_mb * 2**20, os.path.realpath(ipc_root), isolate
    if isolate:
        from . import seccomp

        seccomp.program()  # fails here, once, where no filter can be had (then every kernel would)
    preload()
    # Every object imported so far moves to a generation that no collection walks: a kernel's
    # garbage collections would otherwise write to each of them (their GC headers) and so copy
    # every page of the zygote's heap that holds one. CPython's advice for a process that forks
    # without exec (`gc.freeze`): a fork's page faults fall by half or more.
    gc.collect()
    gc.freeze()
    _libc.prctl(PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/PID/mem from anything in the sandbox
    listener = socket.socket(fileno=listen_fd)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                _one_kernel(conn, listener, isolate)
            except Exception as err:  # one failed kernel must not end the student's other notebooks
                print(f"[zygote] {type(err).__name__}: {err}", file=sys.stderr, flush=True)


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """A 4-byte length, then that many bytes of JSON; the launcher's stdout and stderr come with
    the first bytes."""
    data, fds = b"", []
    while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
        chunk, new_fds, _, _ = socket.recv_fds(conn, 65536, 4)
        fds += new_fds
        if not chunk:
            raise ConnectionError("the launcher left before sending its request")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    return json.loads(data[4:]), fds


def _one_kernel(conn: socket.socket, listener: socket.socket, isolate: bool) -> None:
    request, fds = _read_request(conn)
    ipc_dir = os.path.realpath(str(request.get("ipc_dir", "")))
    if ipc_dir != _IPC_ROOT and os.path.dirname(ipc_dir) != _IPC_ROOT:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"IPC folder {ipc_dir} is not {_IPC_ROOT} or in it")
    request["ipc_dir"] = ipc_dir
    _tidy(ipc_dir, keep={sandbox.CHECKER_SOCKET, os.path.basename(str(request.get("log", "")))})
    report_r, report_w = os.pipe()  # A tells the zygote B's PID (B is the one to kill)
    pid = os.fork()
    if pid == 0:  # A
        code = 1
        try:
            listener.close()
            os.close(report_r)
            if request.get("join"):
                _join_students_group(conn)
            conn.close()
            code = _namespaces(request, fds, report_w) if isolate else _plain(request, fds, report_w)
        except BaseException as err:
            print(f"[zygote] kernel not started: {err}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    os.close(report_w)
    for fd in fds:
        os.close(fd)
    with os.fdopen(report_r, "rb") as report:
        killable = report.read(32)  # B's PID (without a sandbox: A's process group), before the kernel runs
    target = int(killable) if killable.strip() else None
    with selectors.DefaultSelector() as sel:
        pidfd = os.pidfd_open(pid)
        sel.register(conn, selectors.EVENT_READ)
        sel.register(pidfd, selectors.EVENT_READ)
        try:
            events = {key.fileobj for key, _ in sel.select()}
        finally:
            os.close(pidfd)
    if conn in events and target is not None:  # the launcher went away: so does the kernel
        try:
            os.kill(target, signal.SIGKILL) if isolate else os.killpg(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)  # A returns only once B's namespace is empty
    try:
        conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    except OSError:
        pass


def _tidy(ipc_dir: str, keep: set[str]) -> None:
    """Before each kernel: what earlier kernels left in the student's IPC folder goes (their sockets,
    logs and whatever files their code wrote there), so that one notebook's junk does not leave the
    next notebook's kernel without room. The previous kernel's namespace is gone by now."""
    try:
        names = os.listdir(ipc_dir)
    except OSError:
        return
    for name in names:
        if name not in keep:
            held_folders.remove_tree(os.path.join(ipc_dir, name))


def _join_students_group(conn: socket.socket) -> None:
    """A, before anything else: the launcher moves this process into the student's cgroup. It sends
    one byte with this process's credentials (the socket gives the launcher this PID in its own PID
    namespace) and waits for "1": everything A starts from then on is in that cgroup."""
    conn.sendmsg([b"A"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS,
                           struct.pack("3i", os.getpid(), os.getuid(), os.getgid()))])
    if conn.recv(1) != b"1":
        raise ZygoteError(0, "the launcher did not put the kernel in the student's cgroup")


def _namespaces(request: dict, fds: list[int], report_w: int) -> int:
    """A: new namespaces, then B (PID 1 there); returns B's exit status once the namespace is gone."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL), "prctl(PDEATHSIG)")
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
           "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    b = os.fork()
    if b == 0:
        code = 1
        try:
            os.close(report_w)
            code = _init(request, fds)
        except BaseException as err:
            print(f"[zygote] kernel not started: {err}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    os.write(report_w, str(b).encode())
    os.close(report_w)
    _, status = os.waitpid(b, 0)
    return os.waitstatus_to_exitcode(status)


def _init(request: dict, fds: list[int]) -> int:
    """B: the namespace's PID 1. Fresh scratch space, no capabilities, then the kernel (C)."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL), "prctl(PDEATHSIG)")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    for target in ("/tmp", sandbox.HOME_IN_SANDBOX, "/dev/shm"):
        if os.path.isdir(target):
            _fresh_tmpfs(target, 0o755 if target == sandbox.HOME_IN_SANDBOX else 0o1777)
    if request["ipc_dir"] != _IPC_ROOT:  # a worker's zygote: of the IPC root, only this student's folder
        _fresh_tmpfs(_IPC_ROOT, 0o700, keep=(request["ipc_dir"],))
    _drop_capabilities()
    c = os.fork()
    if c == 0:
        _kernel(request, fds)  # never returns
    for fd in fds:
        os.close(fd)
    while True:  # reap whatever the notebook leaves; the kernel's status is the namespace's
        pid, status = os.waitpid(-1, 0)
        if pid == c:
            return os.waitstatus_to_exitcode(status)


def _mount_points() -> list[str]:
    """This mount namespace's mount points (from /proc/self/mountinfo, octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        field = line.split()[4]
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field))
    return points


def _fresh_tmpfs(target: str, mode: int, keep: tuple[str, ...] = ()) -> None:
    """An empty tmpfs of the scratch size over `target`; what bubblewrap mounted below it (the
    IPC folder, a venv under /tmp) and the folders in `keep` are bound again at their places,
    as they were (read-only stays so)."""
    below = sorted({p for p in [*_mount_points(), *keep] if p.startswith(target.rstrip("/") + "/")}, key=len)
    top = [p for p in below if not any(p.startswith(q + "/") for q in below if q != p)]
    held = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in top]  # reachable after the tmpfs hides them
    options = f"size={_SCRATCH_BYTES},mode={mode:o}".encode()
    _check(_libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), f"mount {target}")
    for path, fd in held:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Path(path).touch()
        _check(_libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None),
               f"bind {path}")
        os.close(fd)


def _drop_capabilities() -> None:
    """No capability left, none to regain (bounding and ambient sets cleared; bubblewrap
    already set no_new_privs)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text()) if os.path.exists(
        "/proc/sys/kernel/cap_last_cap") else 63
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    _check(_libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), (Data * 2)()), "capset")


def _plain(request: dict, fds: list[int], report_w: int) -> int:
    """`--no-sandbox`: the kernel in a session of its own (killed as a process group)."""
    os.setsid()  # A leads a new process group: the kernel and whatever it starts are killed as one
    c = os.fork()
    if c == 0:
        os.close(report_w)
        _kernel(request, fds)
    for fd in fds:
        os.close(fd)
    os.write(report_w, str(os.getpid()).encode())
    os.close(report_w)
    _, status = os.waitpid(c, 0)
    return os.waitstatus_to_exitcode(status)


def _kernel(request: dict, fds: list[int]) -> None:
    """C: become the kernel the kernelspec would have started."""
    code = 1
    try:
        _libc.prctl(PR_SET_DUMPABLE, 1)  # its own /proc files, as any process's
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for target, fd in zip((1, 2), fds):
            os.dup2(fd, target)
        for fd in {devnull, *fds}:
            os.close(fd)
        os.environ["COURSE_CHECKER_SOCKET"] = os.path.join(request["ipc_dir"], sandbox.CHECKER_SOCKET)
        home = os.environ.get("HOME", "/tmp")
        os.makedirs(home, exist_ok=True)
        os.chdir(home)
        connection = Path(tempfile.gettempdir()) / os.path.basename(str(request.get("name", "kernel.json")))
        with open(os.open(connection, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(str(request["connection"]))
        _fresh_randomness()
        if _ISOLATED:  # no namespaces or mounts of its own from here on (seccomp.py)
            from . import seccomp

            seccomp.install()
        from ipykernel import kernelapp

        # no fd-level capture: what student code writes to the process's own stdout and stderr goes to
        # the kernel's capped log, not through ipykernel's pipe and the grader's IOPub channel
        kernelapp.launch_new_instance(argv=["-f", str(connection), *KERNEL_OPTIONS])
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0
    except BaseException as err:
        # sys.stderr may be the kernel's by now: the launcher's stderr is the real one
        print(f"[zygote] the kernel failed: {type(err).__name__}: {err}", file=sys.__stderr__, flush=True)
    finally:
        os._exit(code)


def _fresh_randomness() -> None:
    """A fork shares its parent's random state; a kernel started cold would not."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="a student's zygote (started by Zygote.start)")
    parser.add_argument("--fd", type=int, required=True, help="the listening control socket")
    parser.add_argument("--scratch-mb", type=int, default=512)
    parser.add_argument("--isolated", action="store_true", help="inside bubblewrap: a namespace per kernel")
    parser.add_argument("--ipc-root", required=True, help="the IPC folder, or the folder of the students' IPC folders")
    args = parser.parse_args(argv)
    serve(args.fd, isolate=args.isolated, scratch_mb=args.scratch_mb, ipc_root=args.ipc_root)


if __name__ == "__main__":
    main()
