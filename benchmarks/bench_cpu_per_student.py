"""Where a student's seconds go when both cores grade: CPU time per student with 1 and 2 workers.

Grades the same `--students` whole-lab submissions with the local pool in the order 1, 2, 2, 1
workers (each run cold, in a fresh process, as `bench_autograde.py` runs it) and reads the
box's `/proc/stat` before and after each run: user, system, idle and stolen CPU seconds per
student, and the cores the run kept busy (user and system seconds over the wall). More user
time per student with two workers means the same work runs slower on both cores at once
(shared cache, memory, host); more idle means waiting; more than one core busy with one
worker is work beside the student's chain that two workers on two cores cannot overlap.

    python benchmarks/bench_cpu_per_student.py [--students 4]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_autograde  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[str, float]:
    """The box's CPU time so far, from /proc/stat's first line (all cores)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    ticks = {"user": user + nice, "system": system + irq + softirq, "idle": idle + iowait, "steal": steal}
    return {k: v / TICKS for k, v in ticks.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--timeout", type=int, default=60)
    args = parser.parse_args()
    print("| workers | wall (s) | one student, median (s) | user CPU per student (s) | system (s) | idle (s) "
          "| steal (s) | cores busy |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        tmp = Path(tmp)
        subs = bench_autograde.make_submissions(tmp / "submissions", args.students)
        for i, workers in enumerate((1, 2, 2, 1)):
            before = cpu_seconds()
            run = bench_autograde.run_fresh(subs, tmp / f"out-{i}", workers, args.timeout)
            after = cpu_seconds()
            per = {k: (after[k] - before[k]) / run["students"] for k in before}
            busy = (per["user"] + per["system"]) * run["students"] / run["wall"]
            print(f"| {workers} | {run['wall']:.0f} | {run['median_student']:.1f} | {per['user']:.1f} | "
                  f"{per['system']:.1f} | {per['idle']:.1f} | {per['steal']:.2f} | {busy:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
