"""Graded kernels forked from the student's zygote: each as isolated as a kernel of its own
(needs bubblewrap). The whole-lab autograde in test_grading.py runs through the zygote too."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from course_utils.grading import held_folders, launcher, sandbox, template, zygote

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.grading
MARK = "876.25"  # a sleeper's argument, to find it in /proc


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """One student's sandbox spec, kernelspec and running zygote, as nbgrader_run sets them up."""
    if sandbox.bwrap_executable() is None:
        pytest.fail("bubblewrap is not installed: " + sandbox.INSTALL_HINT)
    sandbox.require_bubblewrap()
    base = tmp_path_factory.mktemp("zygote")
    ipc = Path(tempfile.mkdtemp(prefix="clt-", dir="/tmp"))  # short: Unix socket paths are limited
    template.build_site(ROOT, base / "site")
    sandbox.write_etc(base / "etc")
    sandbox.install_kernelspec(base / "jupyter")
    spec = sandbox.SandboxSpec(str(ipc), str(base / "site"), str(base / "etc"), memory_limit_gb=6, scratch_mb=64)
    spec.write(base / "sandbox.json")
    env = {"JUPYTER_PATH": str(base / "jupyter"), "JUPYTER_RUNTIME_DIR": str(ipc),
           sandbox.SPEC_ENV: str(base / "sandbox.json")}
    saved = {k: os.environ.get(k) for k in [*env, zygote.CONTROL_ENV]}
    os.environ.update(env)
    z = zygote.Zygote(spec).start()
    os.environ[zygote.CONTROL_ENV] = z.control
    try:
        yield {"spec": spec, "zygote": z, "ipc": ipc}
    finally:
        z.stop()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        shutil.rmtree(ipc, ignore_errors=True)


class Kernel:
    """A graded kernel started as nbgrader starts it (the sandboxed kernelspec, IPC transport)."""

    def __init__(self, ipc: Path):
        self.km = KernelManager(kernel_name=sandbox.KERNEL_NAME, transport="ipc", ip=str(ipc / "kernel"))
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str) -> dict:
        """Run `code`, which prints one JSON object; that object."""
        out = []
        reply = self.kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(
            m["content"].get("text", "") if m["msg_type"] == "stream" else ""))
        assert reply["content"]["status"] == "ok", reply["content"]
        return json.loads("".join(out).strip().splitlines()[-1])

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)  # as nbgrader does: the launcher is killed


def gone(found, seconds: float = 30) -> bool:
    """Whether `found()` comes back empty within `seconds` (killed processes take a moment)."""
    deadline = time.monotonic() + seconds
    while found() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not found()


def sleepers() -> list[str]:
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if MARK.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                alive.append(pid)
        except OSError:
            pass
    return alive


PROBE = """
import gc, json, os, sys, subprocess
def opens(path):
    try:
        open(path, "rb").read(1); return True
    except OSError:
        return False
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({{
    "uid": os.getuid(), "pid": os.getpid(), "cap": status["CapEff"].strip(), "bounding": status["CapBnd"].strip(),
    "tmp": sorted(os.listdir("/tmp")), "home": sorted(os.listdir(os.path.expanduser("~"))),
    "ipc": os.path.isdir({ipc!r}), "control": os.path.exists({control!r}),
    "foreign_memory": [p for p in pids if opens(f"/proc/{{p}}/mem") and not os.path.samefile(f"/proc/{{p}}", "/proc/self")],
    "preloaded": [m for m in ("torch", "torchvision", "sklearn", "matplotlib") if m in sys.modules],
    "kernel_aware": [m for m in ("tqdm.auto", "tqdm.autonotebook", "ipywidgets") if m in sys.modules],
    "frozen": gc.get_freeze_count(), "collecting": gc.isenabled(),
    "unshare": subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode,
    "cgroup": open("/proc/self/cgroup").read(),
}}))
"""


def test_each_kernel_is_a_fresh_unprivileged_fork(student):
    probe = PROBE.format(ipc=str(student["ipc"]), control=student["zygote"].control)
    first = Kernel(student["ipc"])
    try:
        got = first.run(probe)
        first.run("import json, os, subprocess\n"
                  f"subprocess.Popen(['sleep', '{MARK}'], start_new_session=True)\n"
                  "open('/tmp/left-by-01', 'w').write('x'); open('/home/student/left-by-01', 'w').write('x')\n"
                  "os.makedirs(os.path.join(os.path.dirname(os.environ['COURSE_CHECKER_SOCKET']), 'junk', 'deep'))\n"
                  "print(json.dumps({}))")
        assert sleepers(), "the kernel could not start a process"
    finally:
        first.close()
    assert got["uid"] == 65534 and got["cap"] == got["bounding"] == "0000000000000000"
    assert got["pid"] <= 3  # its own PID namespace
    assert got["ipc"] and not got["control"], "the IPC folder must be there, the zygote's control socket not"
    assert got["foreign_memory"] == [], "a kernel could read another process's memory"
    assert got["preloaded"] == ["torch", "torchvision", "sklearn", "matplotlib"]
    assert got["kernel_aware"] == [], "modules that look at the kernel when imported must import in the kernel"
    # the preloaded objects are frozen (a collection in the kernel does not copy their pages); the
    # kernel's own garbage is still collected
    assert got["frozen"] > 100_000 and got["collecting"]
    assert got["unshare"] != 0, "a kernel made a user namespace of its own (the seccomp filter is off)"

    second = Kernel(student["ipc"])
    try:
        assert not sleepers(), "a process of the previous notebook outlived its kernel"
        got2 = second.run(probe)
    finally:
        second.close()
    assert "left-by-01" not in got2["tmp"] and "left-by-01" not in got2["home"]
    assert not (student["ipc"] / "junk").exists(), "what a kernel left in the IPC folder outlived it"


def test_killing_the_launcher_kills_the_kernel_and_what_it_started(student):
    kernel = Kernel(student["ipc"])
    kernel.run("import json, subprocess\n"
               f"subprocess.Popen(['sleep', '{MARK}'], start_new_session=True)\nprint(json.dumps({{}}))")
    assert sleepers()
    os.kill(kernel.km.provisioner.process.pid, signal.SIGKILL)
    assert gone(sleepers)
    kernel.kc.stop_channels()
    kernel.km.cleanup_resources()


def test_scratch_space_of_a_fork_is_limited(student):
    kernel = Kernel(student["ipc"])
    try:
        got = kernel.run("import json\n"
                         "def fill(path):\n"
                         "    try:\n"
                         "        with open(path, 'wb') as f:\n"
                         "            for _ in range(200):\n"
                         "                f.write(b'x' * 2**20)\n"
                         "        return 'filled'\n"
                         "    except OSError as err:\n"
                         "        return type(err).__name__\n"
                         "print(json.dumps({'tmp': fill('/tmp/big'), 'home': fill('/home/student/big')}))")
    finally:
        kernel.close()
    assert got == {"tmp": "OSError", "home": "OSError"}  # 200 MB into a 64 MB tmpfs


def test_without_a_zygote_the_launcher_starts_its_own_sandbox(student, tmp_path):
    gone = str(tmp_path / "no-such-zygote.sock")
    assert launcher.launch(gone, ["-f", str(tmp_path / "kernel.json")]) is None
    os.environ[zygote.CONTROL_ENV] = gone
    try:
        kernel = Kernel(student["ipc"])
        try:
            got = kernel.run("import json, os, subprocess, sys\nprint(json.dumps({'uid': os.getuid(), "
                             "'torch': 'torch' in sys.modules, 'unshare': subprocess.run(['unshare', '-Urm', 'true'], "
                             "capture_output=True).returncode != 0}))")
        finally:
            kernel.close()
    finally:
        os.environ[zygote.CONTROL_ENV] = student["zygote"].control
    # a cold kernel in bubblewrap, as before the zygote, under the same seccomp filter
    assert got == {"uid": 65534, "torch": False, "unshare": True}


def test_the_zygote_dies_with_its_grader(student, tmp_path):
    ipc = Path(tempfile.mkdtemp(prefix="clt-", dir="/tmp"))  # this zygote's own: its sandbox names it
    spec_file = sandbox.SandboxSpec(**{**vars(student["spec"]), "ipc_dir": str(ipc)}).write(tmp_path / "spec.json")
    # the grader waits a little: bubblewrap killed within milliseconds of its start, before it set
    # its own parent-death signal, can leave its PID 1 behind (as it could for any cold kernel)
    code = ("import json, sys, time; from course_utils.grading import sandbox, zygote; "
            "spec = sandbox.SandboxSpec(**json.loads(open(sys.argv[1]).read())); "
            "z = zygote.Zygote(spec).start(); time.sleep(3); print(z.folder, flush=True); time.sleep(600)")
    grader = subprocess.Popen([sys.executable, "-c", code, str(spec_file)], stdout=subprocess.PIPE, text=True)

    def sandboxed() -> list[str]:  # bubblewrap's processes of this sandbox (their command lines name the folder)
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if str(ipc).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        return found

    try:
        control_folder = grader.stdout.readline().strip()
        assert sandboxed(), "the zygote's sandbox did not start"
        grader.kill()
        grader.wait()
        assert gone(sandboxed), "the zygote's sandbox outlived its grader"
        # the killed grader could not remove its control socket's folder: the next grading does
        assert control_folder in held_folders.sweep(min_age_s=0) and not os.path.exists(control_folder)
    finally:
        shutil.rmtree(ipc, ignore_errors=True)


def test_a_workers_zygote_shows_each_kernel_only_its_own_students_folder(student, tmp_path, monkeypatch):
    """A grading worker keeps one zygote for student after student: its sandbox holds the
    folder of every student's IPC folder, and each kernel sees only its own student's."""
    root = Path(tempfile.mkdtemp(prefix="clw-", dir="/tmp"))
    spec = sandbox.SandboxSpec(**{**vars(student["spec"]), "ipc_dir": str(root)})
    folders = {name: root / name for name in ("s-ada", "s-bob")}
    for name, folder in folders.items():
        folder.mkdir()
        (folder / f"{name}.txt").write_text(name)
    shared = zygote.Zygote(spec).start()
    try:
        monkeypatch.setenv(zygote.CONTROL_ENV, shared.control)
        seen = {}
        for name, folder in folders.items():
            student_spec = sandbox.SandboxSpec(**{**vars(spec), "ipc_dir": str(folder)})
            monkeypatch.setenv(sandbox.SPEC_ENV, str(student_spec.write(tmp_path / f"{name}.json")))
            monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(folder))
            kernel = Kernel(folder)
            try:
                seen[name] = kernel.run(f"import json, os\nprint(json.dumps({{'root': sorted(os.listdir({str(root)!r})), "
                                        f"'own': sorted(os.listdir({str(folder)!r})), "
                                        "'checker': os.environ['COURSE_CHECKER_SOCKET']}))")
            finally:
                kernel.close()
        for name, folder in folders.items():
            assert seen[name]["root"] == [name], seen[name]  # the other student's folder is not there
            assert any(f.endswith(".log") for f in seen[name]["own"])  # its own kernel's log, in its folder
            assert seen[name]["checker"] == str(folder / sandbox.CHECKER_SOCKET)
        # a request for a folder outside the zygote's is refused: no kernel
        elsewhere = Path(tempfile.mkdtemp(prefix="clx-", dir="/tmp"))
        connection = elsewhere / "kernel.json"
        connection.write_text("{}")
        monkeypatch.setenv(sandbox.SPEC_ENV, str(sandbox.SandboxSpec(**{**vars(spec), "ipc_dir": str(elsewhere)})
                                                 .write(tmp_path / "elsewhere.json")))
        assert launcher.launch(shared.control, ["-f", str(connection)]) == 1
        shutil.rmtree(elsewhere, ignore_errors=True)
    finally:
        shared.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_without_the_sandbox_a_kernel_still_ends_with_what_it_started(student, tmp_path, monkeypatch):
    """--no-sandbox: no namespaces, but the kernel's process group ends with it, and the next
    kernel starts (the zygote serves one kernel at a time)."""
    spec = sandbox.SandboxSpec(**{**vars(student["spec"]), "isolate": False})
    monkeypatch.setenv(sandbox.SPEC_ENV, str(spec.write(tmp_path / "plain.json")))
    plain = zygote.Zygote(spec).start()
    try:
        monkeypatch.setenv(zygote.CONTROL_ENV, plain.control)
        for _ in range(2):
            kernel = Kernel(student["ipc"])
            try:
                kernel.run("import json, subprocess\n"
                           f"subprocess.Popen(['sleep', '{MARK}'])\nprint(json.dumps({{}}))")
                assert sleepers()
            finally:
                kernel.close()
            assert gone(sleepers), "a process of an unsandboxed kernel outlived it"
    finally:
        plain.stop()


def test_a_request_the_zygote_refuses_ends_the_launcher_with_status_1(tmp_path, monkeypatch):
    """A zygote that refuses a request closes the connection at once, maybe before the launcher
    has finished sending or started reading: the launcher reports status 1 (no kernel), never a
    broken pipe's traceback."""
    import socket
    import threading

    folder = Path(tempfile.mkdtemp(prefix="clr-", dir="/tmp"))  # short: Unix socket paths are limited
    try:
        control = str(folder / "control.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(control)
        server.listen(8)
        connection = tmp_path / "kernel.json"
        connection.write_text("{}")
        spec = sandbox.SandboxSpec(str(folder), str(tmp_path), str(tmp_path))
        monkeypatch.setenv(sandbox.SPEC_ENV, str(spec.write(tmp_path / "spec.json")))
        for _ in range(20):  # the refusal lands before, during or after the request is sent
            refuse = threading.Thread(target=lambda: server.accept()[0].close())
            refuse.start()
            assert launcher.launch(control, ["-f", str(connection)]) == 1
            refuse.join()
        server.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_every_kernel_joins_the_students_cgroup_and_the_zygote_does_not(student, tmp_path, monkeypatch):
    """Forked or cold, the kernel and what it starts are in the student's cgroup before any of their
    code runs; the zygote, the grader's, is not (issue 33)."""
    from course_utils.grading import cgroups

    hierarchy = cgroups.detect()
    group = hierarchy.group("ada", cgroups.Limits(2**30))
    try:
        spec = sandbox.SandboxSpec(**{**vars(student["spec"]), "cgroup": group.procs_files})
        monkeypatch.setenv(sandbox.SPEC_ENV, str(spec.write(tmp_path / "grouped.json")))
        for control in (student["zygote"].control, str(tmp_path / "no-zygote.sock")):  # forked, then cold
            monkeypatch.setenv(zygote.CONTROL_ENV, control)
            kernel = Kernel(student["ipc"])
            try:
                kernel.run("import json, subprocess\n"
                           f"subprocess.Popen(['sleep', '{MARK}'], start_new_session=True)\nprint(json.dumps({{}}))")
                members = group.pids()
                assert set(map(int, sleepers())) <= members and len(members) >= 2, (members, sleepers())
                assert student["zygote"].process.pid not in members
            finally:
                kernel.close()
            assert gone(lambda: group.pids())
    finally:
        group.remove()
        hierarchy.close()
