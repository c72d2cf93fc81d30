"""Grading one student, in a grading worker (a local pool's process, a cluster worker's helper).

`grade_student(job)` grades one submission in a fresh copy of the prepared course
(`template.py`) with nbgrader, the student's kernels in the sandbox and the trusted checker
beside nbgrader, and returns a `StudentResult` (plain data). What bounds one student:

- **one cgroup** for every process of theirs (`cgroups.py`): memory (tmpfs and forks
  included), one core, a process count; removed, with whatever is left in it, afterwards;
- **one time budget** for the whole submission (`GradingJob.budget`), beside nbgrader's
  per-cell timeout: when it runs out the student's grading stops, the notebooks already
  graded keep their points, the rest score 0 ("stopped: time budget"), and nothing runs again;
- **bounded writes**: the IPC folder (the only host folder a kernel can write to) is a small
  tmpfs (`mounts.py`), unmounted afterwards; the kernels' own stdout and stderr go to a log
  there (`launcher.py`); nbgrader keeps at most `OUTPUT_CELL_BYTES` of a cell's outputs and
  `OUTPUT_NOTEBOOK_BYTES` of a notebook's (`nbgrader_run.py`).

A worker keeps, across students, a zygote its kernels fork from (`zygote.py`) and a preloaded
process its nbgrader runs fork from (`forked.py`); `worker_setup` (the pool's initializer)
gives it a mount namespace of its own first.
"""
from __future__ import annotations

import atexit
import dataclasses
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

from . import cgroups, forked, mounts, nbgrader_run, sandbox, scores, template as course_template, zygote

ASSIGNMENT = "lab4"
FEEDBACK_EXPORTER = "course_utils.grading.feedback.FeedbackExporter"  # nbconvert's HTMLExporter, one parse less
BUDGET_PER_NOTEBOOK_S = 60  # beside one cell's timeout, per submitted notebook (see `student_budget`)


def student_budget(timeout: int, notebooks: int) -> int:
    """The wall-clock seconds one student's whole grading may take: per submitted notebook, one cell
    running to its time limit and a minute for the rest (an honest notebook takes seconds on the
    grade profile), and a minute to start."""
    return 60 + max(1, notebooks) * (timeout + BUDGET_PER_NOTEBOOK_S)


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
    limits: bool = True  # False only with --no-limits: no cgroup for the student
    budget: int = 0  # seconds for the whole student; 0: student_budget(timeout, notebooks)
    notebooks_dir: str = ""  # where the autograded notebooks go, cleaned as the feedback (<id>/<stem>.ipynb)


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
    # what the student's cgroup used: memory_peak (bytes), oom_kills, forks_refused, throttled
    usage: dict[str, int] = dataclasses.field(default_factory=dict)
    # per graded notebook, every grade cell: trusted points, or None for a written answer to grade by hand
    cells: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)
    canvas_id: str = ""  # from the LMS's file names
    late: bool = False
    # per test cell lost ("notebook/grade_id"), the mistake its hidden check named (`checks.Mistake`), or
    # "other" (a check without a name for it), or that the visible tests failed
    mistakes: dict[str, str] = dataclasses.field(default_factory=dict)


_WORKER: dict = {}


def worker_setup(hierarchy: cgroups.Hierarchy | None = None) -> None:
    """A grading worker's first step (the process pool's initializer, a cluster helper's): death
    with its parent, the run's cgroup hierarchy (None: one of its own, when it first needs it),
    and a mount namespace of its own for the students' IPC tmpfs (`mounts.py`)."""
    sandbox.die_with_parent()
    if hierarchy is not None:
        _WORKER["hierarchy"] = hierarchy
    try:
        mounts.enter_worker_namespace()
    except OSError as err:  # said again, with its reason, for each student it would grade
        _WORKER["namespace_error"] = str(err)


def _worker_hierarchy() -> cgroups.Hierarchy:
    """This worker's cgroup hierarchy: the one the grading run made before starting its workers
    (inherited), or one of its own (a cluster worker's helper)."""
    if "hierarchy" not in _WORKER:
        cgroups.sweep()  # (what a killed grader left on this machine)
        _WORKER["hierarchy"] = cgroups.detect()
        atexit.register(_WORKER["hierarchy"].close)
    return _WORKER["hierarchy"]


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
        # connection files in the grader's course folder, not in the student's IPC folder (which a
        # student may fill): the launcher hands them to the kernel
        env["JUPYTER_RUNTIME_DIR"] = str(course / "runtime")
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


def run_nbgrader(course: Path, args: list[str], *, timeout: float, memory_limit_gb: float | None = None,
                 checks: Path | None = None, verdicts: Path | None = None, env: dict | None = None,
                 timings: Path | None = None) -> tuple[int, str]:
    """Run one nbgrader command in `course` (with the student's checker when `checks` is given);
    kill its whole process group on timeout (the sandbox dies with it): (status, log); -9 when killed."""
    argv = []
    if checks is not None:
        argv += ["--checks", str(checks), "--verdicts", str(verdicts)]
        argv += ["--timings", str(timings)] if timings else []
    argv += ["--", *args, "--log-level=INFO"]
    env = env or _env(course)
    if forked.usable():  # a fork of this worker, with nbgrader and the checker already imported
        return forked.run(argv, cwd=str(course), env=env, timeout=timeout, prepare=_limit_memory(memory_limit_gb))
    cmd = [sys.executable, "-m", "course_utils.grading.nbgrader_run", *argv]
    proc = subprocess.Popen(cmd, cwd=course, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_limit_memory(memory_limit_gb))
    output = forked.BoundedOutput()
    try:
        output.read_from(proc.stdout, proc, timeout)
        return proc.wait(), output.text()
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9, output.text() + "\n[course-lab] nbgrader killed after the submission's time limit\n"


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


def kernel_options(ipc_dir: Path, timeout: int) -> list[str]:
    """nbgrader's kernels: always the sandboxed kernelspec, over IPC sockets in the student's folder."""
    # a graded kernel is thrown away: kill it when its notebook is done instead of asking it to
    # shut down and waiting (nbclient's "graceful" default costs seconds per notebook)
    # and a cell whose outputs are still arriving after its reply (a flood, capped by nbgrader_run) does
    # not fail the whole notebook: its points need the checker's verdict anyway, whatever nbgrader saw
    return ["--force", f"--ExecutePreprocessor.timeout={timeout}", "--ExecutePreprocessor.shutdown_kernel=immediate",
            "--ExecutePreprocessor.raise_on_iopub_timeout=False",
            f"--ExecutePreprocessor.kernel_name={sandbox.KERNEL_NAME}",
            "--KernelManager.transport=ipc", f"--KernelManager.ip={ipc_dir / 'kernel'}",
            "--ExecutePreprocessor.kernel_manager_class=course_utils.grading.kernel_client.GradingKernelManager",
            "--KernelManager.client_class=course_utils.grading.kernel_client.GradingKernelClient"]


def _ipc_folder(shared: "zygote.Zygote | None") -> str:
    """The student's IPC folder: a tmpfs of its own in this worker's folder (`mounts.py`)."""
    if not mounts.in_worker_namespace():
        if "namespace_error" in _WORKER:
            raise mounts.MountError(0, "this grading worker has no mount namespace of its own "
                                       f"({_WORKER['namespace_error']})")
        mounts.enter_worker_namespace()  # a worker that skipped worker_setup, if it still can
    return mounts.student_folder()


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
    stems = [Path(n).stem for n in job.notebooks]
    budget = job.budget or student_budget(job.timeout, len(stems))
    deadline = time.monotonic() + budget
    group = _worker_hierarchy().group(sid, cgroups.Limits(int(job.memory_limit_gb * 2**30))) if job.limits else None
    ipc_dir = None
    usage: dict[str, int] = {}
    try:
        shared = _worker_zygote(job)
        _remember_release(job.template)
        ipc_dir = Path(_ipc_folder(shared))
        sandbox.SandboxSpec(str(ipc_dir), str(template / "site"), str(template / "etc"),
                            memory_limit_gb=job.memory_limit_gb, isolate=job.isolate,
                            cgroup=group.procs_files if group else []).write(course / "sandbox.json")
        env = _env(course, template, ipc_dir)
        if shared:
            env[zygote.CONTROL_ENV] = shared.control
        submitted = course / "submitted" / sid / ASSIGNMENT
        submitted.mkdir(parents=True)
        for name, text in job.notebooks.items():
            (submitted / name).write_text(text, encoding="utf-8")
        autograded = course / "autograded" / sid / ASSIGNMENT
        options = kernel_options(ipc_dir, job.timeout)
        run = dict(memory_limit_gb=job.memory_limit_gb, checks=course / "checks.json", env=env)
        verdict_files = []
        refused: dict[str, str] = {}
        stopped: list[str] = []  # notebooks the time budget stopped or never reached
        lap("copy")

        def left() -> float:
            return deadline - time.monotonic()

        if stems:
            verdict_files.append(course / "verdicts.json")
            code, log = run_nbgrader(course, ["autograde", ASSIGNMENT, "--student", sid, *options],
                                     timeout=left(), verdicts=verdict_files[-1], timings=course / "timings.json", **run)
            _add_timings(course / "timings.json", phases)
            if code == -9:  # the budget ran out: what was graded stays graded, nothing runs again
                finished = nbgrader_run.finished_notebooks(verdict_files[-1])
                stopped = [s for s in stems if s not in finished]
                for stem in stems:
                    problems += _diagnose(autograded, stem) if stem not in stopped else []
            elif code == 0 and "There was an error processing" not in log:
                for stem in stems:
                    problems += _diagnose(autograded, stem)
            else:
                # nbgrader drops the whole assignment when one notebook fails: isolate the culprit
                kept = course / "kept"
                kept.mkdir()
                for stem in stems:
                    if left() <= 0:
                        stopped.append(stem)
                        continue
                    verdict_files.append(course / f"verdicts-{stem}.json")
                    code, log = run_nbgrader(course, ["autograde", ASSIGNMENT, "--student", sid, "--notebook", stem,
                                                      *options], timeout=left(), verdicts=verdict_files[-1], **run)
                    if code == 0 and "There was an error processing" not in log:
                        problems += _diagnose(autograded, stem)
                        shutil.copy(autograded / f"{stem}.ipynb", kept / f"{stem}.ipynb")
                    elif code == -9:
                        stopped.append(stem)  # (what it wrote of the notebook before, unexecuted, goes below)
                    else:
                        why = _failure(log)
                        if why.startswith("nbgrader"):
                            refused[stem] = why  # (its feedback page says why; nbgrader made none)
                        problems.append(f"{stem}: {why}; scored 0")
                autograded.mkdir(parents=True, exist_ok=True)
                for f in kept.glob("*.ipynb"):
                    shutil.copy(f, autograded / f.name)
            if stopped:
                problems.append(f"stopped: time budget ({budget} s for the whole submission) ran out; "
                                f"{', '.join(stopped)} scored 0 (not run again)")
                for stem in stopped:
                    (autograded / f"{stem}.ipynb").unlink(missing_ok=True)
        lap("autograde")
        if group is not None:
            group.kill()
            usage = group.usage()
            problems += _usage_problems(usage, group.limits)
        verdicts, stray = scores.read_verdicts(verdict_files)
        problems += [f"suspicious: {s}" for s in stray]
        graded = [s for s in stems if (autograded / f"{s}.ipynb").exists()]
        points = json.loads((course / "points.json").read_text())
        cells, written = scores.trusted_cells(course, sid, graded, points, verdicts)
        result_scores = {stem: sum(cells.get(stem, {}).values()) for stem in stems}
        all_cells = {stem: {**cells[stem], **written.get(stem, {})} for stem in graded}
        lost = {f"{stem}/{g}": points[stem][g] - got for stem in graded for g, got in cells[stem].items()
                if got < points[stem][g]}
        mistakes = {key: _mistake(verdicts.get(key.split("/", 1)[1], {})) for key in lost}
        target = Path(job.feedback_dir) / sid  # made even when empty: it marks the student as graded
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if graded:
            secrets = [str(p) for p in (course, template, Path(job.work_dir), ipc_dir, Path.cwd(), Path.home(),
                                        Path(sys.prefix), Path(sys.base_prefix), Path(tempfile.gettempdir()))]
            for stem in graded:
                scores.clean_for_feedback(autograded / f"{stem}.ipynb", verdicts, secrets)
            if job.notebooks_dir:  # for the class's course folder (`course_folder.record`)
                kept = Path(job.notebooks_dir) / sid
                shutil.rmtree(kept, ignore_errors=True)
                kept.mkdir(parents=True)
                for stem in graded:
                    shutil.copy(autograded / f"{stem}.ipynb", kept / f"{stem}.ipynb")
            lap("scores")
            run_nbgrader(course, ["generate_feedback", ASSIGNMENT, "--student", sid, "--force",
                                  "--HTMLExporter.sanitize_html=True",
                                  f"--GenerateFeedback.exporter_class={FEEDBACK_EXPORTER}"], timeout=600, env=env)
            for f in (course / "feedback" / sid / ASSIGNMENT).glob("*.html"):
                shutil.copy(f, target / f.name)
            lap("feedback")
        for stem, reason in refused.items():
            _not_graded_page(target / f"{stem}.html", stem, f"{reason}. This notebook scored 0. Download the released "
                             "notebook again, copy your answers into its answer cells, and leave the other cells as "
                             "they are.")
        for stem in stopped:
            _not_graded_page(target / f"{stem}.html", stem,
                             f"Grading stopped: your submission's time budget ({budget} s for all your notebooks) "
                             "ran out before this notebook was graded. It scored 0. Look for cells that run long or "
                             "never end (a loop, a training run too large for the grade profile).")
    finally:
        lap("scores")
        shutil.rmtree(course, ignore_errors=True)
        if group is not None:
            group.remove()
        if ipc_dir is not None:
            mounts.release(str(ipc_dir))
        lap("cleanup")
    return StudentResult(sid, result_scores, lost, problems, round(time.perf_counter() - start, 1), job.digest,
                         {k: v for k, v in phases.items() if v > 0}, usage, all_cells, mistakes=mistakes)


def _mistake(verdict: dict) -> str:
    """What a lost test cell's verdict says went wrong, as a name the class report counts."""
    if verdict.get("failure"):
        return str(verdict.get("mistake") or "other")[:120]
    # the visible tests before the hidden check failed (or the cell did not run), or the cell failed after it
    return "visible tests failed (the hidden check did not run)" if not verdict.get("runs") else "visible tests failed"


def _not_graded_page(path: Path, stem: str, text: str) -> None:
    """A feedback page that says why, where nbgrader made none."""
    from .feedback import with_csp

    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{stem}</title></head><body>"
            f"<h1>{stem}: not graded</h1><p>{html.escape(text)}</p></body></html>\n")
    path.write_text(with_csp(page), encoding="utf-8")


def _usage_problems(usage: dict[str, int], limits: cgroups.Limits) -> list[str]:
    """What the student's processes ran into, for the report."""
    found = []
    if usage.get("oom_kills"):
        found.append(f"memory: the student's processes reached the {limits.memory_bytes / 2**30:g} GB they share; "
                     f"{usage['oom_kills']} killed")
    if usage.get("forks_refused"):
        found.append(f"processes: {usage['forks_refused']} forks refused over the limit of {limits.processes}")
    return found


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
    if not forked.usable() or not mounts.in_worker_namespace():
        return None
    template = Path(job.template)
    return _shared_zygote(template / "site", template / "etc", job.memory_limit_gb, job.isolate)


def _shared_zygote(site: Path, etc: Path, memory_limit_gb: float, isolate: bool) -> "zygote.Zygote | None":
    """The worker's zygote for a sandbox that binds `site` and `etc`: the running one if it
    binds the same files (`template.sandbox_digest`) under the same limits, else a new one. Its
    sandbox holds this worker's folder of students' IPC folders (`mounts.py`)."""
    key = (course_template.sandbox_digest(site, etc), memory_limit_gb, isolate)
    running = _SHARED_ZYGOTE.get("zygote")
    if running is not None and _SHARED_ZYGOTE.get("key") == key and running.process.poll() is None:
        return running
    _stop_worker_zygote()
    spec = sandbox.SandboxSpec(mounts.enter_worker_namespace(), str(site), str(etc), memory_limit_gb=memory_limit_gb,
                               isolate=isolate)
    try:
        shared = zygote.Zygote(spec).start()
    except OSError:
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
    if _SHARED_ZYGOTE.get("zygote") is not None or not forked.usable() or not mounts.in_worker_namespace():
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


def _errors(log: str) -> str:
    """nbgrader's ERROR lines and the tracebacks under them (its warnings, such as a restored test
    cell's "checksum has changed", are not why a notebook failed)."""
    kept, inside = [], False
    for line in log.splitlines():
        if line.startswith("["):
            inside = "| ERROR]" in line
        if inside:
            kept.append(line)
    return "\n".join(kept)


def _failure(log: str) -> str:
    """Why nbgrader failed a notebook, in words a student and a TA understand (from its errors only)."""
    errors = _errors(log)
    lower = errors.lower()
    if "DeadKernelError" in errors or "Kernel died" in errors:
        return "the kernel died (os._exit, a crash or out of memory)"
    if "CellTimeoutError" in errors:
        return "a cell ran past its time limit and did not stop when interrupted"
    if "Kernel didn't respond" in errors:
        return "the kernel did not start in time"
    if "has been modified" in errors or "checksum mismatch" in lower:
        return "nbgrader refused it: a test cell was changed into another kind of cell or lost its metadata"
    if "duplicate" in lower and "grade" in lower:
        return "nbgrader refused it: two cells carry the same grade id (copied test cells)"
    if "missing" in lower and "cell" in lower:
        return "nbgrader refused it: a cell of the released notebook is missing or was changed"
    last = next((line.strip() for line in reversed(errors.splitlines()) if "Error" in line and ":" in line), "")
    detail = f" ({last[:200]})" if last else " (the notebook's cell structure is broken)"
    return "nbgrader could not grade it" + detail

