"""benchmarks/bench_cpu_per_student.py --by-process: which process a graded run's CPU seconds are put on."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("bench_cpu_per_student", ROOT / "benchmarks" / "bench_cpu_per_student.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

TA = "/venv/bin/python -c import bench_autograde ..."
ZYGOTE = "/venv/bin/python -m course_utils.grading.zygote --fd 14 --isolated"
BWRAP = "/usr/bin/bwrap --unshare-all --die-with-parent ... " + ZYGOTE  # its command line holds the zygote's


def _process(ppid, command, user, system=0.0, faults=0):
    return {"ppid": ppid, "command": command, "user": user, "system": system, "faults": faults}


def _cpu(totals):
    return {role: round(t["user"] + t["system"], 2) for role, t in totals.items()}


def test_a_graded_runs_processes_are_put_on_their_roles():
    processes = {  # (PID, start time): process
        (1, 0): _process(0, "init", 50.0),  # not the run's: left out
        (10, 5): _process(1, TA, 7.0, 1.0, 1000),
        (11, 6): _process(10, TA, 1.0),  # the template's nbgrader (a fork of the TA's process)
        (12, 7): _process(10, TA, 0.5),  # a pool worker
        (13, 8): _process(12, TA, 2.0, 0.5, 300),  # its nbgrader autograde run
        (14, 9): _process(13, "/venv/bin/python -m course_utils.grading.launcher -f /tmp/k.json", 0.05),
        (15, 9): _process(12, BWRAP, 0.02),
        (20, 9): _process(15, BWRAP, 0.01),  # bubblewrap's PID 1 in the sandbox
        (16, 9): _process(20, ZYGOTE, 5.0, 1.0),
        (17, 9): _process(16, ZYGOTE, 0.01),  # a kernel's A, B and C: forks of the zygote
        (18, 9): _process(17, ZYGOTE, 0.0),
        (19, 9): _process(18, ZYGOTE, 1.5, 0.3, 50_000),
    }
    totals = bench.roles(processes, root=10)
    assert _cpu(totals) == {"ta": 8.0, "workers": 1.5, "nbgrader": 2.5, "launchers": 0.05, "zygotes": 6.0,
                            "kernels": 1.81, "others": 0.03}
    assert totals["kernels"]["faults"] == 50_000
    assert set(totals) == set(bench.ROLES)


def test_a_reused_pid_is_two_processes_and_a_child_belongs_to_the_one_that_started_it():
    processes = {
        (10, 5): _process(1, TA, 1.0),
        (30, 2): _process(1, "/usr/bin/other-job", 9.0),  # PID 30 before the run: not the run's
        (31, 3): _process(30, "/usr/bin/its-child", 4.0),  # (started by that one)
        (30, 50): _process(10, TA, 2.0),  # PID 30 again, now a pool worker of the run
        (32, 60): _process(30, TA, 3.0),  # its nbgrader run
    }
    assert _cpu(bench.roles(processes, root=10)) == {"ta": 1.0, "workers": 2.0, "nbgrader": 3.0, "launchers": 0.0,
                                                     "zygotes": 0.0, "kernels": 0.0, "others": 0.0}


def test_the_sampler_sees_a_child_and_its_cpu_time():
    child = subprocess.Popen([sys.executable, "-c", "import sys, time\nend = time.process_time() + 0.3\n"
                              "while time.process_time() < end: pass\nsys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        sampler, deadline, entries = bench.ProcessSampler(), time.monotonic() + 20, []
        while time.monotonic() < deadline and child.poll() is None:  # until its 0.3 s of CPU are seen
            sampler.sample()
            entries = [p for (pid, _), p in sampler.processes.items() if pid == child.pid]
            if entries and entries[0]["user"] + entries[0]["system"] >= 0.25:
                break
            time.sleep(0.02)
    finally:
        child.communicate(b"")
    assert len(entries) == 1, entries  # one process, however often it was read
    assert entries[0]["user"] + entries[0]["system"] >= 0.25
    assert entries[0]["ppid"] == os.getpid() and "process_time" in entries[0]["command"]
    assert entries[0]["faults"] > 1000  # a Python's start touches thousands of pages


def _fake_process(proc: Path, pid: int, name: str, command: str, user_ticks: int) -> None:
    (proc / str(pid)).mkdir(parents=True, exist_ok=True)
    after = ["S", "1", *["0"] * 5, "1234", "0", "0", "0", str(user_ticks), "3", *["0"] * 6, "777"]
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) " + " ".join(after) + "\n")
    (proc / str(pid) / "cmdline").write_text(command.replace(" ", "\0"))


def test_a_fork_seen_before_its_exec_gets_the_command_it_execs(tmp_path):
    """A fork of a pool worker read before it execs the launcher has the worker's command line;
    its command is read again while it is young, and whenever its name changes."""
    sampler = bench.ProcessSampler(proc=str(tmp_path))
    _fake_process(tmp_path, 42, "python", TA, 1)
    sampler.sample()
    _fake_process(tmp_path, 42, "python", "/venv/bin/python -m course_utils.grading.sandbox -f k.json", 5)
    sampler.sample()
    (seen,) = sampler.processes.values()
    assert "grading.sandbox" in seen["command"] and seen["user"] == 5 / bench.TICKS and seen["faults"] == 1234
    sampler.sample()
    sampler.sample()  # no longer young
    _fake_process(tmp_path, 42, "bwrap", BWRAP, 6)
    sampler.sample()
    (seen,) = sampler.processes.values()
    assert seen["command"] == BWRAP and seen["ppid"] == 1 and list(sampler.processes) == [(42, 777)]


def test_a_failing_sampler_raises_instead_of_returning_low_totals(monkeypatch):
    sampler = bench.ProcessSampler(interval=0.01)
    monkeypatch.setattr(sampler, "sample", lambda: 1 / 0)
    with pytest.raises(RuntimeError, match="sampler failed") as failed:
        with sampler:
            time.sleep(0.05)
    assert isinstance(failed.value.__cause__, ZeroDivisionError)
