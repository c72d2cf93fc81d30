"""Autograding a class with nbgrader: one course folder and gradebook per student.

nbgrader grades one submission after another and its SQLite gradebook takes no concurrent
writers, so each student is graded in a copy of a prepared course folder (`template.py`) by
a job that any `concurrent.futures.Executor` can run: a local process pool by default, or
the workers of a Dask cluster when a course outgrows one machine (`cluster.py`, which sends
the template once and gets the feedback back as data). The results are merged into `grades.csv`, per-student feedback and
`report.txt`.

Trust (docs/grading.md): nbgrader and the checker run as the TA; the student's kernel runs in
a bubblewrap sandbox (`sandbox.py`) and can reach nothing but its own scratch space and the
checker's socket. A test cell's points need the trusted checker's verdict (`checker.py`),
and are read outside the sandbox (`scores.py`).

Robustness: each cell has a time limit (nbgrader interrupts it and goes on); the kernel's
address space is limited, so a memory hog gets a MemoryError; if a kernel dies (os._exit, a
segfault) nbgrader drops the whole assignment, so that student is graded again notebook by
notebook, and only the notebook that killed its kernel scores 0.
"""
from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import html
import json
import multiprocessing.util
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

from . import flags, forked, held_folders, sandbox, scores, template as course_template, zygote
from .submissions import Submission, read_submissions

ASSIGNMENT = "lab4"
STATE_FILE = ".autograde-state.json"
FEEDBACK_EXPORTER = "course_utils.grading.feedback.FeedbackExporter"  # nbconvert's HTMLExporter, one parse less


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
    isolate: bool = True  # False only with --no-sandbox


@dataclasses.dataclass
class StudentResult:
    student_id: str
    scores: dict[str, float]  # notebook stem -> points
    lost: dict[str, float]  # "notebook/grade_id" -> points lost
    problems: list[str]
    seconds: float
    digest: str
    # where the seconds went: "copy", "autograde", "scores", "feedback", "cleanup", and per notebook
    # "kernel start <stem>" (sandbox, kernel, until the first cell runs) and "cells <stem>"
    phases: dict[str, float] = dataclasses.field(default_factory=dict)


def _env(course: Path, template: Path | None = None, ipc_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LAB_PROFILE", None)  # nbgrader sets NBGRADER_EXECUTION, which selects the grade profile
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["COURSE_DATA_DIR"] = str(course / "data")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"  # one core per grading worker: workers scale, threads would fight
    env["MPLBACKEND"] = "Agg"
    env["PYTHONWARNINGS"] = "ignore"  # a warning on stderr would score a test cell 0
    if template is not None:
        env["JUPYTER_PATH"] = str(template / "jupyter")  # the sandboxed kernelspec
    if ipc_dir is not None:
        env["JUPYTER_RUNTIME_DIR"] = str(ipc_dir)  # connection files where the sandbox sees them
        env[sandbox.SPEC_ENV] = str(course / "sandbox.json")
    return env


def _limit_memory(gb: float | None):
    """What an nbgrader run gets before it starts (a subprocess's preexec, a fork's first step):
    death with its worker and the memory limit."""
    def apply():
        sandbox.die_with_parent()
        if gb:
            limit = int(gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def _nbgrader(course: Path, args: list[str], *, timeout: float, memory_limit_gb: float | None = None,
              checks: Path | None = None, verdicts: Path | None = None, env: dict | None = None,
              timings: Path | None = None) -> tuple[int, str]:
    """Run one nbgrader command in `course` (with the student's checker when `checks` is given);
    kill its whole process group on timeout (the sandbox dies with it)."""
    argv = []
    if checks is not None:
        argv += ["--checks", str(checks), "--verdicts", str(verdicts), *(["--timings", str(timings)] if timings else [])]
    argv += ["--", *args, "--log-level=INFO"]
    env = env or _env(course)
    if forked.usable():  # a fork of this worker, with nbgrader and the checker already imported
        return forked.run(argv, cwd=str(course), env=env, timeout=timeout, prepare=_limit_memory(memory_limit_gb))
    cmd = [sys.executable, "-m", "course_utils.grading.nbgrader_run", *argv]
    proc = subprocess.Popen(cmd, cwd=course, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_limit_memory(memory_limit_gb))
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
    course_template.finish_template(course_root, template)
    return template


def written_points(template: str | Path) -> float:
    """The points of written answers (graded by hand in formgrader)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{Path(template) / 'gradebook.db'}") as gb:
        return float(sum(nb.max_written_score for nb in gb.find_assignment(ASSIGNMENT).notebooks))


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


def _kernel_options(ipc_dir: Path, timeout: int) -> list[str]:
    """nbgrader's kernels: always the sandboxed kernelspec, over IPC sockets in the student's folder."""
    # a graded kernel is thrown away: kill it when its notebook is done instead of asking it to
    # shut down and waiting (nbclient's "graceful" default costs seconds per notebook)
    return ["--force", f"--ExecutePreprocessor.timeout={timeout}", "--ExecutePreprocessor.shutdown_kernel=immediate",
            f"--ExecutePreprocessor.kernel_name={sandbox.KERNEL_NAME}",
            "--KernelManager.transport=ipc", f"--KernelManager.ip={ipc_dir / 'kernel'}",
            "--ExecutePreprocessor.kernel_manager_class=course_utils.grading.kernel_client.GradingKernelManager",
            "--KernelManager.client_class=course_utils.grading.kernel_client.GradingKernelClient"]


def grade_student(job: GradingJob) -> StudentResult:
    """Grade one student in a fresh copy of the template course (runs in a worker)."""
    start = time.perf_counter()
    phases: dict[str, float] = {}
    clock = [start]

    def lap(phase: str) -> None:  # the seconds since the last lap, added to `phase`
        now = time.perf_counter()
        phases[phase] = round(phases.get(phase, 0.0) + now - clock[0], 3)
        clock[0] = now

    sid, problems = job.student_id, list(job.problems)
    template = Path(job.template)
    course = Path(job.work_dir) / sid
    shutil.rmtree(course, ignore_errors=True)
    shutil.copytree(template, course, ignore=shutil.ignore_patterns("release", "site", "jupyter", "etc"))
    shared = _worker_zygote(job)
    _remember_release(job.template)
    # short: Unix socket paths are limited to about 100 bytes
    ipc_dir = Path(tempfile.mkdtemp(prefix="s-", dir=shared.spec.ipc_dir) if shared else held_folders.make("cl-"))
    sandbox.SandboxSpec(str(ipc_dir), str(template / "site"), str(template / "etc"),
                        memory_limit_gb=job.memory_limit_gb, isolate=job.isolate).write(course / "sandbox.json")
    env = _env(course, template, ipc_dir)
    if shared:
        env[zygote.CONTROL_ENV] = shared.control
    submitted = course / "submitted" / sid / ASSIGNMENT
    submitted.mkdir(parents=True)
    for name, text in job.notebooks.items():
        (submitted / name).write_text(text, encoding="utf-8")
    autograded = course / "autograded" / sid / ASSIGNMENT
    stems = [Path(n).stem for n in job.notebooks]
    limit = job.timeout * 20 + 120  # the whole submission; cells are limited to job.timeout each
    options = _kernel_options(ipc_dir, job.timeout)
    run = dict(memory_limit_gb=job.memory_limit_gb, checks=course / "checks.json", env=env)
    verdict_files = []
    refused: dict[str, str] = {}
    lap("copy")
    try:
        if stems:
            verdict_files.append(course / "verdicts.json")
            code, log = _nbgrader(course, ["autograde", ASSIGNMENT, "--student", sid, *options],
                                  timeout=limit * len(stems), verdicts=verdict_files[-1], timings=course / "timings.json",
                                  **run)
            _add_timings(course / "timings.json", phases)
            if code == 0 and "There was an error processing" not in log:
                for stem in stems:
                    problems += _diagnose(autograded, stem)
            else:
                # nbgrader drops the whole assignment when one notebook fails: isolate the culprit
                kept = course / "kept"
                kept.mkdir()
                for stem in stems:
                    verdict_files.append(course / f"verdicts-{stem}.json")
                    code, log = _nbgrader(course, ["autograde", ASSIGNMENT, "--student", sid, "--notebook", stem,
                                                   *options], timeout=limit, verdicts=verdict_files[-1], **run)
                    if code == 0 and "There was an error processing" not in log:
                        problems += _diagnose(autograded, stem)
                        shutil.copy(autograded / f"{stem}.ipynb", kept / f"{stem}.ipynb")
                    elif "DeadKernelError" in log or "Kernel died" in log:
                        problems.append(f"{stem}: the kernel died (os._exit, a crash or out of memory); scored 0")
                    elif code == -9:
                        problems.append(f"{stem}: grading took longer than {limit} s and was stopped; scored 0")
                    else:
                        refused[stem] = _nbgrader_refusal(log)
                        problems.append(f"{stem}: {refused[stem]}; scored 0")
                autograded.mkdir(parents=True, exist_ok=True)
                for f in kept.glob("*.ipynb"):
                    shutil.copy(f, autograded / f.name)
        lap("autograde")
        verdicts, stray = scores.read_verdicts(verdict_files)
        problems += [f"suspicious: {s}" for s in stray]
        graded = [s for s in stems if (autograded / f"{s}.ipynb").exists()]
        points = json.loads((course / "points.json").read_text())
        cells = scores.cell_points(course, sid, graded, points, verdicts)
        result_scores = {stem: sum(cells.get(stem, {}).values()) for stem in stems}
        lost = {f"{stem}/{g}": points[stem][g] - got for stem in graded for g, got in cells[stem].items()
                if got < points[stem][g]}
        target = Path(job.feedback_dir) / sid  # made even when empty: it marks the student as graded
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if graded:
            secrets = [str(p) for p in (course, template, Path(job.work_dir), ipc_dir, Path.cwd(), Path.home(),
                                        Path(sys.prefix), Path(sys.base_prefix), Path(tempfile.gettempdir()))]
            for stem in graded:
                scores.clean_for_feedback(autograded / f"{stem}.ipynb", verdicts, secrets)
            lap("scores")
            _nbgrader(course, ["generate_feedback", ASSIGNMENT, "--student", sid, "--force",
                               "--HTMLExporter.sanitize_html=True", f"--GenerateFeedback.exporter_class={FEEDBACK_EXPORTER}"],
                      timeout=600, env=env)
            for f in (course / "feedback" / sid / ASSIGNMENT).glob("*.html"):
                shutil.copy(f, target / f.name)
            lap("feedback")
        for stem, reason in refused.items():  # a page that says why, where nbgrader made none
            (target / f"{stem}.html").write_text(
                f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{stem}</title></head><body>"
                f"<h1>{stem}: not graded</h1><p>{html.escape(reason)}. This notebook scored 0. Download the "
                "released notebook again, copy your answers into its answer cells, and leave the other cells "
                "as they are.</p></body></html>\n", encoding="utf-8")
    finally:
        lap("scores")
        shutil.rmtree(course, ignore_errors=True)
        held_folders.drop(str(ipc_dir))  # (or a student's folder in its worker's held one)
        lap("cleanup")
    return StudentResult(sid, result_scores, lost, problems, round(time.perf_counter() - start, 1), job.digest,
                         {k: v for k, v in phases.items() if v > 0})


_SHARED_ZYGOTE: dict = {}
_REMEMBERED: set[str] = set()


def _remember_release(template: str) -> None:
    """Once per worker and template: the release's code highlighted for the feedback pages,
    which the nbgrader runs forked from this worker reuse (`feedback.remember`)."""
    if template not in _REMEMBERED and forked.usable():
        from . import feedback

        feedback.remember(sorted((Path(template) / "release" / ASSIGNMENT).glob("*.ipynb")))
        _REMEMBERED.add(template)


def _worker_zygote(job: GradingJob) -> "zygote.Zygote | None":
    """This local worker's zygote, started with its first student and kept for the next ones
    (imports once per worker, not per student). Each of its kernels sees only its own
    student's IPC folder (`zygote.py`). None where the worker cannot fork safely (a Dask
    worker's threads): nbgrader_run then starts one per student."""
    if not forked.usable():
        return None
    template = Path(job.template)
    return _shared_zygote(template / "site", template / "etc", job.memory_limit_gb, job.isolate)


def _shared_zygote(site: Path, etc: Path, memory_limit_gb: float, isolate: bool) -> "zygote.Zygote | None":
    """The worker's zygote for a sandbox that binds `site` and `etc`: the running one if it
    binds the same files (`template.sandbox_digest`) under the same limits, else a new one."""
    key = (course_template.sandbox_digest(site, etc), memory_limit_gb, isolate)
    running = _SHARED_ZYGOTE.get("zygote")
    if running is not None and _SHARED_ZYGOTE.get("key") == key and running.process.poll() is None:
        return running
    _stop_worker_zygote()
    root = held_folders.make("cl-")
    spec = sandbox.SandboxSpec(root, str(site), str(etc), memory_limit_gb=memory_limit_gb, isolate=isolate)
    try:
        shared = zygote.Zygote(spec).start()
    except OSError:
        held_folders.drop(root)
        return None
    if not _SHARED_ZYGOTE:  # a pool worker leaves through multiprocessing's finalizers, not atexit
        atexit.register(_stop_worker_zygote)
        multiprocessing.util.Finalize(None, _stop_worker_zygote, exitpriority=10)
    _SHARED_ZYGOTE.update(zygote=shared, key=key)
    return shared


def warm_worker(folder: str) -> None:
    """A cluster worker's warm-up, in its grading process, before any student: grading's imports
    (`forked.preload`), then its zygote, which imports in its sandbox in the background (about
    4 s that the worker's first student no longer waits for). The zygote's site/ and etc/ are
    made in `folder` from this machine's course package: the same files as the TA's template
    carries when TA and worker run the same version, and then the first student keeps this
    zygote; if they differ, that student starts one on the template's, as without a warm-up."""
    forked.preload()
    if _SHARED_ZYGOTE.get("zygote") is not None or not forked.usable():
        return
    try:
        sandbox.require_bubblewrap()
    except sandbox.SandboxUnavailable:
        return  # (a worker that cannot sandbox refuses its first sandboxed student with the reason)
    import course_utils

    own = Path(folder)
    course_template.build_site(Path(course_utils.__file__).parent.parent, own / "site")
    sandbox.write_etc(own / "etc")
    _shared_zygote(own / "site", own / "etc", sandbox.SandboxSpec.memory_limit_gb, True)


def worker_zygote_pid() -> int | None:
    """The process ID of this worker's running zygote, if any (to tell whether one was kept)."""
    running = _SHARED_ZYGOTE.get("zygote")
    return running.process.pid if running is not None and running.process.poll() is None else None


def _stop_worker_zygote() -> None:
    running = _SHARED_ZYGOTE.pop("zygote", None)
    _SHARED_ZYGOTE.pop("key", None)
    if running is not None:
        running.stop()
        held_folders.drop(running.spec.ipc_dir)


def _add_timings(path: Path, phases: dict[str, float]) -> None:
    """Per notebook, nbgrader_run's kernel start and cell seconds, added to `phases`."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    for record in records if isinstance(records, list) else []:
        stem = Path(str(record.get("notebook", ""))).stem
        if isinstance(record.get("kernel_start"), (int, float)):
            phases[f"kernel start {stem}"] = round(record["kernel_start"], 3)
        cells = [c for c in record.get("cells", []) if isinstance(c, (int, float))]
        phases[f"cells {stem}"] = round(sum(cells), 3)


def _nbgrader_refusal(log: str) -> str:
    """nbgrader's refusal in words a student and a TA understand."""
    if "has been modified" in log or "checksum" in log.lower():
        return "nbgrader refused it: a test cell was changed into another kind of cell or lost its metadata"
    if "duplicate" in log.lower() and "grade" in log.lower():
        return "nbgrader refused it: two cells carry the same grade id (copied test cells)"
    if "missing" in log.lower() and "cell" in log.lower():
        return "nbgrader refused it: a cell of the released notebook is missing or was changed"
    return "nbgrader could not grade it (the notebook's cell structure is broken)"


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
              sandboxed: bool = True, scheduler: str | None = None) -> list[StudentResult]:
    """Grade every submission under `submissions`; write grades.csv, feedback/ and report.txt to `out`.

    Every kernel runs in a bubblewrap sandbox; without bubblewrap this refuses to grade
    (`SandboxUnavailable`) unless `sandboxed=False` (`--no-sandbox`), and then the report
    says so in its first line. Students whose submission (and the lab's solutions and
    checks) did not change since the last run into the same `out` are not graded again.

    Students are graded `workers` at a time in a local process pool (or by `executor`), or,
    with `scheduler` (a Dask scheduler's address), on that cluster's workers (`cluster.py`).
    """
    from tqdm.auto import tqdm

    from .submissions import DEFAULT_ID_PATTERN

    if sandboxed:
        sandbox.require_bubblewrap()
    course_root, out = Path(course_root).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    lab_digest = _template_digest(course_root, timeout, memory_limit_gb, sandboxed)
    class_problems: list[str] = []

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="course-lab-autograde-")))
        if scheduler:  # connected first: the workers import while the template is prepared (with the
            # client's threads this process no longer forks nbgrader: it runs as a subprocess, which
            # imports no torch; this process grades nobody, so it needs no preloading)
            from . import cluster

            client = stack.enter_context(cluster.connected(scheduler))
        template = prepare_template(course_root, tmp / "template")
        points = json.loads((template / "points.json").read_text())
        maxima = {nb: sum(cells.values()) for nb, cells in points.items()}
        written = written_points(template)
        release = template / "release" / ASSIGNMENT
        subs: list[Submission] = read_submissions(submissions, release, id_pattern=id_pattern or DEFAULT_ID_PATTERN,
                                                  report=class_problems)
        release_sources = {c.source.strip() for p in release.glob("*.ipynb")
                           for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"}
        results: dict[str, StudentResult] = {}
        jobs = []
        for sub in subs:
            digest = f"{lab_digest}:{sub.digest}"
            previous = state.get(sub.student_id)
            if previous and previous["digest"] == digest and (out / "feedback" / sub.student_id).is_dir():
                results[sub.student_id] = StudentResult(**previous)
                continue
            hints = [f"suspicious: {hint}" for name, text in sub.notebooks.items()
                     for hint in flags.suspicious_cells(text, release_sources, name)]
            jobs.append(GradingJob(sub.student_id, sub.notebooks, sub.problems + hints, digest, str(template),
                                   str(tmp / "work"), str(out / "feedback"), timeout, memory_limit_gb, sandboxed))
        bar = tqdm(total=len(subs), initial=len(results), desc="students graded", unit="student",
                   disable=not progress, file=sys.stdout)
        if scheduler:
            finished = cluster.grade_on_cluster(client, jobs, template, lab_digest)
        else:
            finished = _grade_locally(jobs, executor, workers)
        for job, outcome in finished:
            if isinstance(outcome, BaseException):  # a failed worker must not cost the others their grades
                result = StudentResult(job.student_id, {}, {}, job.problems + [f"grading failed: {outcome!r}"], 0.0,
                                       job.digest)
            elif isinstance(outcome, tuple):  # from a cluster worker: the result and its feedback pages as data
                result, files = outcome
                target = out / "feedback" / job.student_id  # made even when empty: it marks the student as graded
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                for name, data in files.items():
                    (target / Path(name).name).write_bytes(data)
            else:
                result = outcome
            if result.student_id != job.student_id:
                result = StudentResult(job.student_id, {}, {}, job.problems + ["grading failed: a result for another "
                                       "student came back"], 0.0, job.digest)
            results[job.student_id] = result
            bar.update(1)
        bar.close()
    ordered = [results[s] for s in sorted(results)]
    state = {r.student_id: dataclasses.asdict(r) for r in ordered if not any("grading failed" in p for p in r.problems)}
    state_path.write_text(json.dumps(state, indent=1))
    write_grades(ordered, maxima, out / "grades.csv")
    write_report(ordered, maxima, out / "report.txt", written=written, sandboxed=sandboxed,
                 class_problems=class_problems)
    return ordered


def _grade_locally(jobs: list[GradingJob], executor: concurrent.futures.Executor | None, workers: int):
    """(job, StudentResult or the exception) as the local pool (or `executor`) finishes them."""
    own = executor is None
    executor = executor or concurrent.futures.ProcessPoolExecutor(max_workers=workers)
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
            writer.writerow([r.student_id, *(f"{v:g}" for v in row), f"{sum(row):g}", f"{sum(maxima.values()):g}"])


def write_report(results: list[StudentResult], maxima: dict[str, float], path: Path, *, written: float = 0.0,
                 sandboxed: bool = True, class_problems: list[str] | None = None) -> None:
    """Per student: the total (as in grades.csv), points lost per test cell, and what went wrong."""
    total = sum(maxima.values())
    lines = [] if sandboxed else [
        "WARNING: NOT SANDBOXED (--no-sandbox): students' code ran with the grader's rights; these grades are only "
        "as trustworthy as the submissions", ""]
    lines += [f"Lab 4 autograde report: {len(results)} students, {total:g} autograded points "
              f"(and {written:g} points of written answers, graded by hand in formgrader)", ""]
    if class_problems:
        lines += ["Submissions not graded or renamed:", *(f"    ! {p}" for p in class_problems), ""]
    for r in results:
        score = sum(r.scores.get(nb, 0.0) for nb in maxima)
        lines.append(f"{r.student_id}: {score:g} / {total:g}  ({r.seconds:.0f} s)")
        for cell, points in sorted(r.lost.items()):
            lines.append(f"    lost {points:g} on {cell}")
        for problem in r.problems:
            lines.append(f"    ! {problem}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
