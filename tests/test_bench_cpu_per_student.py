"""benchmarks/bench_cpu_per_student.py --by-process: which process a graded run's CPU seconds are put on."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("bench_cpu_per_student", ROOT / "benchmarks" / "bench_cpu_per_student.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

TA = "python -c import bench_autograde ..."
ZYGOTE = "/venv/bin/python -m course_utils.grading.zygote --fd 14 --isolated"


def _process(ppid, command, user, system=0.0, faults=0):
    return {"ppid": ppid, "command": command, "user": user, "system": system, "faults": faults}


def test_a_graded_runs_processes_are_put_on_their_roles():
    processes = {
        (1, 0): _process(0, "init", 50.0),  # not the run's: left out
        (10, 5): _process(1, TA, 7.0, 1.0, 1000),
        (11, 6): _process(10, TA, 1.0),  # the template's nbgrader (a fork of the TA's process)
        (12, 7): _process(10, TA, 0.5),  # a pool worker
        (13, 8): _process(12, TA, 2.0, 0.5, 300),  # its nbgrader autograde run
        (14, 9): _process(13, "/venv/bin/python -m course_utils.grading.sandbox -f /tmp/k.json", 0.05),
        (15, 9): _process(12, "/usr/bin/bwrap --unshare-all ... " + ZYGOTE, 0.02),  # runs the zygote
        (20, 9): _process(15, "/usr/bin/bwrap --unshare-all ... " + ZYGOTE, 0.01),  # bubblewrap's PID 1
        (16, 9): _process(20, ZYGOTE, 5.0, 1.0),
        (17, 9): _process(16, ZYGOTE, 0.01),  # a kernel's A, B and C: forks of the zygote
        (18, 9): _process(17, ZYGOTE, 0.0),
        (19, 9): _process(18, ZYGOTE, 1.5, 0.3, 50_000),
    }
    totals = bench.roles(processes, root=10)
    cpu = {role: round(t["user"] + t["system"], 2) for role, t in totals.items()}
    assert cpu == {
        "TA (template, results)": 8.0,
        "pool workers, the template's nbgrader": 1.5,
        "nbgrader runs (autograde + checker, feedback)": 2.5,
        "kernel launchers": 0.05,
        "zygotes (imports)": 6.0,
        "kernels (the student's cells)": 1.81,
        "bubblewrap, others": 0.03,
    }
    assert totals["kernels (the student's cells)"]["faults"] == 50_000


def test_the_sampler_sees_a_child_and_its_cpu_time():
    child = subprocess.Popen([sys.executable, "-c", "import sys, time\nend = time.process_time() + 0.3\n"
                              "while time.process_time() < end: pass\nsys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        sampler = bench.ProcessSampler()
        while child.poll() is None:  # until the child has used its 0.3 s of CPU
            sampler.sample()
            seen = [p for (pid, _), p in sampler.processes.items() if pid == child.pid]
            if seen and seen[0]["user"] + seen[0]["system"] >= 0.25:
                break
    finally:
        child.communicate(b"")
    assert seen and seen[0]["user"] + seen[0]["system"] >= 0.25
    assert seen[0]["ppid"] == os.getpid() and "process_time" in seen[0]["command"]
    assert seen[0]["faults"] > 0
