"""The grading sandbox itself: what a student's kernel can and cannot reach (needs bubblewrap)."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from course_utils.grading import sandbox, template

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.grading


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    if sandbox.bwrap_executable() is None:
        pytest.fail("bubblewrap is not installed: " + sandbox.INSTALL_HINT)
    sandbox.require_bubblewrap()
    base = tmp_path_factory.mktemp("sandbox")
    ipc = base / "ipc"
    ipc.mkdir()
    template.build_site(ROOT, base / "site")
    sandbox.write_etc(base / "etc")
    return sandbox.SandboxSpec(str(ipc), str(base / "site"), str(base / "etc"), memory_limit_gb=4, scratch_mb=64)


def inside(spec, code: str, timeout: float = 120) -> dict:
    """Run `code` in the sandbox; it prints one JSON object."""
    command = sandbox.sandbox_command(spec, [sys.executable, "-c", textwrap.dedent(code)],
                                      sandbox.bwrap_executable())
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_kernel_runs_unprivileged_without_the_graders_files(spec):
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    listen.listen(1)
    port = listen.getsockname()[1]
    with listen:
        got = inside(spec, f"""
            import json, os, socket
            def can_read(p):
                try:
                    open(p, "rb").read(1); return True
                except OSError:
                    return False
            def can_write(p):
                try:
                    open(p, "w").write("x"); return True
                except OSError:
                    return False
            def can_connect():
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=2); return True
                except OSError:
                    return False
            import course_utils.checks.getting_started as stub, course_utils.attacks
            print(json.dumps({{
                "uid": os.getuid(), "gid": os.getgid(),
                "checks": can_read({str(ROOT / 'course_utils/checks/getting_started.py')!r}),
                "solutions": can_read({str(ROOT / 'solutions/lab4/00_getting_started.ipynb')!r}),
                "write_root": can_write({str(ROOT / 'PWNED')!r}),
                "write_venv": can_write(os.path.join({sys.prefix!r}, "PWNED")),
                "write_usr": can_write("/usr/PWNED"),
                "shadow": can_read("/etc/shadow"),
                "home": os.path.expanduser("~"),
                "graders_loopback": can_connect(),
                "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                "stub": open(stub.__file__).read(),
                "site": course_utils.attacks.__file__,
            }}))""")
    assert got["uid"] == 65534 and got["gid"] == 65534
    assert not got["checks"] and not got["solutions"] and not got["shadow"]
    assert not got["write_venv"] and not got["write_usr"]
    # a checkout under /tmp lies, inside, in the sandbox's own scratch tmpfs: a write may land
    # there, never in the grader's checkout
    assert not got["write_root"] or str(ROOT).startswith(("/tmp/", sandbox.HOME_IN_SANDBOX))
    assert not (ROOT / "PWNED").exists()
    assert not got["graders_loopback"], "the sandbox reached the grader's loopback"
    assert max(got["pids"]) < 10, got["pids"]  # its own PID namespace: the grader's processes are not there
    assert "remote_check(" in got["stub"] and "expected" not in got["stub"]
    assert got["site"].startswith(sandbox.SITE_IN_SANDBOX) and got["home"] == sandbox.HOME_IN_SANDBOX


def test_scratch_space_and_memory_are_limited(spec):
    got = inside(spec, """
        import json
        def fill(path):
            try:
                with open(path, "wb") as f:
                    for _ in range(200):
                        f.write(b"x" * 2**20)
                return "filled"
            except OSError as err:
                return type(err).__name__
        print(json.dumps({"tmp": fill("/tmp/big"), "home": fill("/home/student/big")}))""")
    assert got == {"tmp": "OSError", "home": "OSError"}  # 200 MB into a 64 MB tmpfs
    launcher = subprocess.run(
        [sys.executable, "-c", "import resource, sys; from course_utils.grading import sandbox; "
         f"sandbox.apply_limits(sandbox.SandboxSpec('/x', '/y', '/z', memory_limit_gb=1)); bytearray(2 * 2**30)"],
        capture_output=True, text=True, timeout=60)
    assert "MemoryError" in launcher.stderr


def test_no_process_survives_the_sandbox(spec, tmp_path):
    inside(spec, """
        import json, subprocess
        subprocess.Popen(["sleep", "876.5"], start_new_session=True)
        print(json.dumps({}))""")
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"876.5" in Path(f"/proc/{pid}/cmdline").read_bytes():
                alive.append(pid)
        except OSError:
            pass
    assert not alive


def test_the_kernelspec_starts_the_launcher(tmp_path):
    folder = sandbox.install_kernelspec(tmp_path)
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["argv"][1:4] == ["-m", "course_utils.grading.launcher", "-f"]
    assert spec["interrupt_mode"] == "message"
