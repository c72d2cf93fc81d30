"""The round-two attack catalogue (issue 33) graded for real, with what it cost the machine.

Grades, in one `autograde` run with `--workers` workers, honest whole-lab students beside every
dishonest submission of tests/dishonest_round_two.py (the tampering answers, the hostile
markdown, the attacks on the machine), then a second run of honest students into a fresh OUT
(what a run after an attacker sees), while this process samples the grading process tree:

- the largest resident memory of any of the grader's own processes (the TA's process, the
  pool's workers, their nbgrader runs, kernel launchers; not kernels, zygotes or bubblewrap);
- the machine's memory in use (MemTotal - MemAvailable) above where it started;
- the bytes under grading's folders in /tmp (`cl-*`, `clz-*`), largest seen and left after.

It prints one markdown row per student: points, seconds, the report's problems (shortened),
and the largest feedback page. `--against REV` runs the grading code of git revision REV
instead (a `git archive` of it, as bench_autograde.py does), with this tree's submissions:

    python benchmarks/attack_catalogue.py --workers 2 --timeout 20
    python benchmarks/attack_catalogue.py --workers 2 --timeout 20 --against 1acbd7d --only spin-200 solution

The memory attacks take up to 14 GB on a grader without per-student limits: on a small machine
run them one at a time (`--workers 1 --only fork-memory`, then `--only memfd-8gb`).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from grader_watch import GraderWatch  # noqa: E402

RUN = """
import json, sys, time
from pathlib import Path
from course_utils.grading.autograde import autograde
start = time.perf_counter()
results = autograde(Path(sys.argv[1]), Path(sys.argv[2]), course_root=Path(sys.argv[3]), workers=int(sys.argv[4]),
                    timeout=int(sys.argv[5]), progress=False)
print(json.dumps({"wall": time.perf_counter() - start}))
"""


def build(folder: Path, only: list[str]) -> None:
    import dishonest_round_two as round_two
    from grading_fixtures import independent, release_names, solved, write_student

    students = {"solution": {n: solved(n) for n in release_names()},
                "independent": {n: independent(n) for n in release_names()},
                "markdown-xss": {round_two.NB00: round_two.markdown_attack()},
                **round_two.tamper_students(),
                **{s: {round_two.NB00: nb} for s, nb in round_two.machine_students().items()}}
    for student, notebooks in students.items():
        if not only or student in only:
            write_student(folder, student, notebooks)


def honest(folder: Path, count: int) -> None:
    import dishonest_round_two as round_two
    from grading_fixtures import solved, write_student

    for i in range(count):
        write_student(folder, f"next{i}", {round_two.NB00: solved(round_two.NB00)})


def _used() -> int:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024


def _tmp_bytes(limit: int = 200_000) -> int:
    """Bytes of the files under grading's folders in /tmp (a walk without recursion: a student's
    tree may be deeper than Python's limit, and longer than a path may be)."""
    total, seen = 0, 0
    stack = [str(p) for p in Path("/tmp").iterdir() if p.name.startswith(("cl-", "clz-"))]
    while stack and seen < limit:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
    return total


class Sampler(GraderWatch):
    """GraderWatch (the grader's largest process), and the machine's memory in use above where it
    started, and the bytes in grading's folders in /tmp."""

    def __init__(self, root: int):
        super().__init__(interval=0.5, root=root)
        self.base, self.used, self.tmp, self._ticks = _used(), 0, 0, 0

    def _sample(self) -> None:
        super()._sample()
        self.used = max(self.used, _used() - self.base)
        self._ticks += 1
        if self._ticks % 4 == 0:
            self.tmp = max(self.tmp, _tmp_bytes())


def grade(code_root: Path, submissions: Path, out: Path, workers: int, timeout: int, env: dict) -> dict:
    process = subprocess.Popen([sys.executable, "-c", RUN, str(submissions), str(out), str(code_root), str(workers),
                                str(timeout)], cwd=code_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    with Sampler(process.pid) as sampler:
        stdout, stderr = process.communicate()
    grader_rss, grader_command = sampler.largest()
    if process.returncode != 0:
        raise RuntimeError(stderr[-3000:])
    report = (out / "report.txt").read_text(errors="replace")
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    students = {}
    for sid, row in rows.items():
        block = re.search(rf"^{re.escape(sid)}: .*?\((\d+) s\)\n((?:    .*\n)*)", report, re.M)
        problems = [p.strip()[2:] for p in (block.group(2).splitlines() if block else [])
                    if p.strip().startswith("!") and "is missing" not in p]
        pages = list((out / "feedback" / sid).glob("*.html"))
        students[sid] = {"points": row["score"], "seconds": int(block.group(1)) if block else None,
                         "problems": problems, "page": max((p.stat().st_size for p in pages), default=0)}
    return {"wall": json.loads(stdout.strip().splitlines()[-1])["wall"], "students": students,
            "grader_rss": grader_rss, "grader_command": grader_command, "machine": sampler.used,
            "tmp_peak": sampler.tmp, "tmp_left": _tmp_bytes()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=20)
    parser.add_argument("--against", metavar="REV", help="grade with the grading code of this git revision")
    parser.add_argument("--only", nargs="*", default=[], metavar="STUDENT", help="only these students")
    parser.add_argument("--then-honest", type=int, default=6, metavar="N",
                        help="then grade N honest students in a fresh run (default 6; 0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="attack-catalogue-") as tmp:
        tmp = Path(tmp)
        code_root, env = ROOT, dict(os.environ)
        if args.against:
            code_root = tmp / "rev"
            code_root.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.against, "course_utils", "solutions",
                                      "labs", "tests", "nbgrader_config.py"], check=True, capture_output=True).stdout
            tarfile.open(fileobj=io.BytesIO(archive)).extractall(code_root)
            env["PYTHONPATH"] = str(code_root)
        build(tmp / "submissions", args.only)
        first = grade(code_root, tmp / "submissions", tmp / "out", args.workers, args.timeout, env)
        label = f"revision {args.against}" if args.against else "working tree"
        print(f"\n{label}, {args.workers} workers, --timeout {args.timeout}: {first['wall']:.0f} s; largest grader "
              f"process {first['grader_rss'] / 2**30:.2f} GB ({first['grader_command']}); machine memory in use "
              f"+{first['machine'] / 2**30:.1f} GB at most; grading's folders in /tmp {first['tmp_peak'] / 2**20:.0f} MB "
              f"at most, {first['tmp_left'] / 2**20:.0f} MB left after\n")
        print("| student | points | s | largest page (MB) | problems |\n| --- | ---: | ---: | ---: | --- |")
        for sid, r in sorted(first["students"].items()):
            problems = "; ".join(p[:90] for p in r["problems"] if not p.startswith("suspicious:"))[:240]
            print(f"| {sid} | {r['points']} | {r['seconds']} | {r['page'] / 2**20:.2f} | {problems} |")
        if args.then_honest:
            honest(tmp / "next", args.then_honest)
            second = grade(code_root, tmp / "next", tmp / "out-next", args.workers, args.timeout, env)
            full = sum(1 for r in second["students"].values() if r["points"] == "2")
            failed = [r["problems"] for r in second["students"].values() if r["points"] != "2"]
            print(f"\nthe next run: {full} of {args.then_honest} honest students got their 2 points"
                  + (f"; the others: {failed[:2]}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
