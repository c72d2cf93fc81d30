"""Where a student's seconds go when both cores grade: CPU time per student with 1 and 2 workers.

Grades the same `--students` whole-lab submissions with the local pool in the order 1, 2, 2, 1
workers (each run cold, in a fresh process, as `bench_autograde.py` runs it) and reads the
box's `/proc/stat` before and after each run: user, system, idle and stolen CPU seconds per
student, and the cores the run kept busy (user and system seconds over the wall). More user
time per student with two workers means the same work runs slower on both cores at once
(shared cache, memory, host); more idle means waiting; more than one core busy with one
worker is work beside the student's chain that two workers on two cores cannot overlap.

`--by-process` also reads every process of the graded run from `/proc` every 0.1 s
and adds, per run, their CPU seconds and minor page faults per student by role: the TA's
process (template, results), the pool's workers and the template's nbgrader, the nbgrader
runs (autograde with the checker, feedback), the kernels' launchers, the zygotes (their
imports) and the kernels (the student's cells). A process's last tenth of a second, and a
process shorter than that, are not seen; the "seen" row says how much of the box's CPU time
the roles cover. The sampling itself takes a few percent of a core.

    python benchmarks/bench_cpu_per_student.py [--students 4] [--by-process]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_autograde  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("TA (template, results)", "pool workers, the template's nbgrader", "nbgrader runs (autograde + checker, "
         "feedback)", "kernel launchers", "zygotes (imports)", "kernels (the student's cells)", "bubblewrap, others")


def cpu_seconds() -> dict[str, float]:
    """The box's CPU time so far, from /proc/stat's first line (all cores)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    ticks = {"user": user + nice, "system": system + irq + softirq, "idle": idle + iowait, "steal": steal}
    return {k: v / TICKS for k, v in ticks.items()}


class ProcessSampler:
    """Every process, read from /proc every `interval` seconds in a thread: per process (its
    PID and start time), its parent, command line, and its user and system seconds and minor
    page faults (all its threads) as last seen."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval, self.processes, self._stop = interval, {}, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ProcessSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:  # the process's line counts its threads, the finished ones too
                with open(f"/proc/{pid}/stat", "rb") as f:
                    line = f.read()
            except OSError:  # gone meanwhile: what was seen of it stays
                continue
            fields = line[line.rindex(b")") + 2:].split()
            key = (int(pid), int(fields[19]))  # (PID, start time): a PID used twice is two processes
            seen = self.processes.get(key)
            if seen is None:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    continue
                seen = self.processes[key] = {"ppid": int(fields[1]), "command": command}
            seen.update(user=int(fields[11]) / TICKS, system=int(fields[12]) / TICKS, faults=int(fields[7]))


def roles(processes: dict, root: int) -> dict[str, dict[str, float]]:
    """CPU seconds and minor page faults of `root` (the graded run's process) and its
    descendants, by role (`ROLES`), from `ProcessSampler.processes`."""
    by_pid = {pid: p for (pid, _), p in processes.items()}  # (a PID reused within a run: the last)
    totals = {role: {"user": 0.0, "system": 0.0, "faults": 0} for role in ROLES}
    top = by_pid.get(root, {}).get("command")
    for (pid, _), p in processes.items():
        chain, parent = [p], by_pid.get(p["ppid"])
        while chain[-1] is not by_pid.get(root) and parent is not None and len(chain) < 64:
            chain.append(parent)
            parent = by_pid.get(parent["ppid"])
        if chain[-1] is not by_pid.get(root):
            continue  # not the graded run's
        if pid == root:
            role = ROLES[0]
        elif p["command"] == top:
            role = ROLES[1] if p["ppid"] == root else ROLES[2]
        elif _runs(p["command"], "course_utils.grading.sandbox"):
            role = ROLES[3]
        elif _runs(p["command"], "course_utils.grading.zygote"):
            role = ROLES[5] if _runs(by_pid.get(p["ppid"], {}).get("command", ""), "course_utils.grading.zygote") \
                else ROLES[4]
        else:
            role = ROLES[6]
        for k in totals[role]:
            totals[role][k] += p.get(k, 0)
    return totals


def _runs(command: str, module: str) -> bool:
    """Whether `command` is Python running `module` (not bubblewrap, whose command line holds the
    command it starts)."""
    words = command.split()
    return len(words) > 2 and "python" in os.path.basename(words[0]) and words[1:3] == ["-m", module]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--timeout", type=int, default=60)
    parser.add_argument("--by-process", action="store_true", help="also CPU seconds per student by process role")
    args = parser.parse_args()
    print("| workers | wall (s) | one student, median (s) | user CPU per student (s) | system (s) | idle (s) "
          "| steal (s) | cores busy |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    by_process = []
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        tmp = Path(tmp)
        subs = bench_autograde.make_submissions(tmp / "submissions", args.students)
        for i, workers in enumerate((1, 2, 2, 1)):
            sampler = ProcessSampler() if args.by_process else None
            before = cpu_seconds()
            if sampler is not None:
                with sampler:
                    run = bench_autograde.run_fresh(subs, tmp / f"out-{i}", workers, args.timeout)
            else:
                run = bench_autograde.run_fresh(subs, tmp / f"out-{i}", workers, args.timeout)
            after = cpu_seconds()
            per = {k: (after[k] - before[k]) / run["students"] for k in before}
            busy = (per["user"] + per["system"]) * run["students"] / run["wall"]
            print(f"| {workers} | {run['wall']:.0f} | {run['median_student']:.1f} | {per['user']:.1f} | "
                  f"{per['system']:.1f} | {per['idle']:.1f} | {per['steal']:.2f} | {busy:.2f} |", flush=True)
            if sampler is not None:
                root = next(pid for (pid, _), p in sampler.processes.items()
                            if p["ppid"] == os.getpid() and "bench_autograde" in p["command"])
                by_process.append((workers, run, per, roles(sampler.processes, root)))
    if by_process:
        print_roles(by_process)
    return 0


def print_roles(runs: list) -> None:
    """Per role, each run's CPU seconds per student (user + system) and its page faults."""
    print("\nCPU seconds per student (user + system), by process; page faults per student in thousands")
    heads = " | ".join(f"{w} worker{'s' if w > 1 else ''}, run {i + 1}" for i, (w, *_) in enumerate(runs))
    print(f"| role | {heads} |\n| --- |" + " ---: |" * len(runs))
    for role in ROLES:
        cells = [f"{(t[role]['user'] + t[role]['system']) / run['students']:.2f} "
                 f"({t[role]['faults'] / run['students'] / 1000:.0f}k)" for _, run, _, t in runs]
        print(f"| {role} | " + " | ".join(cells) + " |")
    seen = [sum(r["user"] + r["system"] for r in t.values()) / run["students"] for _, run, _, t in runs]
    box = [per["user"] + per["system"] for _, _, per, _ in runs]
    print("| seen, of the box's CPU per student | " + " | ".join(f"{s:.1f} of {b:.1f}" for s, b in zip(seen, box)) + " |")


if __name__ == "__main__":
    sys.exit(main())
