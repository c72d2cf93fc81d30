"""Grading workers each keep to a CPU of their own (`cpus.py`): a claim per CPU, freed when its
holder dies, inherited by what the worker starts. Claims are made in child processes only:
the test process itself must never be pinned (every process it forks would be)."""
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from course_utils.grading import autograde, cpus

CPUS = sorted(os.sched_getaffinity(0))
HOLDER = """
import os, subprocess, sys
from course_utils.grading import cpus
first = cpus.claim(sys.argv[1])
again = cpus.claim(sys.argv[1])  # a second call keeps the first claim
child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                       capture_output=True, text=True).stdout.strip()
print(first, again, sorted(os.sched_getaffinity(0)), child, sep="|", flush=True)
sys.stdin.read()  # hold the claim until the test closes stdin or kills us
"""


def holder(name: str, **env: str) -> tuple[subprocess.Popen, list]:
    """A process that claims a CPU under `name` and keeps it; (the process, what it printed)."""
    clean = {k: v for k, v in os.environ.items() if k not in (cpus.PIN_ENV, "KUBERNETES_SERVICE_HOST")}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**clean, **env})
    first, again, mine, child = proc.stdout.readline().strip().split("|")
    return proc, [None if first == "None" else int(first), again, eval(mine), eval(child)]


def test_a_claim_pins_the_lowest_free_cpu_and_dies_with_its_holder():
    name = f"course-lab-cpu-test-{uuid.uuid4().hex}"
    a, (cpu_a, again, affinity_a, child_a) = holder(name)
    try:
        assert cpu_a == CPUS[0] and again == str(cpu_a)
        assert affinity_a == [cpu_a] and child_a == [cpu_a], "the holder and what it starts keep to its CPU"
        b, (cpu_b, _, affinity_b, _) = holder(name)
        try:
            if len(CPUS) > 1:
                assert cpu_b == CPUS[1] and affinity_b == [cpu_b], "a second worker takes the next CPU"
            else:
                assert cpu_b is None and affinity_b == CPUS, "no free CPU: left unpinned"
        finally:
            b.kill()
            b.wait()
        a.send_signal(signal.SIGKILL)  # however the holder dies, its CPU is free again
        a.wait()
        c, (cpu_c, _, _, _) = holder(name)
        c.kill()
        c.wait()
        assert cpu_c == CPUS[0]
    finally:
        a.kill()
        a.wait()
    assert sorted(os.sched_getaffinity(0)) == CPUS, "the test process itself was never pinned"


@pytest.mark.parametrize("env, pins", [({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, False),
                                       ({cpus.PIN_ENV: "0"}, False),
                                       ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", cpus.PIN_ENV: "1"}, True)])
def test_no_pinning_where_other_graders_claims_are_not_seen(env, pins):
    """In a Kubernetes pod, other pods on the node claim in network namespaces of their own."""
    proc, (cpu, _, affinity, _) = holder(f"course-lab-cpu-test-{uuid.uuid4().hex}", **env)
    proc.kill()
    proc.wait()
    assert (cpu, affinity) == ((CPUS[0], [CPUS[0]]) if pins else (None, CPUS))


def _affinity_of_worker(job):
    """Stands in for `grade_student` in the pool: where this worker may run, and which worker it is."""
    time.sleep(1.0)  # long enough that the pool starts its second worker for the second job
    return os.getpid(), sorted(os.sched_getaffinity(0))


def test_the_local_pool_pins_each_worker(monkeypatch):
    monkeypatch.setattr(autograde, "grade_student", _affinity_of_worker)
    monkeypatch.delenv(cpus.PIN_ENV, raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    results = [outcome for _, outcome in autograde._grade_locally(["a", "b"], None, 2)]
    assert len({pid for pid, _ in results}) == 2, results
    pinned = [affinity for _, affinity in results]
    if len(CPUS) > 1:
        assert sorted(pinned) == [[CPUS[0]], [CPUS[1]]], "each worker on a CPU of its own"
    else:
        assert sorted(pinned) == [CPUS, CPUS]
    assert sorted(os.sched_getaffinity(0)) == CPUS, "the TA's process is not pinned"
