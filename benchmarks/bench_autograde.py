"""Autograding throughput: `course-lab autograde` with 1 worker against N workers.

Builds `--students` submissions of the whole lab in nbgrader's layout (the release
notebooks with every answer filled in from the solutions, as the grading tests make them:
every cell runs, the slowest case), then grades the same folder
with `--workers 1` and with `--workers N` into fresh output folders, in one process, and
prints a markdown table: wall time, seconds per submission, students per minute and the
speed-up. Each run starts cold (no regrade cache) in a fresh Python process, as a TA's
`course-lab autograde` does: it pays its own imports and prepares its own nbgrader template,
which are counted in its wall time as a TA would see them (a run in this process would find
the imports of the run before it already done).

    python benchmarks/bench_autograde.py [--students 8] [--workers 2] [--timeout 60]

With `--against REV` it instead grades the same submissions twice, side by side, with
`--workers` workers (here 1 unless given): first with the grading code of git revision REV of
this repository (run from a `git archive` of it, in a subprocess), then with the working
tree's; e.g. the cost of the sandbox and the trusted checker against the grading that trusted
the kernel; `--repeats 2` adds a mirrored second round (working tree, then REV):

    python benchmarks/bench_autograde.py --students 3 --against 3bfeb2d
    python benchmarks/bench_autograde.py --students 12 --workers 2 --against f84a0c4~1 --repeats 2

With `--cluster` it grades the same submissions six times in one process: the local pool
with 1 and with N workers, then a Dask `LocalCluster` (worker processes on loopback, one
thread each, as `dask worker` runs them) with 1 and with N workers through `--scheduler`,
started cold and started as docs/grading.md starts them (`--preload
course_utils.grading.cluster`: each worker imports what grading needs before it joins);
and prints each run's wall time, the speed-up from 1 to N workers, the cluster's time
against the local pool's at equal workers, and the steady state (students per minute once
every worker grades, from one student's median seconds: what a class of hundreds sees).
The box's speed drifts by more than the effects measured, so each path's runs with 1 and N
workers are neighbours in time; `--repeats 2` adds a second round in mirrored order (ABBA),
which gives every run the same mean position in time, and reports the rounds' mean:

    python benchmarks/bench_autograde.py --cluster --students 12 --repeats 2

`--phases` adds where one student's seconds went (the first run's median per phase).
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


def run(submissions: Path, out: Path, workers: int, timeout: int, scheduler: str | None = None) -> dict:
    start = time.perf_counter()
    results = autograde(submissions, out, course_root=ROOT, workers=workers, timeout=timeout, progress=False,
                        scheduler=scheduler)
    wall = time.perf_counter() - start
    full = sum(1 for r in results if not r.lost and not r.problems)
    per_student = [r.seconds for r in results]
    phases = {k: statistics.median(r.phases.get(k, 0.0) for r in results) for k in results[0].phases}
    return {"workers": workers, "wall": wall, "students": len(results), "full_marks": full,
            "median_student": statistics.median(per_student), "max_student": max(per_student), "phases": phases}


ONE_RUN = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bench_autograde
print(json.dumps(bench_autograde.run(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                                     sys.argv[6] or None)))
"""


def run_fresh(submissions: Path, out: Path, workers: int, timeout: int, scheduler: str | None = None) -> dict:
    """`run` in a fresh Python process (see the module's docstring)."""
    proc = subprocess.run([sys.executable, "-c", ONE_RUN, str(Path(__file__).parent), str(submissions), str(out),
                           str(workers), str(timeout), scheduler or ""], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the graded run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_phases(phases: dict) -> None:
    """One student's seconds by phase: nbgrader, and per notebook its kernel's start and its cells."""
    kernel = sum(v for k, v in phases.items() if k.startswith("kernel start"))
    cells = sum(v for k, v in phases.items() if k.startswith("cells "))
    autograde_phase = phases.get("autograde", 0.0)
    rows = [("copy the template", phases.get("copy", 0.0)),
            ("kernels: sandbox, start, until the first cell (8 notebooks)", kernel),
            ("cells, all notebooks (imports, the grade profile's work, tests)", cells),
            ("nbgrader autograde itself (start, sanitize, gradebook) and the checker", autograde_phase - kernel - cells),
            ("scores and feedback clean-up", phases.get("scores", 0.0)),
            ("nbgrader generate_feedback (HTML)", phases.get("feedback", 0.0)),
            ("clean up", phases.get("cleanup", 0.0))]
    print("\n| phase (one student, median) | s |\n| --- | ---: |")
    for name, value in rows:
        print(f"| {name} | {value:.1f} |")
    print(f"| **total** | **{sum(v for _, v in rows):.1f}** |")
    per_notebook = sorted({k.split(" ", 1)[1] for k in phases if k.startswith("cells ")})
    print("\n| notebook | kernel start (s) | cells (s) |\n| --- | ---: | ---: |")
    for stem in per_notebook:
        print(f"| {stem} | {phases.get(f'kernel start {stem}', 0.0):.1f} | {phases.get(f'cells {stem}', 0.0):.1f} |")


POOL = "local pool"
COLD = "Dask LocalCluster, cold workers"
PRELOADED = "Dask LocalCluster, workers started with `--preload course_utils.grading.cluster`"
PATHS = {POOL: "pool", COLD: "cold", PRELOADED: "preloaded"}  # the rows' labels, and their short names


def _cluster_run(subs: Path, out: Path, label: str, workers: int, timeout: int) -> dict:
    """One cold run of one path: the local pool, or a fresh LocalCluster, cold or preloaded."""
    import distributed

    if label == POOL:
        return run_fresh(subs, out, workers, timeout) | {"label": label}
    # (Dask's nanny sets OMP_NUM_THREADS=1 here too; grading sets it anyway)
    preload = ["course_utils.grading.cluster"] if label == PRELOADED else []
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0", memory_limit=0, preload=preload) as local:
        return run_fresh(subs, out, workers, timeout, scheduler=local.scheduler_address) | {"label": label}


def cluster_schedule(workers: int, repeats: int) -> list[tuple[str, int]]:
    """The runs' order: each path's 1- and N-worker runs side by side, every second round mirrored.

    The box's speed drifts over minutes by more than the effect measured, so runs compared
    with each other are neighbours, and with two rounds (ABBA) every run's mean position in
    time is the same: a linear drift falls on all alike.
    """
    one_round = [(POOL, 1), (POOL, workers), (COLD, workers), (COLD, 1),
                 (PRELOADED, 1), (PRELOADED, workers)]
    return [run for i in range(repeats) for run in (one_round if i % 2 == 0 else one_round[::-1])]


def cluster(args) -> int:
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        tmp = Path(tmp)
        subs = make_submissions(tmp / "submissions", args.students)
        for i, (label, w) in enumerate(cluster_schedule(args.workers, args.repeats)):
            runs.append(_cluster_run(subs, tmp / f"out-{i}", label, w, args.timeout))
    order = ", ".join(f"{PATHS[label]} {w}" for label, w in cluster_schedule(args.workers, 1))
    rows = []
    for label in PATHS:
        for w in (1, args.workers):
            same = [r for r in runs if r["label"] == label and r["workers"] == w]
            rows.append({"label": label, "workers": w, "walls": [r["wall"] for r in same],
                         "wall": statistics.mean(r["wall"] for r in same), "students": same[0]["students"],
                         "median_student": statistics.mean(r["median_student"] for r in same),
                         "full_marks": min(r["full_marks"] for r in same), "phases": same[0]["phases"]})
    print(f"{args.students} submissions of the whole lab, every answer right; one thread per worker; "
          f"{args.repeats} round(s), in the order {order}"
          f"{' (every second round mirrored); wall and median: the rounds mean' if args.repeats > 1 else ''}. Steady "
          "state: students per minute once every worker grades (workers x 60 / one student's median seconds), "
          "without what a run pays once (the template, each worker's first student)\n")
    print("| path | workers | wall (s) | each round's wall (s) | s per submission | students per minute "
          "| speed-up from 1 worker | against the local pool at equal workers | one student, median (s) "
          "| steady state: students per minute, speed-up | full marks |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        same_path_1 = next(x for x in rows if x["label"] == r["label"] and x["workers"] == 1)
        pool = next(x for x in rows if x["label"] == POOL and x["workers"] == r["workers"])
        steady = 60 * r["workers"] / r["median_student"]
        steady_1 = 60 / same_path_1["median_student"]
        print(f"| {r['label']} | {r['workers']} | {r['wall']:.0f} | {' / '.join(f'{x:.0f}' for x in r['walls'])} | "
              f"{r['wall'] / r['students']:.1f} | {60 * r['students'] / r['wall']:.2f} | "
              f"{same_path_1['wall'] / r['wall']:.2f}× | {r['wall'] / pool['wall']:.2f}× | {r['median_student']:.1f} | "
              f"{steady:.2f}, {steady / steady_1:.2f}× | {r['full_marks']}/{r['students']} |")
    if args.phases:
        print_phases(rows[0]["phases"])
    return 0


OLD_RUN = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, "tests")
import nbformat
from grading_fixtures import release_names, solved
from course_utils.grading.autograde import autograde
submissions = Path(sys.argv[1])
for i in range(int(sys.argv[4])):  # this revision's own lab, every answer right
    target = submissions / f"s{i + 1:03d}" / "lab4"
    target.mkdir(parents=True)
    for name in release_names():
        nbformat.write(nbformat.from_dict(solved(name)), target / name)
start = time.perf_counter()
results = autograde(submissions, sys.argv[2], course_root=".", workers=int(sys.argv[5]), timeout=int(sys.argv[3]),
                    progress=False)
print(json.dumps({"wall": time.perf_counter() - start, "students": len(results),
                  "full_marks": sum(1 for r in results if not r.lost and not r.problems),
                  "per_student": [r.seconds for r in results]}))
"""


def run_revision(rev: str, students: int, out: Path, timeout: int, tmp: Path, workers: int) -> dict:
    """Grade `students` submissions of revision `rev`'s own lab (its release and solutions) with
    its grading code (its course_utils, config and test fixtures), in `tmp` (made here)."""
    old = tmp / f"rev-{rev}"
    old.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "course_utils", "solutions", "labs", "tests",
                              "nbgrader_config.py"], check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(old)
    proc = subprocess.run([sys.executable, "-c", OLD_RUN, str(tmp / f"submissions-{rev}"), str(out), str(timeout),
                           str(students), str(workers)], cwd=old,
                          env={**__import__("os").environ, "PYTHONPATH": str(old)},
                          capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"workers": workers, "wall": data["wall"], "students": data["students"], "full_marks": data["full_marks"],
            "median_student": statistics.median(data["per_student"]), "max_student": max(data["per_student"]),
            "label": f"revision {rev}"}


def compare_schedule(repeats: int) -> list[str]:
    """`--against`'s order: the revision, then the working tree; every second round mirrored (ABBA)."""
    one_round = ["revision", "working tree"]
    return [side for i in range(repeats) for side in (one_round if i % 2 == 0 else one_round[::-1])]


def compare(args) -> int:
    runs: dict[str, list[dict]] = {"revision": [], "working tree": []}
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        tmp = Path(tmp)
        subs = make_submissions(tmp / "submissions", args.students)
        for i, side in enumerate(compare_schedule(args.repeats)):
            if side == "revision":
                run_ = run_revision(args.against, args.students, tmp / f"out-{i}", args.timeout, tmp / f"run-{i}",
                                    args.workers)
            else:
                run_ = run_fresh(subs, tmp / f"out-{i}", args.workers, args.timeout)
            runs[side].append(run_)
    workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    rounds = "; two rounds, the second mirrored: wall and median are their mean" if args.repeats > 1 else ""
    print(f"{args.students} submissions of the whole lab, {workers}, each revision grading its own lab's "
          f"solutions{rounds}\n")
    print("| grading code | wall (s) | each round's wall (s) | s per submission | one student, median / max (s) "
          "| full marks | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = statistics.mean(r["wall"] for r in runs["revision"])
    for side, same in runs.items():
        label = f"revision {args.against}" if side == "revision" else side
        wall = statistics.mean(r["wall"] for r in same)
        each = " / ".join(f"{r['wall']:.0f}" for r in same)
        print(f"| {label} | {wall:.0f} | {each} | "
              f"{wall / same[0]['students']:.1f} | {statistics.mean(r['median_student'] for r in same):.1f} / "
              f"{max(r['max_student'] for r in same):.0f} | {min(r['full_marks'] for r in same)}/{same[0]['students']} "
              f"| {wall / base:.2f}× |")
    if args.phases:
        print_phases(runs["working tree"][0]["phases"])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--workers", type=int, help="workers (default: 2; with --against 1)")
    parser.add_argument("--timeout", type=int, default=60)
    parser.add_argument("--against", metavar="REV", help="compare with the grading code of this git revision")
    parser.add_argument("--cluster", action="store_true", help="local pool against a Dask LocalCluster")
    parser.add_argument("--repeats", type=int, default=1,
                        help="with --cluster or --against: rounds of runs, every second one in mirrored order")
    parser.add_argument("--phases", action="store_true", help="also print where one student's seconds went")
    args = parser.parse_args()
    args.workers = args.workers or (1 if args.against else 2)
    if args.against:
        return compare(args)
    if args.cluster:
        return cluster(args)
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        tmp = Path(tmp)
        subs = make_submissions(tmp / "submissions", args.students)
        rows = [run_fresh(subs, tmp / f"out-{i}", w, args.timeout) for i, w in enumerate((1, args.workers))]
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
