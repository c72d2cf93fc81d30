"""Autograding a class with nbgrader: one course folder and gradebook per student.

nbgrader grades one submission after another and its SQLite gradebook takes no concurrent
writers, so each student is graded in a copy of a prepared course folder (`template.py`) by
a job that any `concurrent.futures.Executor` can run (`student.grade_student`): a local
process pool by default, or the workers of a Dask cluster when a course outgrows one machine
(`cluster.py`, which sends the template once and gets the feedback back as data). The results
are merged into `grades.csv`, per-student feedback and `report.txt`.

Trust (docs/grading.md): nbgrader and the checker run as the TA; the student's kernel runs in
a bubblewrap sandbox (`sandbox.py`) and can reach nothing but its own scratch space and the
checker's socket. A test cell's points need the trusted checker's verdict (`checker.py`),
and are read outside the sandbox (`scores.py`). Each student's processes share one cgroup
(`cgroups.py`), one time budget and one small IPC tmpfs (`student.py`).

Robustness: each cell has a time limit (nbgrader interrupts it and goes on), the student a
time budget; if a kernel dies (os._exit, a segfault, its memory) nbgrader drops the whole
assignment, so that student is graded again notebook by notebook, within what is left of the
budget, and only the notebook that killed its kernel scores 0.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from . import cgroups, class_report, course_folder, flags, mounts, sandbox, similarity, template as course_template
from .safe_text import printable, spreadsheet_cell
from .student import ASSIGNMENT, GradingJob, StudentResult, grade_student, run_nbgrader, worker_setup
from .submissions import Submission, read_submissions

NO_LIMITS_WARNING = ("WARNING: NO LIMITS PER STUDENT (--no-limits): one student's processes could take the memory and "
                     "CPU of the machine, and delay or fail their classmates' grading")


def prepare_template(course_root: str | Path, template: str | Path) -> Path:
    """A course folder with the solutions and a gradebook that knows every grade cell."""
    course_root, template = Path(course_root).resolve(), Path(template)
    template.mkdir(parents=True, exist_ok=True)
    shutil.copy(course_root / "nbgrader_config.py", template / "nbgrader_config.py")
    shutil.copytree(course_root / "solutions" / ASSIGNMENT, template / "solutions" / ASSIGNMENT, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    code, log = run_nbgrader(template, ["generate_assignment", ASSIGNMENT, "--force",
                                     f"--CourseDirectory.release_directory={template / 'release'}"], timeout=600)
    if code != 0 or not (template / "gradebook.db").exists():
        raise RuntimeError(f"nbgrader generate_assignment failed in {template}:\n{log[-3000:]}")
    course_template.finish_template(course_root, template)
    return template


def written_points(template: str | Path) -> float:
    """The points of written answers (graded by hand in formgrader)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{Path(template) / 'gradebook.db'}") as gb:
        return float(sum(nb.max_written_score for nb in gb.find_assignment(ASSIGNMENT).notebooks))


def _template_digest(course_root: Path, timeout: int, memory_limit_gb: float, isolate: bool) -> str:
    h = hashlib.sha256(f"{timeout}/{memory_limit_gb}/{isolate}".encode())
    checks = sorted((course_root / "course_utils" / "checks").glob("*.py"))
    for p in sorted((course_root / "solutions" / ASSIGNMENT).glob("*.ipynb")) + [course_root / "nbgrader_config.py"] \
            + checks:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def autograde(submissions: str | Path, out: str | Path, *, course_root: str | Path = ".", workers: int = 1,
              timeout: int = 60, memory_limit_gb: float = 6.0, id_pattern: str | None = None,
              executor: concurrent.futures.Executor | None = None, progress: bool = True,
              sandboxed: bool = True, scheduler: str | None = None, limits: bool = True,
              budget: int = 0, security=None, insecure_scheduler: bool = False, only: list[str] | None = None,
              remove: list[str] | None = None) -> list[StudentResult]:
    """Grade every submission under `submissions`; write grades.csv, feedback/ and report.txt to `out`.

    Every kernel runs in a bubblewrap sandbox; without bubblewrap this refuses to grade
    (`SandboxUnavailable`) unless `sandboxed=False` (`--no-sandbox`). Every student's processes
    share one cgroup; without cgroups this refuses (`cgroups.LimitsUnavailable`) unless
    `limits=False` (`--no-limits`). The report's first lines say when either was waived.
    `budget`: seconds for one student's whole grading (0: from `timeout` and the number of
    notebooks, `student.student_budget`).

    `out` keeps the class: students whose submission (and the lab's solutions and checks) did not
    change since the last run into the same `out` are not graded again, and students graded
    before whose submission is not under `submissions` keep their results (a late zip graded
    alone joins the class). `only`: grade just these students again, changed or not, and leave
    everyone else as they are; `remove`: take these students out of `out`. `out` is also the
    class's nbgrader course folder (`course_folder.py`), which keeps the TA's manual grades.

    Students are graded `workers` at a time in a local process pool (or by `executor`), or,
    with `scheduler` (a Dask scheduler's address) and `security` (`cluster_tls.security`), on
    that cluster's workers (`cluster.py`); a scheduler neither on TLS nor on loopback is refused
    (`cluster_tls.InsecureScheduler`) unless `insecure_scheduler`, and then the report says so.
    """
    from tqdm.auto import tqdm

    from .submissions import DEFAULT_ID_PATTERN

    if sandboxed:
        sandbox.require_bubblewrap()
    if scheduler:
        from . import cluster_tls

        cluster_warnings = cluster_tls.check_address(scheduler, security, insecure=insecure_scheduler)
    hierarchy = None
    if limits and not scheduler:  # (a cluster's workers make their own, on their machines)
        try:
            mounts.probe()
        except mounts.MountError as err:
            raise cgroups.LimitsUnavailable(f"{err.strerror}. {cgroups.HINT}") from None
        cgroups.sweep()
        hierarchy = cgroups.detect()
    course_root, out = Path(course_root).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    state_path = out / course_folder.STATE_FILE
    state = course_folder.saved_results(out)
    lab_digest = _template_digest(course_root, timeout, memory_limit_gb, sandboxed)
    class_problems: list[str] = []
    warnings = [] if sandboxed else [
        "WARNING: NOT SANDBOXED (--no-sandbox): students' code ran with the grader's rights; these grades are only "
        "as trustworthy as the submissions"]
    warnings += [] if limits else [NO_LIMITS_WARNING]
    dropped: list[str] = []
    for sid in remove or []:
        if state.pop(sid, None) is None and not (out / "feedback" / sid).exists():
            class_problems.append(f"--remove {printable(sid)}: no such student in {out}")
        shutil.rmtree(out / "feedback" / sid, ignore_errors=True)
        course_folder.remove(out, sid)

    with contextlib.ExitStack() as stack:
        if hierarchy is not None:
            stack.callback(hierarchy.close)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="course-lab-autograde-")))
        if scheduler:  # connected first: the workers import while the template is prepared (with the
            # client's threads this process no longer forks nbgrader: it runs as a subprocess, which
            # imports no torch; this process grades nobody, so it needs no preloading)
            from . import cluster

            client = stack.enter_context(cluster.connected(scheduler, security))
            warnings += cluster_warnings
        template = prepare_template(course_root, tmp / "template")
        course_folder.prepare(out, template)
        points = json.loads((template / "points.json").read_text())
        maxima = {nb: sum(cells.values()) for nb, cells in points.items()}
        written = written_points(template)
        release = template / "release" / ASSIGNMENT
        subs: list[Submission] = read_submissions(submissions, release, id_pattern=id_pattern or DEFAULT_ID_PATTERN,
                                                  report=class_problems)
        release_sources = {c.source.strip() for p in release.glob("*.ipynb")
                           for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"}
        # the class as graded before (whoever this run's folder holds or not), then this run's students
        results: dict[str, StudentResult] = {sid: StudentResult(**previous) for sid, previous in state.items()
                                             if (out / "feedback" / sid).is_dir()}
        submitted = {sub.student_id: sub for sub in subs}
        for sid in sorted(set(only or []) - set(submitted)):
            class_problems.append(f"--only {printable(sid)}: no submission of that student under {submissions}; "
                                  "nothing graded for them")
        jobs = []
        for sub in subs:
            digest = f"{lab_digest}:{sub.digest}"
            if sub.student_id in (remove or []):
                class_problems.append(f"{sub.student_id}: removed (--remove); their submission under {submissions} "
                                      "was not graded")
                continue
            if only is not None and sub.student_id not in only:
                if sub.student_id not in results:
                    class_problems.append(f"{sub.student_id}: not graded (not named by --only)")
                continue
            previous = results.get(sub.student_id)
            if only is None and previous is not None and previous.digest == digest:
                continue
            hints = [f"suspicious: {hint}" for name, text in sub.notebooks.items()
                     for hint in flags.suspicious_cells(text, release_sources, name)]
            jobs.append(GradingJob(sub.student_id, sub.notebooks, sub.problems + hints, digest, str(template),
                                   str(tmp / "work"), str(out / "feedback"), timeout, memory_limit_gb, sandboxed,
                                   limits, budget, notebooks_dir=str(tmp / "notebooks")))
        bar = tqdm(total=len(jobs), desc="students graded", unit="student", disable=not progress, file=sys.stdout)
        if scheduler:
            finished = cluster.grade_on_cluster(client, jobs, template, lab_digest)
        else:
            finished = _grade_locally(jobs, executor, workers, hierarchy)
        for job, outcome in finished:
            notebooks: dict[str, bytes] = {}
            if isinstance(outcome, BaseException):  # a failed worker must not cost the others their grades
                result = StudentResult(job.student_id, {}, {}, job.problems + [f"grading failed: {outcome!r}"], 0.0,
                                       job.digest)
            elif isinstance(outcome, tuple):  # from a cluster worker: the result and its files as data
                result, files = outcome
                target = out / "feedback" / job.student_id  # made even when empty: it marks the student as graded
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                for name, data in files.items():
                    if name.startswith("notebooks/"):
                        notebooks[Path(name).stem] = data
                    else:
                        (target / Path(name).name).write_bytes(data)
            else:
                result = outcome
                notebooks = {p.stem: p.read_bytes()
                             for p in sorted((tmp / "notebooks" / job.student_id).glob("*.ipynb"))}
            if result.student_id != job.student_id:
                result = StudentResult(job.student_id, {}, {}, job.problems + ["grading failed: a result for another "
                                       "student came back"], 0.0, job.digest)
            sub = submitted[job.student_id]
            result.canvas_id, result.late = sub.canvas_id, sub.late
            if not any("grading failed" in p for p in result.problems):
                try:  # (a notebook nbformat cannot read costs this student their formgrader entry, nobody else)
                    dropped += [f"{job.student_id}: {line}" for line in course_folder.record(
                        out, job.student_id, result.cells, notebooks, canvas_id=sub.canvas_id)]
                except Exception as err:
                    result.problems.append(f"not recorded in the class's gradebook (formgrader, export): "
                                           f"{type(err).__name__}: {printable(str(err), 200)}")
            results[job.student_id] = result
            bar.update(1)
        bar.close()
        course_folder.mark_feedback_current(out, [job.student_id for job in jobs])
        shutil.copy(template / "points.json", out / "points.json")
        pairs = similarity.class_pairs(out, release)
    (out / class_report.SIMILARITY_FILE).write_text(json.dumps([dataclasses.asdict(p) for p in pairs], indent=1))
    kept = sorted(set(results) - set(submitted))
    if kept:
        class_problems.append(f"{len(kept)} student(s) graded in an earlier run and not in {submissions} kept "
                              f"({', '.join(printable(s, 40) for s in kept[:10])}{' ...' if len(kept) > 10 else ''}; "
                              "--remove ID takes one out)")
    class_problems += [f"manual grade dropped: {line}" for line in dropped]
    ordered = [results[s] for s in sorted(results)]
    state = {r.student_id: dataclasses.asdict(r) for r in ordered if not any("grading failed" in p for p in r.problems)}
    state_path.write_text(json.dumps(state, indent=1))
    write_grades(ordered, maxima, out / "grades.csv")
    write_report(ordered, maxima, out / "report.txt", written=written, warnings=warnings,
                 class_problems=class_problems, pairs=pairs)
    class_report.refresh(out, warnings=warnings)
    return ordered


def _grade_locally(jobs: list[GradingJob], executor: concurrent.futures.Executor | None, workers: int,
                   hierarchy: cgroups.Hierarchy | None = None):
    """(job, StudentResult or the exception) as the local pool (or `executor`) finishes them. The
    pool's workers each take the run's cgroups and enter a mount namespace of their own first
    (`student.worker_setup`)."""
    own = executor is None
    executor = executor or concurrent.futures.ProcessPoolExecutor(max_workers=workers, initializer=worker_setup,
                                                                  initargs=(hierarchy,))
    try:
        futures = {executor.submit(grade_student, job): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as err:
                yield futures[future], err
    finally:
        if own:
            executor.shutdown()


def write_grades(results: list[StudentResult], maxima: dict[str, float], path: Path) -> None:
    """One row per student: student_id, autograded points per notebook, score, max_score.

    Written answers are not in it: they are graded by hand in formgrader (`nbgrader export`
    then gives the final grades)."""
    notebooks = sorted(maxima)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", *notebooks, "score", "max_score"])
        for r in results:
            row = [r.scores.get(nb, 0.0) for nb in notebooks]
            writer.writerow([spreadsheet_cell(r.student_id), *(f"{v:g}" for v in row), f"{sum(row):g}",
                             f"{sum(maxima.values()):g}"])


def write_report(results: list[StudentResult], maxima: dict[str, float], path: Path, *, written: float = 0.0,
                 warnings: list[str] = (), class_problems: list[str] | None = None, pairs=()) -> None:
    """Per student: the total (as in grades.csv), points lost per test cell, and what went wrong.
    `warnings` (what was waived: the sandbox, the limits) come first. Every student-controlled
    string is written `printable`: no line of it can move the cursor or rewrite another."""
    total = sum(maxima.values())
    lines = [*warnings, ""] if warnings else []
    lines += [f"Lab 4 autograde report: {len(results)} students, {total:g} autograded points "
              f"(and {written:g} points of written answers, graded by hand: course-lab formgrade OUT)", ""]
    if class_problems:
        lines += ["Submissions not graded or renamed:", *(f"    ! {printable(p)}" for p in class_problems), ""]
    if pairs:
        lines += ["Similar submissions (a hint to read both, never a score change; side by side in OUT/):",
                  *(f"    ~ {printable(p.a, 100)} and {printable(p.b, 100)}: {p.share_a:.0%} / {p.share_b:.0%} shared "
                    f"({p.page})" for p in pairs), ""]
    for r in results:
        score = sum(r.scores.get(nb, 0.0) for nb in maxima)
        late = "  LATE" if r.late else ""
        lines.append(f"{printable(r.student_id, 100)}: {score:g} / {total:g}  ({r.seconds:.0f} s){late}")
        for cell, points in sorted(r.lost.items()):
            lines.append(f"    lost {points:g} on {printable(cell, 200)}")
        for problem in r.problems:
            lines.append(f"    ! {printable(problem)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
