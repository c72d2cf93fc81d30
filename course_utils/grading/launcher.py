"""The graded kernelspec's launcher: `python -m course_utils.grading.launcher -f CONNECTION_FILE`.

nbgrader's kernel manager starts this, outside the sandbox and as the TA, for every notebook
of a student. It reads the student's `SandboxSpec` ($COURSE_LAB_SANDBOX) and gets the kernel
started in the student's sandbox, in one of two ways:

- it asks the student's zygote for a fork (`launch`, over the zygote's control socket in
  $COURSE_LAB_ZYGOTE) and lives exactly as long as that kernel (killing it kills the kernel);
- with no zygote to ask, it sets the sandbox's limits and replaces itself with bubblewrap
  running ipykernel (a cold kernel, under the seccomp filter, `seccomp.py`).

Either way the kernel's processes join the student's cgroup (`cgroups.py`) before any code of
theirs runs: the zygote's fork announces itself over the control socket with its credentials
(the socket translates its PID into ours), the launcher moves it, and only then does the fork
build the kernel; the cold path joins before it execs bubblewrap. The kernel's stdout and
stderr (its own file descriptors, which student code may write to directly) go to a log file
in the student's IPC tmpfs, never to a pipe of the grader's: at most the tmpfs's size, charged
to the student.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path

from . import cgroups, sandbox

LOG_TAIL = 2000  # bytes of a failed kernel's log that reach nbgrader's log


def _credentials_pid(ancillary) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
            return struct.unpack("3i", data[:12])[0]
    return None


def launch(control: str, argv: list[str], log_fd: int | None = None, log_name: str = "") -> int | None:
    """Ask the zygote at `control` for a kernel with ipykernel's `argv` (`-f CONNECTION_FILE`), put
    it in the student's cgroup (if the spec names one), then wait until it exits. Its exit status,
    or None when there is no zygote to ask (the caller starts the kernel itself). The kernel's
    stdout and stderr are `log_fd` (else this process's own), a file named `log_name` in the student's
    IPC folder (the zygote keeps it when it tidies that folder)."""
    connection = argv[argv.index("-f") + 1] if "-f" in argv else None
    if connection is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(control)
    except OSError:
        sock.close()
        return None
    spec = json.loads(Path(os.environ[sandbox.SPEC_ENV]).read_text())
    group = list(spec.get("cgroup") or [])
    request = json.dumps({"connection": Path(connection).read_text(), "name": Path(connection).name,
                          "ipc_dir": spec["ipc_dir"], "join": bool(group), "log": log_name}).encode()
    message = struct.pack("!I", len(request)) + request
    reply = b""
    with sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the fork's PID, as this process sees it
            outputs = [1, 2] if log_fd is None else [log_fd, log_fd]
            sent = socket.send_fds(sock, [message], outputs)
            sock.sendall(message[sent:])
            if group:
                data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(12))
                pid = _credentials_pid(ancillary) if data else None
                if pid is None:
                    return 1  # refused, or gone
                try:
                    cgroups.join(group, pid)
                except OSError as err:
                    print(f"[course-lab] could not put the kernel in the student's cgroup: {err}", file=sys.stderr)
                    sock.sendall(b"0")
                    return 1
                sock.sendall(b"1")
            # the socket stays open while the kernel lives: closing it (this process killed) kills the kernel
            while chunk := sock.recv(64):
                reply += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass  # the zygote refused the request (and closed at once) or went away
    try:
        return int(reply.decode().strip())
    except ValueError:
        return 1  # the zygote went away with the kernel


def _open_log(spec: sandbox.SandboxSpec, argv: list[str]) -> tuple[int, str | None]:
    """The kernel's log file in the student's IPC folder (named after its connection file); /dev/null
    where it cannot be made (a folder the student filled): never a pipe of the grader's."""
    name = Path(argv[argv.index("-f") + 1]).stem if "-f" in argv else "kernel"
    path = os.path.join(spec.ipc_dir, f"{name}.log")
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), path
    except OSError:
        return os.open(os.devnull, os.O_WRONLY), None


def _tail(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL))
            return f.read(LOG_TAIL).decode("utf-8", "replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> None:
    """Ask the zygote for the kernel, or set the limits and exec bubblewrap (or the bare kernel)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = sandbox.SandboxSpec(**json.loads(Path(os.environ[sandbox.SPEC_ENV]).read_text()))
    log_fd, log_path = _open_log(spec, argv)
    control = os.environ.get(sandbox.ZYGOTE_ENV)
    if control:  # a fork of the student's zygote, if it is there to ask
        code = launch(control, argv, log_fd, os.path.basename(log_path or ""))
        if code is not None:
            if code != 0:
                print(f"[course-lab] the kernel exited with status {code}; the end of its log:\n{_tail(log_path)}",
                      file=sys.stderr)
            sys.exit(code)
    kernel = [sys.executable, "-m", "ipykernel_launcher", *argv, *sandbox.KERNEL_OPTIONS]
    extra: list[int] = []
    if spec.isolate:
        bwrap = sandbox.bwrap_executable()
        if bwrap is None:
            sys.exit("bubblewrap disappeared: " + sandbox.INSTALL_HINT)
        from . import seccomp

        filter_fd = seccomp.program_fd()
        extra.append(filter_fd)
        # the connection file (ports, key) may live outside the IPC folder
        connection = (os.path.abspath(argv[argv.index("-f") + 1]),) if "-f" in argv else ()
        command = sandbox.sandbox_command(spec, kernel, bwrap, read_only=connection, seccomp_fd=filter_fd)
    else:
        env = sandbox._environment(spec)
        home = Path(env["HOME"])
        (home / "data").mkdir(parents=True, exist_ok=True)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(home)
        command = kernel
    if spec.cgroup:
        cgroups.join(spec.cgroup, os.getpid())  # before bubblewrap: everything the kernel starts is in it
    sandbox.apply_limits(spec)
    devnull = os.open(os.devnull, os.O_RDONLY)  # never the TA's terminal
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)  # the kernel's own output: the log in its IPC folder, not nbgrader's pipe
    os.dup2(log_fd, 2)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
