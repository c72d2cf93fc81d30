"""Starting JupyterLab on the lab's notebooks: for `make lab` / `course-lab lab` and the browser test.

One place builds the command line, so the student's server and the tested one are the same:
the project's Python, a loopback address, a token, and the notebook folder as the root.
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1", preferred: int = 0) -> int:
    """`preferred` if nobody listens on it now, else a free TCP port the OS picks."""
    for port in ((preferred, 0) if preferred else (0,)):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free TCP port")


# A server for grading, not for running: no kernel can start (no kernelspec is allowed), no terminal
NO_CODE = ["--KernelSpecManager.allowed_kernelspecs=__no_kernel__", "--ServerApp.terminals_enabled=False"]


def lab_command(notebook_dir: str | Path, *, port: int, token: str, host: str = "127.0.0.1",
                open_browser: bool = False, extra: list[str] = ()) -> list[str]:
    """`jupyter lab` from this environment, serving `notebook_dir` on host:port with `token`
    (`extra`: more options, e.g. `NO_CODE`)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={Path(notebook_dir).resolve()}",
           f"--ServerApp.ip={host}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.open_browser={open_browser}",
           # no calls home: a lab machine may be offline
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root; Jupyter refuses it otherwise
    return cmd + list(extra)


def lab_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the server: this venv's bin/ first on PATH (nbgrader's Validate shells out)."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@dataclasses.dataclass
class LabServer:
    """A JupyterLab server started in the background by `start_lab`."""

    process: subprocess.Popen
    base_url: str  # http://host:port
    token: str
    notebook_dir: Path
    log: Path | None = None  # the server's stdout and stderr, when start_lab was given a file

    def url(self, path: str = "") -> str:
        """The address of `path` (a notebook relative to the root) in JupyterLab, token included."""
        return f"{self.base_url}/lab/tree/{path}?token={self.token}" if path else f"{self.base_url}/lab?token={self.token}"

    def login_url(self, path: str) -> str:
        """An address that logs the browser in with the token and goes on to `path` (e.g. /formgrader):
        pages such as formgrader's call the server's API with the login cookie, which only a login
        sets (a token in their own address authenticates that one request only)."""
        from urllib.parse import quote

        return f"{self.base_url}/login?next={quote(path, safe='')}&token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10):
        """One call of Jupyter's REST API (`path` after /api/); the decoded JSON, or None."""
        request = urllib.request.Request(f"{self.base_url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut down every kernel the server runs (the browser's notebooks leave theirs running)."""
        for kernel in self.api("GET", "kernels"):
            self.api("DELETE", f"kernels/{kernel['id']}", timeout=60)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/status?token={self.token}", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer on {self.base_url} within {timeout:.0f} s")

    def stop(self, timeout: float = 30) -> None:
        """Shut the kernels down, then the server. Kernels run in sessions of their own: a
        killed server would leave them behind."""
        if self.process.poll() is None:
            try:
                self.shutdown_kernels()
            except OSError:
                pass
            self.process.terminate()  # Jupyter also shuts its kernels down on SIGTERM
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_lab(notebook_dir: str | Path, *, port: int | None = None, token: str | None = None,
              env: dict[str, str] | None = None, log: Path | None = None, extra: list[str] = ()) -> LabServer:
    """Start JupyterLab in the background on a free loopback port; return once it answers."""
    port, token = port or free_port(), token or secrets.token_hex(16)
    out = open(log, "w") if log else subprocess.DEVNULL
    try:
        process = subprocess.Popen(lab_command(notebook_dir, port=port, token=token, extra=extra), env=lab_env(env),
                                   stdout=out, stderr=subprocess.STDOUT, cwd=notebook_dir)
    finally:
        if log:
            out.close()
    server = LabServer(process, f"http://127.0.0.1:{port}", token, Path(notebook_dir).resolve(), log)
    try:
        server.wait_ready()
    except Exception:
        server.stop()
        raise
    return server
