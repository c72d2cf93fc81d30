"""Each grading worker on a CPU of its own.

A worker's student is a chain of processes that hand work to each other (nbgrader, the
checker, the kernels' launchers, the kernels). With two workers on two CPUs, the scheduler
moved those processes between the CPUs, and a student graded 15% slower than with each
worker kept to one CPU; one worker kept to one CPU graded as fast as one free to use both
(docs/performance.md, the twelfth round). So a grading worker, local or on a Dask machine,
claims when it starts the lowest-numbered CPU it may run on that no other worker on this
machine holds, and keeps to it; everything it starts (nbgrader, the zygote, the sandboxed
kernels) inherits that. With more workers than CPUs, the ones that find no free CPU are
left where the scheduler puts them.

A claim is a Unix socket bound to a name per CPU in Linux's abstract namespace, which the
kernel frees when the last process holding the socket exits, however it exits: no file to
clean up, no claim outlives a killed worker. The names are per network namespace, so a
student's sandbox (a network namespace of its own) cannot hold one. Another user of the
machine could hold them all: the workers are then left unpinned, which costs time, not
correctness.

Per network namespace also means that graders in different containers on one machine do
not see each other's claims, and would pin to the same CPUs. So there is no pinning in a
Kubernetes pod (every pod has a network namespace of its own, and without the kubelet's
static CPU manager a pod may run on every CPU of its node), and `COURSE_LAB_PIN_CPUS=0`
turns it off anywhere else that is so (`=1` turns it on in a pod whose CPUs are its own).
"""
from __future__ import annotations

import os
import socket

NAME = "course-lab-cpu"
PIN_ENV = "COURSE_LAB_PIN_CPUS"
_claimed: list[tuple[int, socket.socket]] = []  # this process's claim, kept open for its life


def claim(name: str = NAME) -> int | None:
    """Keep this process (and what it starts) to a free CPU; which one, or None (none was free,
    or no pinning here: `enabled`).

    Called once in each grading worker when it starts (`autograde._grade_locally`'s pool,
    `cluster._helper`), never in the TA's own process, which would pin everything it forks."""
    if _claimed:
        return _claimed[0][0]
    if not enabled():
        return None
    for cpu in sorted(os.sched_getaffinity(0)):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(f"\0{name}-{cpu}")
        except OSError:  # held by another worker
            sock.close()
            continue
        os.sched_setaffinity(0, {cpu})
        _claimed.append((cpu, sock))
        return cpu
    return None


def enabled() -> bool:
    """Whether workers here pin themselves: `COURSE_LAB_PIN_CPUS` (0 or 1) if set, else
    everywhere but in a Kubernetes pod (see the module's docstring)."""
    setting = os.environ.get(PIN_ENV, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    return "KUBERNETES_SERVICE_HOST" not in os.environ
