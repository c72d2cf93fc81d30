"""The sandbox a student's kernel runs in while it is graded (bubblewrap).

nbgrader runs outside, as the TA; only the kernel, and whatever it starts, runs inside. The
kernelspec `course-lab-sandbox` (written by `install_kernelspec`) starts the launcher
(`launcher.py`: `python -m course_utils.grading.launcher -f {connection_file}`), which reads
the student's `SandboxSpec` (a JSON file named by $COURSE_LAB_SANDBOX), sets the resource
limits and replaces itself with bubblewrap running ipykernel (`sandbox_command`):

- new user, PID, mount, network, IPC, UTS and cgroup namespaces; uid and gid 65534 inside;
  no capabilities; the sandbox dies with the grader, and every process in it with the kernel;
- a read-only system (/usr and the few files of /etc a Python needs), read-only Python and
  venv, and a read-only copy of `course_utils` without the hidden checks (in their place,
  stubs that ask the trusted checker; see `checker.py`);
- writable: a size-limited tmpfs for /tmp and the home folder, and the student's own IPC
  folder (the kernel's sockets and the checker's socket); nothing of the TA's checkout,
  the solutions, the submissions, OUT or other students is mounted;
- no network but its own loopback; a cleared environment;
- limits per process: address space (memory), file size, core dumps off, number of processes;
  per student, together: the student's cgroup (`cgroups.py`: memory with tmpfs and swap, one
  core, a process count), which the kernel joins before it starts;
- no new namespaces or mounts of its own (a seccomp filter, `seccomp.py`).

While a student is graded, the launcher asks that student's zygote (`zygote.py`: one
process in this same sandbox with the heavy libraries imported) for a fork with namespaces of
its own instead, and execs bubblewrap itself only when there is no zygote to ask.

Kernel and grader talk over IPC sockets in the student's IPC folder: a new network namespace
cannot reach the grader's loopback. With `--no-sandbox` the same launcher starts the kernel
without bubblewrap (limits and checker still apply, isolation does not).
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

KERNEL_NAME = "course-lab-sandbox"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3 (graded, sandboxed)", "language": "python"}
SPEC_ENV = "COURSE_LAB_SANDBOX"
ZYGOTE_ENV = "COURSE_LAB_ZYGOTE"  # the control socket of the student's zygote (zygote.py), for the launcher
CHECKER_SOCKET = "checker.sock"  # in the student's IPC folder
# ipykernel's options for a graded kernel: no capture of output at the file-descriptor level (what
# student code writes to fd 1 and 2 goes to the kernel's log in its IPC folder, capped by that
# tmpfs, instead of through a pipe and the IOPub channel to the grader)
KERNEL_OPTIONS = ("--IPKernelApp.capture_fd_output=False",)
SITE_IN_SANDBOX = "/opt/lab4/python"  # where the kernel finds course_utils (no TA path in tracebacks)
HOME_IN_SANDBOX = "/home/student"
INSTALL_HINT = ("Grading runs every student's kernel in a bubblewrap sandbox. Install it with "
                "`sudo apt-get install bubblewrap` (Debian, Ubuntu) or `sudo dnf install bubblewrap` (Fedora), "
                "or pass --no-sandbox to grade without isolation (only for submissions you trust).")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


@dataclasses.dataclass
class SandboxSpec:
    """One student's sandbox; written as JSON next to their IPC folder."""

    ipc_dir: str  # writable, shared with the grader: kernel sockets, connection file, checker socket
    site_dir: str  # read-only course_utils without the checks
    etc_dir: str  # passwd and group with the sandbox's user
    memory_limit_gb: float = 6.0
    scratch_mb: int = 512
    max_processes: int = 512
    isolate: bool = True
    cgroup: list[str] = dataclasses.field(default_factory=list)  # the student's cgroup.procs files (cgroups.py)

    @property
    def checker_socket(self) -> str:
        return str(Path(self.ipc_dir) / CHECKER_SOCKET)

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(dataclasses.asdict(self)))
        return path


def bwrap_executable() -> str | None:
    return shutil.which("bwrap")


def require_bubblewrap() -> str:
    """bubblewrap's path, after checking that it can build the namespaces grading needs."""
    bwrap = bwrap_executable()
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed. " + INSTALL_HINT)
    probe = subprocess.run([bwrap, "--unshare-all", "--uid", "65534", "--gid", "65534", "--die-with-parent",
                            *_system_binds(), "--proc", "/proc", "--dev", "/dev", "true"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        raise SandboxUnavailable(f"bubblewrap cannot create a sandbox here ({probe.stderr.strip()[:300]}); "
                                 "unprivileged user namespaces may be disabled "
                                 "(sysctl kernel.unprivileged_userns_clone=1). " + INSTALL_HINT)
    return bwrap


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "alternatives",
                 "mime.types", "fonts"):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def _python_binds() -> list[str]:
    """The interpreter and the venv, read-only, at their own paths (a venv finds its base there)."""
    roots = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    args = []
    for root in sorted(roots):
        if not root.startswith("/usr/"):
            args += ["--ro-bind", root, root]
    return args


def _environment(spec: SandboxSpec) -> dict[str, str]:
    home = HOME_IN_SANDBOX if spec.isolate else str(Path(spec.ipc_dir) / "home")  # unsandboxed: still per student
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONPATH": SITE_IN_SANDBOX if spec.isolate else spec.site_dir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONWARNINGS": "ignore",  # a warning on stderr would score a test cell 0
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "NBGRADER_EXECUTION": os.environ.get("NBGRADER_EXECUTION", "autograde"),  # selects the grade profile
        "COURSE_CHECKER_SOCKET": spec.checker_socket,
        "COURSE_DATA_DIR": f"{home}/data",
    }
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    if not spec.isolate:
        env["MPLCONFIGDIR"] = f"{home}/matplotlib"
    return env


def sandbox_command(spec: SandboxSpec, command: list[str], bwrap: str = "bwrap", *,
                    read_only: tuple[str, ...] = (), seccomp_fd: int | None = None) -> list[str]:
    """`command` wrapped in bubblewrap as the module docstring says; `read_only` host files
    (the kernel's connection file) appear at their own paths; `seccomp_fd`: a filter program
    bubblewrap applies to the command (`seccomp.program_fd`)."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--uid", "65534", "--gid", "65534",
            *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
            "--hostname", "grading", *_system_binds(),
            # the tmpfs first: a venv or IPC folder under /tmp is bound on top of it
            "--size", str(spec.scratch_mb * 2**20), "--tmpfs", "/tmp",
            "--size", str(spec.scratch_mb * 2**20), "--tmpfs", HOME_IN_SANDBOX,
            *_python_binds(),
            "--ro-bind", f"{spec.etc_dir}/passwd", "/etc/passwd", "--ro-bind", f"{spec.etc_dir}/group", "/etc/group",
            "--proc", "/proc", "--dev", "/dev",
            "--ro-bind", spec.site_dir, SITE_IN_SANDBOX,
            "--bind", spec.ipc_dir, spec.ipc_dir,
            *(arg for path in read_only for arg in ("--ro-bind", path, path)),
            "--remount-ro", "/",  # the sandbox's own root (a tmpfs holding the mount points) too
            "--chdir", HOME_IN_SANDBOX, "--clearenv"]
    for key, value in _environment(spec).items():
        args += ["--setenv", key, value]
    return [*args, "--", *command]


def apply_limits(spec: SandboxSpec) -> None:
    """This process's limits before it becomes a sandbox (a kernel, a zygote): per process, under
    the student's cgroup (which bounds all their processes together)."""
    memory = int(spec.memory_limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    scratch = spec.scratch_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (scratch, scratch))
    if spec.isolate:
        # RLIMIT_NPROC counts every process of the real uid, the grader's and (as root) the
        # machine's too: allow the sandbox max_processes more than exist now (a fork bomb stops there)
        limit = _processes_of(os.getuid()) + spec.max_processes
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the thread that started it dies (a killed grading
    worker must not leave its nbgrader, zygote or sandbox running)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _processes_of(uid: int) -> int:
    """Processes and threads of `uid` now (what RLIMIT_NPROC counts)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


def install_kernelspec(jupyter_path: Path) -> Path:
    """The kernelspec that starts every graded kernel through `launcher.main`, under `jupyter_path`/kernels."""
    folder = jupyter_path / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "course_utils.grading.launcher", "-f", "{connection_file}"],
        "display_name": KERNELSPEC["display_name"],
        "language": KERNELSPEC["language"],
        # a signal to the launcher's process group cannot reach a kernel in its own session and PID
        # namespace: ipykernel interrupts itself on a control message instead
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }, indent=1))
    return folder


def write_etc(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passwd").write_text(f"student:x:65534:65534:student:{HOME_IN_SANDBOX}:/usr/sbin/nologin\n")
    (folder / "group").write_text("student:x:65534:\n")
    return folder

