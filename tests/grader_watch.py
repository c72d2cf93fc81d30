"""What the grader's own processes take while a grading run goes on (issue 33).

`GraderWatch` samples, in a thread, the resident memory of every descendant of a process (this
one by default) that is the grader's: the TA's process itself, the pool's workers, their
nbgrader forks and the kernel launchers, the processes a student's output, files or sockets
could bloat. A student's own processes (in a `course-lab-*/<student>` cgroup) are not the
grader's, nor are kernels, zygotes and bubblewrap (where a grader without cgroups runs them,
`benchmarks/attack_catalogue.py` tells them by their command line).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path


def _status(pid: str) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


EXCLUDED = ("bwrap", "grading.zygote", "ipykernel")  # the students' processes and the kernels' template


def _in_student_group(pid: str) -> bool:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return True
    for line in lines:
        path = line.split(":", 2)[-1]
        parts = path.split("/")
        for i, part in enumerate(parts[:-1]):
            if part.startswith("course-lab-") and part[len("course-lab-"):].isdigit():
                return True  # a folder below a run's folder: a student's group
    return False


def is_graders(pid: str) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return not any(word in command for word in EXCLUDED) and not _in_student_group(pid)


class GraderWatch:
    def __init__(self, interval: float = 0.3, root: int | None = None):
        self.interval, self.root = interval, str(root or os.getpid())
        self.peaks: dict[str, tuple[int, str]] = {}  # pid -> (peak resident bytes, command)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _descendants(self) -> list[str]:
        parents = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            ppid = _status(pid).get("PPid", "").strip()
            if ppid:
                parents[pid] = ppid
        found, frontier = [self.root], {self.root}
        while frontier:
            frontier = {pid for pid, ppid in parents.items() if ppid in frontier}
            found += sorted(frontier)
        return found

    def _sample(self) -> None:
        for pid in self._descendants():
            if not is_graders(pid):
                continue
            rss = _status(pid).get("VmRSS", "0 kB").split()[0]
            rss_bytes = int(rss) * 1024 if rss.isdigit() else 0
            if rss_bytes > self.peaks.get(pid, (0, ""))[0]:
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    command = "?"
                self.peaks[pid] = (rss_bytes, command[:160])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "GraderWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def largest(self) -> tuple[int, str]:
        return max(self.peaks.values(), default=(0, ""))
