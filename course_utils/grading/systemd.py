"""`course-lab autograde` in a cgroup of its own, on a systemd host (cgroup v2).

On cgroup v2 a process may make cgroups only in a cgroup delegated to it, and only if nothing
else lives there: a TA's shell session is neither. systemd makes one on request: `systemd-run
--user --scope -p Delegate=yes COMMAND` (without `--user` as root) runs COMMAND in a new scope
that belongs to it, with the memory, cpu and pids controllers of the user's manager (systemd
delegates them to user sessions since version 244 for cpu, earlier for the others). The
command line starts itself again that way when its own cgroup will not do.
"""
from __future__ import annotations

import os
import shutil
import sys

MARK = "COURSE_LAB_IN_SCOPE"  # set in the scope, so that a scope that does not help is not entered twice


def delegated_or_none(argv: list[str]) -> list[str] | None:
    """The command that runs `course-lab` again in a delegated scope, or None: not cgroup v2, its own
    cgroup will do, no systemd-run, or already in the scope (then grading says what is missing)."""
    from .cgroups import unified_own, v2_problem

    found = unified_own()
    if found is None or os.environ.get(MARK) or v2_problem(*found) is None:
        return None
    runner = shutil.which("systemd-run")
    if runner is None or not os.path.isdir("/run/systemd/system"):  # (systemd is not this machine's init)
        return None
    os.environ[MARK] = "1"
    user = [] if os.geteuid() == 0 else ["--user"]
    return [runner, *user, "--scope", "--quiet", "--collect", "-p", "Delegate=yes", "--",
            sys.executable, "-m", "course_utils.cli", *argv[1:]]
