"""Where a student's seconds go when both cores grade: CPU time per student with 1 and 2 workers.

Grades the same `--students` whole-lab submissions with the local pool in the order 1, 2, 2, 1
workers (each run cold, in a fresh process, as `bench_autograde.py` runs it) and reads the
box's `/proc/stat` before and after each run: user, system, idle and stolen CPU seconds per
student, and the cores the run kept busy (user and system seconds over the wall). More user
time per student with two workers means the same work runs slower on both cores at once
(shared cache, memory, host); more idle means waiting; more than one core busy with one
worker is work beside the student's chain that two workers on two cores cannot overlap.

`--by-process` also reads every process of the graded run from `/proc` every 0.1 s
and adds, per run, their CPU seconds and minor page faults per student by role (`ROLES`):
the TA's process (template, results), the pool's workers and the template's nbgrader, the
nbgrader runs (autograde with the checker, feedback), the kernels' launchers, the zygotes
(their imports) and the kernels (their start and the student's cells). A process's last
tenth of a second, and a process shorter than that, are not seen; the "seen" row says how
much of the box's CPU time the roles cover, the "sampler" row what the reading cost. The
roles follow the command lines: a pool worker is a fork of the TA's process (the `fork`
start method, Linux's default before Python 3.14).

    python benchmarks/bench_cpu_per_student.py [--students 4] [--by-process]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_autograde  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
ROLES = {"ta": "TA's process (template, results)",
         "workers": "pool workers, the template's nbgrader",
         "nbgrader": "nbgrader runs (autograde + checker, feedback)",
         "launchers": "kernel launchers",
         "zygotes": "zygotes (imports)",
         "kernels": "kernels (start, the student's cells)",
         "others": "bubblewrap, others"}


def cpu_seconds() -> dict[str, float]:
    """The box's CPU time so far, from /proc/stat's first line (all cores)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    ticks = {"user": user + nice, "system": system + irq + softirq, "idle": idle + iowait, "steal": steal}
    return {k: v / TICKS for k, v in ticks.items()}


class ProcessSampler:
    """Every process, read from /proc every `interval` seconds in a thread: per process (its
    PID and start time), its parent, command line, and its user and system seconds and minor
    page faults (all its threads) as last seen; `own` is the reading's own CPU seconds."""

    def __init__(self, interval: float = 0.1, proc: str = "/proc") -> None:
        self.interval, self.proc, self.processes, self.own = interval, proc, {}, 0.0
        self._stop, self._error = threading.Event(), None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ProcessSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._error is not None:  # totals from a sampler that died would be silently low
            raise RuntimeError("the /proc sampler failed") from self._error

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)
        except BaseException as err:
            self._error = err
        finally:
            self.own = time.thread_time()

    def sample(self) -> None:
        for pid in filter(str.isdigit, os.listdir(self.proc)):
            try:  # the process's line counts its threads, the finished ones too
                with open(f"{self.proc}/{pid}/stat", "rb") as f:
                    line = f.read()
            except OSError:  # gone meanwhile: what was seen of it stays
                continue
            if b")" not in line:
                continue
            name, fields = line[line.index(b"(") + 1:line.rindex(b")")], line[line.rindex(b")") + 2:].split()
            key = (int(pid), int(fields[19]))  # (PID, start time): a PID used twice is two processes
            seen = self.processes.setdefault(key, {"ppid": int(fields[1]), "command": "", "name": None, "reads": 0})
            # a fork may be seen before it execs: its command line is read again while it is young
            # (its first three reads) and whenever its name changes
            if seen["reads"] < 3 or seen["name"] != name or not seen["command"]:
                try:
                    with open(f"{self.proc}/{pid}/cmdline", "rb") as f:
                        seen["command"] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    pass
                seen["name"] = name
            seen["reads"] += 1
            seen.update(user=int(fields[11]) / TICKS, system=int(fields[12]) / TICKS, faults=int(fields[7]))


def roles(processes: dict, root: int) -> dict[str, dict[str, float]]:
    """CPU seconds and minor page faults of `root` (the graded run's process) and its
    descendants, by role (the keys of `ROLES`), from `ProcessSampler.processes`."""
    by_pid: dict[int, list[dict]] = {}
    for (pid, start), p in sorted(processes.items(), key=lambda item: item[0][1]):
        by_pid.setdefault(pid, []).append({**p, "pid": pid, "start": start})

    def parent(p: dict) -> dict | None:  # the process that had the parent's PID when `p` started
        earlier = [q for q in by_pid.get(p["ppid"], []) if q["start"] <= p["start"]]
        return earlier[-1] if earlier else None

    totals = {role: {"user": 0.0, "system": 0.0, "faults": 0} for role in ROLES}
    for group in by_pid.values():
        for p in group:
            chain = [p]
            while chain[-1]["pid"] != root and len(chain) < 64 and (up := parent(chain[-1])) is not None:
                chain.append(up)
            if chain[-1]["pid"] != root:
                continue  # not the graded run's
            up = chain[1] if len(chain) > 1 else None
            if p["pid"] == root:
                role = "ta"
            elif p["command"] == chain[-1]["command"]:
                role = "workers" if p["ppid"] == root else "nbgrader"
            elif _runs(p["command"], "course_utils.grading.launcher") or _runs(p["command"], "course_utils.grading.sandbox"):
                role = "launchers"  # (the launcher's module before it moved out of sandbox.py)
            elif _runs(p["command"], "course_utils.grading.zygote"):
                role = "kernels" if up and _runs(up["command"], "course_utils.grading.zygote") else "zygotes"
            else:
                role = "others"
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
            with sampler or contextlib.nullcontext():
                run = bench_autograde.run_fresh(subs, tmp / f"out-{i}", workers, args.timeout)
            after = cpu_seconds()
            per = {k: (after[k] - before[k]) / run["students"] for k in before}
            busy = (per["user"] + per["system"]) * run["students"] / run["wall"]
            print(f"| {workers} | {run['wall']:.0f} | {run['median_student']:.1f} | {per['user']:.1f} | "
                  f"{per['system']:.1f} | {per['idle']:.1f} | {per['steal']:.2f} | {busy:.2f} |", flush=True)
            if sampler is not None:
                root = next(pid for (pid, _), p in sampler.processes.items()
                            if p["ppid"] == os.getpid() and "bench_autograde" in p["command"])
                by_process.append({"workers": workers, "students": run["students"], "box": per,
                                   "roles": roles(sampler.processes, root), "own": sampler.own})
    if by_process:
        print_roles(by_process)
    return 0


def print_roles(runs: list[dict]) -> None:
    """Per role, each run's CPU seconds per student (user + system) and its page faults."""
    print("\nCPU seconds per student (user + system), by process; page faults per student in thousands")
    heads = " | ".join(f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}, run {i + 1}" for i, r in enumerate(runs))
    print(f"| role | {heads} |\n| --- |" + " ---: |" * len(runs))

    def row(label: str, cells) -> None:
        print(f"| {label} | " + " | ".join(cells) + " |")

    for role, label in ROLES.items():
        row(label, (f"{(r['roles'][role]['user'] + r['roles'][role]['system']) / r['students']:.2f} "
                    f"({r['roles'][role]['faults'] / r['students'] / 1000:.0f}k)" for r in runs))
    row("seen, of the box's CPU per student",
        (f"{sum(t['user'] + t['system'] for t in r['roles'].values()) / r['students']:.1f} of "
         f"{r['box']['user'] + r['box']['system']:.1f}" for r in runs))
    row("the sampler's own CPU per student", (f"{r['own'] / r['students']:.2f}" for r in runs))


if __name__ == "__main__":
    sys.exit(main())
