"""`nbgrader_run` in a fork of the grading worker instead of a fresh Python (trusted code only).

Each student costs two nbgrader processes (autograde with the checker, then feedback). Started
as `python -m course_utils.grading.nbgrader_run`, each paid about 3 s to import nbgrader,
torch and the hidden checks before doing anything. A local grading worker imports them once
(`preload`) and forks for every run: the child is still a process of its own (its own session,
so a timeout kills it and everything it started; its own memory limit; the environment and
folder `_nbgrader` gives it), as the subprocess was. No student code runs in this process
or its forks: student code runs only in the sandboxed kernels those forks talk to.

Forking a process with threads can deadlock the child, so `usable()` is true only while the
worker has just one thread (a local process-pool worker); elsewhere (a Dask worker's threads)
`_nbgrader` starts the subprocess as before.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
import traceback
from typing import Callable

from . import nbgrader_run

_PRELOADED = False


def usable() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux") and threading.active_count() == 1


def preload() -> None:
    """What every nbgrader_run imports: nbgrader's apps, the checker (torch, the hidden checks, and
    what torch imports lazily for them) and the feedback exporter (nbconvert)."""
    global _PRELOADED
    if not _PRELOADED:
        import nbgrader.apps.nbgraderapp  # noqa: F401

        import torch._dynamo  # noqa: F401  (torch.optim imports it on its first optimizer: 1.1 s of a check)

        from . import checker, feedback  # noqa: F401
        _PRELOADED = True


class BoundedOutput:
    """What a grader keeps of a child's output (nbgrader's log): the first and the last `keep`
    bytes, whatever the child writes. The log is read for a few markers and shown in the report;
    a student's kernel cannot write to it (its output goes to a log of its own), but nothing
    that reaches a grader's memory is left unbounded."""

    def __init__(self, keep: int = 256 * 1024):
        self.keep, self.head, self.tail, self.dropped = keep, bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = self.keep - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.keep:
                self.dropped += len(self.tail) - self.keep
                del self.tail[:len(self.tail) - self.keep]

    def read_from(self, stream, process, timeout: float) -> None:
        """Read `stream` to its end (a subprocess's stdout); TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        fd = stream.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                self.add(chunk)

    def text(self) -> str:
        gap = f"\n[course-lab] {self.dropped} bytes of output left out\n".encode() if self.dropped else b""
        return (bytes(self.head) + gap + bytes(self.tail)).decode("utf-8", "replace")


def run(argv: list[str], *, cwd: str, env: dict[str, str], timeout: float,
        prepare: Callable[[], None] | None = None) -> tuple[int, str]:
    """`nbgrader_run.main(argv)` in a fork (see `call`), with nbgrader and the checker preloaded."""
    preload()
    return call(nbgrader_run.main, argv, cwd=cwd, env=env, timeout=timeout, prepare=prepare)


def call(target: Callable[..., int | None], *args, cwd: str, env: dict[str, str], timeout: float,
         prepare: Callable[[], None] | None = None) -> tuple[int, str]:
    """`target(*args)` in a fork of this process, in `cwd`, with exactly `env`, in a session of
    its own, after `prepare()` (what a subprocess's preexec_fn would do: limits, death with
    the worker): (exit status, stdout and stderr). The status is what `target` returns (0 for
    None), 1 if it raises (the traceback is in the output). After `timeout` seconds the fork's
    whole session is killed and the status is -9."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(target, args, cwd, env, prepare, read_end, write_end)  # never returns
    os.close(write_end)
    chunks, deadline, killed, status, exited_at = BoundedOutput(), time.monotonic() + timeout, False, None, None
    with os.fdopen(read_end, "rb") as output:
        while True:
            now = time.monotonic()
            if now >= deadline and not killed:
                _kill_session(pid)
                killed = True
            if status is None:
                done, raw = os.waitpid(pid, os.WNOHANG)
                if done:
                    status, exited_at = raw, now
            # once the fork has exited, what it left holding the pipe gets a moment, then is killed
            if exited_at is not None and now - exited_at > 2.0:
                _kill_session(pid)
                break
            ready, _, _ = select.select([output], [], [], 0.2)
            if ready:
                chunk = os.read(output.fileno(), 65536)
                if not chunk:
                    break
                chunks.add(chunk)
    if status is None:
        _, status = os.waitpid(pid, 0)
    _kill_session(pid)  # anything it left in its session
    text = chunks.text()
    if killed:
        return -9, text + "\n[course-lab] nbgrader killed after the submission's time limit\n"
    return os.waitstatus_to_exitcode(status), text


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child(target, args, cwd, env, prepare, read_end, write_end) -> None:
    code = 1
    try:
        os.setsid()  # a session of its own: killed as one on timeout, like the subprocess was
        if prepare is not None:
            prepare()
        os.close(read_end)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(devnull)
        os.close(write_end)
        # Python-level streams on those descriptors, as a fresh process has (the worker's own may
        # be something else: pytest's capture, a notebook's stream)
        sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                                           closefd=False)
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                                           closefd=False)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        if "torch" in sys.modules:  # OpenMP read the worker's environment when torch loaded, not `env`
            sys.modules["torch"].set_num_threads(int(env.get("OMP_NUM_THREADS", "1")))
        code = target(*args)
        code = 0 if code is None else code
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)
