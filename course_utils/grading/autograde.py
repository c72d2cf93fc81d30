"""Autograding a class with nbgrader: one course folder and gradebook per student.

nbgrader grades one submission after another and its SQLite gradebook takes no concurrent
writers, so each student is graded in a copy of a prepared course folder (solutions and a
gradebook made once by `generate_assignment`) by a job that any
`concurrent.futures.Executor` can run: a local process pool by default, dask.distributed's
`Client.get_executor()` or a batch scheduler's executor when a course outgrows one machine.
The results are merged into `grades.csv`, per-student feedback and `report.txt`.

Robustness: each cell has a time limit (nbgrader interrupts it and goes on); the kernel's
address space is limited, so a memory hog gets a MemoryError; if a kernel dies (os._exit, a
segfault) nbgrader drops the whole assignment, so that student is graded again notebook by
notebook, and only the notebook that killed its kernel scores 0.
"""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from .submissions import Submission, read_submissions

ASSIGNMENT = "lab4"
STATE_FILE = ".autograde-state.json"


@dataclasses.dataclass
class GradingJob:
    """Everything one worker needs to grade one student (plain data, so it pickles)."""

    student_id: str
    notebooks: dict[str, str]
    problems: list[str]
    digest: str
    template: str  # prepared course folder (solutions, nbgrader_config.py, gradebook.db)
    work_dir: str
    feedback_dir: str
    timeout: int
    memory_limit_gb: float


@dataclasses.dataclass
class StudentResult:
    student_id: str
    scores: dict[str, float]  # notebook stem -> points
    lost: dict[str, float]  # "notebook/grade_id" -> points lost
    problems: list[str]
    seconds: float
    digest: str


def _env(course: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LAB_PROFILE", None)  # nbgrader sets NBGRADER_EXECUTION, which selects the grade profile
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["COURSE_DATA_DIR"] = str(course / "data")  # a student's checkpoints never reach another's run
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"  # one core per grading worker: workers scale, threads would fight
    env["MPLBACKEND"] = "Agg"
    env["PYTHONWARNINGS"] = "ignore"  # a warning on stderr would score a test cell 0
    return env


def _limit_memory(gb: float):
    def apply():
        limit = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def _nbgrader(course: Path, args: list[str], *, timeout: float, memory_limit_gb: float | None = None) -> tuple[int, str]:
    """Run one nbgrader command in `course`; kill its whole process group on timeout."""
    cmd = [sys.executable, "-m", "nbgrader", *args, "--log-level=INFO"]
    proc = subprocess.Popen(cmd, cwd=course, env=_env(course), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            preexec_fn=_limit_memory(memory_limit_gb) if memory_limit_gb else None)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return -9, out + "\n[course-lab] nbgrader killed after the submission's time limit\n"


def prepare_template(course_root: str | Path, template: str | Path) -> Path:
    """A course folder with the solutions and a gradebook that knows every grade cell."""
    course_root, template = Path(course_root).resolve(), Path(template)
    template.mkdir(parents=True, exist_ok=True)
    shutil.copy(course_root / "nbgrader_config.py", template / "nbgrader_config.py")
    shutil.copytree(course_root / "solutions" / ASSIGNMENT, template / "solutions" / ASSIGNMENT, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    code, log = _nbgrader(template, ["generate_assignment", ASSIGNMENT, "--force",
                                     f"--CourseDirectory.release_directory={template / 'release'}"], timeout=600)
    if code != 0 or not (template / "gradebook.db").exists():
        raise RuntimeError(f"nbgrader generate_assignment failed in {template}:\n{log[-3000:]}")
    return template


def max_scores(template: str | Path) -> tuple[dict[str, float], float]:
    """Autograded points per notebook, and the points of written answers (graded by hand)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{Path(template) / 'gradebook.db'}") as gb:
        notebooks = gb.find_assignment(ASSIGNMENT).notebooks
        return ({nb.name: float(nb.max_code_score) for nb in notebooks},
                float(sum(nb.max_written_score for nb in notebooks)))


def _diagnose(autograded: Path, stem: str) -> list[str]:
    """Cells of one notebook that timed out or ran out of memory, read from its executed copy."""
    problems = []
    path = autograded / f"{stem}.ipynb"
    if path.exists():
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            where = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {i + 1}"
            for out in cell.get("outputs", []):
                if out.get("output_type") != "error":
                    continue
                if out.get("ename") == "CellTimeoutError":
                    problems.append(f"{stem}/{where}: ran past the time limit and was interrupted")
                elif out.get("ename") == "MemoryError":
                    problems.append(f"{stem}/{where}: ran out of memory (the kernel's limit)")
    return problems


def _read_scores(course: Path, sid: str, stems: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Autograded points per notebook, and the points each test cell of a submitted notebook lost."""
    from nbgrader.api import Gradebook, MissingEntry

    scores, lost = {}, {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        try:
            submission = gb.find_submission(ASSIGNMENT, sid)
        except MissingEntry:
            return scores, lost
        for nb in submission.notebooks:
            scores[nb.name] = float(nb.code_score)
            if nb.name not in stems:  # missing notebooks are reported as missing, not cell by cell
                continue
            for grade in nb.grades:
                if grade.max_score and grade.auto_score is not None and grade.auto_score < grade.max_score:
                    lost[f"{nb.name}/{grade.name}"] = float(grade.max_score - grade.auto_score)
                elif grade.max_score and grade.auto_score is None and grade.cell_type == "code":
                    lost[f"{nb.name}/{grade.name}"] = float(grade.max_score)
    return scores, lost


def grade_student(job: GradingJob) -> StudentResult:
    """Grade one student in a fresh copy of the template course (runs in a worker)."""
    start = time.perf_counter()
    sid, problems = job.student_id, list(job.problems)
    course = Path(job.work_dir) / sid
    shutil.rmtree(course, ignore_errors=True)
    shutil.copytree(job.template, course, ignore=shutil.ignore_patterns("release"))
    submitted = course / "submitted" / sid / ASSIGNMENT
    submitted.mkdir(parents=True)
    for name, text in job.notebooks.items():
        (submitted / name).write_text(text, encoding="utf-8")
    autograded = course / "autograded" / sid / ASSIGNMENT
    stems = [Path(n).stem for n in job.notebooks]
    limit = job.timeout * 20 + 120  # the whole submission; cells are limited to job.timeout each
    options = ["--force", f"--ExecutePreprocessor.timeout={job.timeout}"]
    if stems:
        code, log = _nbgrader(course, ["autograde", ASSIGNMENT, "--student", sid, *options],
                              timeout=limit * len(stems), memory_limit_gb=job.memory_limit_gb)
        if code == 0 and "There was an error processing" not in log:
            for stem in stems:
                problems += _diagnose(autograded, stem)
        else:
            # nbgrader drops the whole assignment when one notebook fails: isolate the culprit
            kept = course / "kept"
            kept.mkdir()
            for stem in stems:
                code, log = _nbgrader(course, ["autograde", ASSIGNMENT, "--student", sid, "--notebook", stem,
                                               *options], timeout=limit, memory_limit_gb=job.memory_limit_gb)
                if code == 0 and "There was an error processing" not in log:
                    problems += _diagnose(autograded, stem)
                    shutil.copy(autograded / f"{stem}.ipynb", kept / f"{stem}.ipynb")
                elif "DeadKernelError" in log or "Kernel died" in log:
                    problems.append(f"{stem}: the kernel died (os._exit, a crash or out of memory); scored 0")
                elif code == -9:
                    problems.append(f"{stem}: grading took longer than {limit} s and was stopped; scored 0")
                else:
                    tail = log.strip().splitlines()[-1] if log.strip() else "no output"
                    problems.append(f"{stem}: nbgrader could not grade it ({tail[:200]}); scored 0")
            autograded.mkdir(parents=True, exist_ok=True)
            for f in kept.glob("*.ipynb"):
                shutil.copy(f, autograded / f.name)
    scores, lost = _read_scores(course, sid, stems)
    target = Path(job.feedback_dir) / sid  # made even when empty: it marks the student as graded
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if stems and autograded.is_dir() and any(autograded.glob("*.ipynb")):
        _nbgrader(course, ["generate_feedback", ASSIGNMENT, "--student", sid, "--force"], timeout=600)
        for f in (course / "feedback" / sid / ASSIGNMENT).glob("*.html"):
            shutil.copy(f, target / f.name)
    shutil.rmtree(course, ignore_errors=True)
    return StudentResult(sid, scores, lost, problems, round(time.perf_counter() - start, 1), job.digest)


def _template_digest(course_root: Path, timeout: int, memory_limit_gb: float) -> str:
    h = hashlib.sha256(f"{timeout}/{memory_limit_gb}".encode())
    for p in sorted((course_root / "solutions" / ASSIGNMENT).glob("*.ipynb")) + [course_root / "nbgrader_config.py"]:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def autograde(submissions: str | Path, out: str | Path, *, course_root: str | Path = ".", workers: int = 1,
              timeout: int = 60, memory_limit_gb: float = 6.0, id_pattern: str | None = None,
              executor: concurrent.futures.Executor | None = None, progress: bool = True) -> list[StudentResult]:
    """Grade every submission under `submissions`; write grades.csv, feedback/ and report.txt to `out`.

    Students whose submission (and the lab's solutions) did not change since the last run
    into the same `out` are not graded again.
    """
    from tqdm.auto import tqdm

    from .submissions import DEFAULT_ID_PATTERN

    course_root, out = Path(course_root).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    lab_digest = _template_digest(course_root, timeout, memory_limit_gb)

    with tempfile.TemporaryDirectory(prefix="course-lab-autograde-") as tmp:
        tmp = Path(tmp)
        template = prepare_template(course_root, tmp / "template")
        maxima, written = max_scores(template)
        subs: list[Submission] = read_submissions(submissions, template / "release" / ASSIGNMENT,
                                                  id_pattern=id_pattern or DEFAULT_ID_PATTERN)
        results: dict[str, StudentResult] = {}
        jobs = []
        for sub in subs:
            digest = f"{lab_digest}:{sub.digest}"
            previous = state.get(sub.student_id)
            if previous and previous["digest"] == digest and (out / "feedback" / sub.student_id).is_dir():
                results[sub.student_id] = StudentResult(**previous)
                continue
            jobs.append(GradingJob(sub.student_id, sub.notebooks, sub.problems, digest, str(template),
                                   str(tmp / "work"), str(out / "feedback"), timeout, memory_limit_gb))
        own = executor is None
        executor = executor or concurrent.futures.ProcessPoolExecutor(max_workers=workers)
        try:
            futures = {executor.submit(grade_student, job): job for job in jobs}
            bar = tqdm(total=len(subs), initial=len(results), desc="students graded", unit="student",
                       disable=not progress, file=sys.stdout)
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except Exception as err:  # a worker that failed must not cost the others their grades
                    result = StudentResult(job.student_id, {}, {}, job.problems + [f"grading failed: {err!r}"], 0.0,
                                           job.digest)
                results[result.student_id] = result
                bar.update(1)
            bar.close()
        finally:
            if own:
                executor.shutdown()
    ordered = [results[s] for s in sorted(results)]
    state = {r.student_id: dataclasses.asdict(r) for r in ordered if not any("grading failed" in p for p in r.problems)}
    state_path.write_text(json.dumps(state, indent=1))
    write_grades(ordered, maxima, out / "grades.csv")
    write_report(ordered, maxima, out / "report.txt", written=written)
    return ordered


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
            writer.writerow([r.student_id, *(f"{v:g}" for v in row), f"{sum(row):g}", f"{sum(maxima.values()):g}"])


def write_report(results: list[StudentResult], maxima: dict[str, float], path: Path, *, written: float = 0.0) -> None:
    """Per student: the total, points lost per test cell, and what went wrong."""
    total = sum(maxima.values())
    lines = [f"Lab 4 autograde report: {len(results)} students, {total:g} autograded points "
             f"(and {written:g} points of written answers, graded by hand in formgrader)", ""]
    for r in results:
        score = sum(r.scores.get(nb, 0.0) for nb in maxima)
        lines.append(f"{r.student_id}: {score:g} / {total:g}  ({r.seconds:.0f} s)")
        for cell, points in sorted(r.lost.items()):
            lines.append(f"    lost {points:g} on {cell}")
        for problem in r.problems:
            lines.append(f"    ! {problem}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
