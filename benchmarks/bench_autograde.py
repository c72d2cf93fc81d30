"""Autograding throughput: `course-lab autograde` with 1 worker against N workers.

Builds `--students` submissions of the whole lab in nbgrader's layout (the release
notebooks with every answer filled in from the solutions, as the grading tests make them:
every cell runs, the slowest case), then grades the same folder
with `--workers 1` and with `--workers N` into fresh output folders, in one process, and
prints a markdown table: wall time, seconds per submission, students per minute and the
speed-up. Each run starts cold (no regrade cache), and each prepares its own nbgrader
template, which is counted in its wall time as a TA would see it.

    python benchmarks/bench_autograde.py [--students 8] [--workers 2] [--timeout 60]

With `--against REV` it instead grades the same submissions with one worker twice, side by
side: first with the grading code of git revision REV of this repository (run from a
`git archive` of it, in a subprocess), then with the working tree's; e.g. the cost of the
sandbox and the trusted checker against the grading that trusted the kernel:

    python benchmarks/bench_autograde.py --students 3 --against 3bfeb2d
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout without installing

import nbformat  # noqa: E402
from grading_fixtures import release_names, solved  # noqa: E402

from course_utils.grading.autograde import ASSIGNMENT, autograde  # noqa: E402


def make_submissions(folder: Path, students: int) -> Path:
    """`students` full submissions (every answer right) in nbgrader's layout."""
    notebooks = {name: nbformat.from_dict(solved(name)) for name in release_names()}
    for i in range(students):
        target = folder / f"s{i + 1:03d}" / ASSIGNMENT
        target.mkdir(parents=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, target / name)
    return folder


def run(submissions: Path, out: Path, workers: int, timeout: int) -> dict:
    start = time.perf_counter()
    results = autograde(submissions, out, course_root=ROOT, workers=workers, timeout=timeout, progress=False)
    wall = time.perf_counter() - start
    full = sum(1 for r in results if not r.lost and not r.problems)
    per_student = [r.seconds for r in results]
    return {"workers": workers, "wall": wall, "students": len(results), "full_marks": full,
            "median_student": statistics.median(per_student), "max_student": max(per_student)}


OLD_RUN = """
import json, sys, time
from course_utils.grading.autograde import autograde
start = time.perf_counter()
results = autograde(sys.argv[1], sys.argv[2], course_root=".", workers=1, timeout=int(sys.argv[3]), progress=False)
print(json.dumps({"wall": time.perf_counter() - start, "students": len(results),
                  "full_marks": sum(1 for r in results if not r.lost and not r.problems),
                  "per_student": [r.seconds for r in results]}))
"""


def run_revision(rev: str, submissions: Path, out: Path, timeout: int, tmp: Path) -> dict:
    """Grade with the grading code of git revision `rev` (its course_utils, solutions, config)."""
    old = tmp / f"rev-{rev}"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "course_utils", "solutions", "nbgrader_config.py"],
                             check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(old)
    proc = subprocess.run([sys.executable, "-c", OLD_RUN, str(submissions), str(out), str(timeout)], cwd=old,
                          env={**__import__("os").environ, "PYTHONPATH": str(old)}, capture_output=True, text=True,
                          check=True)
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"workers": 1, "wall": data["wall"], "students": data["students"], "full_marks": data["full_marks"],
            "median_student": statistics.median(data["per_student"]), "max_student": max(data["per_student"]),
            "label": f"revision {rev}"}


def compare(args) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        tmp = Path(tmp)
        subs = make_submissions(tmp / "submissions", args.students)
        before = run_revision(args.against, subs, tmp / "out-before", args.timeout, tmp)
        after = run(subs, tmp / "out-after", 1, args.timeout) | {"label": "working tree"}
    print(f"{args.students} submissions of the whole lab, one worker, the same folder graded by both\n")
    print("| grading code | wall (s) | s per submission | one student, median / max (s) | full marks | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in (before, after):
        print(f"| {r['label']} | {r['wall']:.0f} | {r['wall'] / r['students']:.1f} | {r['median_student']:.0f} / "
              f"{r['max_student']:.0f} | {r['full_marks']}/{r['students']} | {r['wall'] / before['wall']:.2f}× |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=60)
    parser.add_argument("--against", metavar="REV", help="compare with the grading code of this git revision")
    args = parser.parse_args()
    if args.against:
        return compare(args)
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        tmp = Path(tmp)
        subs = make_submissions(tmp / "submissions", args.students)
        rows = [run(subs, tmp / f"out-{i}", w, args.timeout) for i, w in enumerate((1, args.workers))]
    base = rows[0]["wall"]
    print(f"{args.students} submissions of the whole lab ({len(release_names())} notebooks each, every answer right)\n")
    print("| workers | wall (s) | s per submission (wall / students) | one student's grading, median / max (s) "
          "| students per minute | speed-up | full marks |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['workers']} | {r['wall']:.0f} | {r['wall'] / r['students']:.1f} | "
              f"{r['median_student']:.0f} / {r['max_student']:.0f} | {60 * r['students'] / r['wall']:.2f} | "
              f"{base / r['wall']:.2f}× | {r['full_marks']}/{r['students']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
