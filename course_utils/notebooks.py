"""Running the lab's notebooks (papermill) and generating the student release (nbgrader).

`run_notebooks` is the lab's main job (`course-lab run`): it executes every solution
notebook in this one process, writes the executed notebooks and an HTML rendering, and
collects each notebook's recorded headline numbers (see `course_utils.results`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ASSIGNMENT = "lab4"
SOLUTIONS_DIR = Path("solutions") / ASSIGNMENT
RELEASE_DIR = Path("labs") / ASSIGNMENT


@dataclasses.dataclass
class NotebookRun:
    """The outcome of executing one notebook."""

    name: str
    status: str  # "ok" or "failed"
    seconds: float
    results: dict[str, Any]
    error: str | None = None
    executed: str | None = None
    html: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)  # result name -> the notebook's label
    kernel_log: str | None = None  # what the kernel process wrote to its stderr, when it wrote anything
    retried: str | None = None  # why the notebook was run a second time (a cell that timed out), if it was


def find_notebooks(directory: str | os.PathLike = SOLUTIONS_DIR, select: list[str] | None = None) -> list[Path]:
    """The notebooks in `directory`, in lab order; `select` keeps those whose file name starts
    with one of its entries (e.g. ["01", "02"])."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no notebook folder {directory}: run this from the lab's repository root")
    paths = sorted(p for p in directory.glob("*.ipynb") if not p.name.startswith("."))
    if select:
        paths = [p for p in paths if any(p.name.startswith(s) for s in select)]
        if not paths:
            raise FileNotFoundError(f"no notebook in {directory} matches {select}")
    return paths


# Notebook 01's transfer table takes notebook 03's defended models when their checkpoints exist; a
# run of the whole lab executes 01 after 03 so that a fresh clone's `make run` shows them.
RUNS_AFTER = {"01": ("03",)}


def execution_order(paths: list[Path]) -> list[Path]:
    """`paths` in the order a run executes them: lab order, except that a notebook of RUNS_AFTER
    waits for the notebooks it reads when they are in the run too."""
    pending, done, order = [Path(p) for p in paths], set(), []
    while pending:
        for path in pending:
            waits = [w for w in RUNS_AFTER.get(path.name[:2], ()) if w not in done
                     and any(p.name.startswith(w) for p in pending if p != path)]
            if not waits:
                order.append(path)
                done.add(path.name[:2])
                pending.remove(path)
                break
        else:  # a cycle in RUNS_AFTER: keep lab order
            order += pending
            break
    return order


# The longest cell of any profile (training on a busy 2-core CPU) takes a few minutes; a cell that
# runs for half an hour is stuck, and fails its notebook instead of stalling the run (and CI).
CELL_TIMEOUT = int(os.environ.get("LAB_CELL_TIMEOUT", "1800"))


def _kernel_manager_class():
    """jupyter_client's kernel manager, with the kernel process's own stderr sent to the file
    named by `stderr_path` instead of the terminal of `course-lab run`.

    Everything a cell prints, Python's warnings included, reaches the notebook through ipykernel;
    the process's stderr carries the kernel application's log (ipykernel >= 7 warns there at every
    start that the kernel "is running over TCP without encryption", which on a loopback socket of
    one user's run says nothing actionable) and a copy of what C libraries write to file
    descriptor 2. The file is kept beside the executed notebook and named when a notebook fails.
    (jupyter_client 8.10's CurveZMQ `transport_encryption="auto"` would remove the warning itself,
    but a run with it lost a cell's replies once and hung; it is too new to rely on.)
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Unicode

    class LabKernelManager(AsyncKernelManager):
        stderr_path = Unicode("", config=True, help="file that receives the kernel process's stderr")

        async def start_kernel(self, **kw):
            if not self.stderr_path or "stderr" in kw:
                return await super().start_kernel(**kw)
            with open(self.stderr_path, "ab") as stderr:  # the kernel has its own copy once started
                return await super().start_kernel(stderr=stderr, **kw)

    return LabKernelManager


def run_notebooks(paths: list[Path], *, profile: str = "quick", out_dir: str | os.PathLike = "build",
                  html: bool = True, log_output: bool = False, cell_timeout: int | None = None,
                  on_start: Callable[[int, Path], None] | None = None,
                  on_finish: Callable[[int, NotebookRun], None] | None = None,
                  timeout_retries: int = 1) -> list[NotebookRun]:
    """Execute each notebook with papermill on `profile`, from its own folder; a cell that runs
    longer than `cell_timeout` seconds (default `CELL_TIMEOUT`: `LAB_CELL_TIMEOUT` in the
    environment, else 30 min) fails its notebook.

    A notebook whose cell timed out is run again from the start, with a fresh kernel, up to
    `timeout_retries` times, and `NotebookRun.retried` says why. nbclient can wait forever for
    a cell with ipywidgets whose kernel has long gone idle (jupyter/nbclient#312, seen here once
    in CI in notebook 02's eps slider): a stuck run is not a slow notebook. A notebook that is
    really too slow times out again and fails. Any other error fails it at once.

    Writes `out_dir/executed/<name>.ipynb`, `out_dir/html/<name>.html` and
    `out_dir/results.json`; what a kernel process writes to its stderr goes to
    `out_dir/logs/<name>.kernel.log`. A failing notebook is recorded and the others still run.
    `on_start(i, path)` and `on_finish(i, run)` are called around the i-th notebook (from 0),
    for progress reports.
    """
    import nbformat
    import papermill
    from traitlets.config import Config

    from .results import read_records

    timeout = CELL_TIMEOUT if cell_timeout is None else cell_timeout
    manager = _kernel_manager_class()
    out_dir = Path(out_dir)
    for sub in ("executed", "logs") + (("html",) if html else ()):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    runs = []
    for index, path in enumerate(execution_order(paths)):
        path = Path(path)
        if on_start:
            on_start(index, path)
        target = out_dir / "executed" / path.name
        kernel_log = out_dir / "logs" / (path.stem + ".kernel.log")
        kernel_log.unlink(missing_ok=True)
        config = Config({manager.__name__: {"stderr_path": str(kernel_log.resolve())}})  # papermill chdirs
        start = time.perf_counter()
        retried = None
        for attempt in range(timeout_retries + 1):
            error, timed_out = None, False
            try:
                papermill.execute_notebook(str(path), str(target), parameters={"PROFILE": profile},
                                           cwd=str(path.parent), progress_bar=False, log_output=log_output,
                                           kernel_name="python3", execution_timeout=timeout,
                                           kernel_manager_class=manager, config=config)
            except Exception as exc:  # papermill raises PapermillExecutionError and friends; the run goes on
                error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
                timed_out = "Timeout" in type(exc).__name__
                if timed_out:
                    error = (f"{type(exc).__name__}: a cell ran longer than {timeout} s (LAB_CELL_TIMEOUT); "
                             "it is stuck or too slow")
            if not timed_out or attempt == timeout_retries:
                break
            retried = error
        seconds = time.perf_counter() - start
        records, html_path = {}, None
        if target.exists():
            nb = nbformat.read(str(target), as_version=4)
            records = read_records(nb)
            if html:
                html_path = out_dir / "html" / (path.stem + ".html")
                html_path.write_text(_to_html(nb), encoding="utf-8")
        has_log = kernel_log.exists() and kernel_log.stat().st_size > 0
        if kernel_log.exists() and not has_log:
            kernel_log.unlink()
        run = NotebookRun(path.stem, "failed" if error else "ok", round(seconds, 1),
                          {name: r.value for name, r in records.items()}, error, str(target),
                          str(html_path) if html_path else None,
                          {name: r.label for name, r in records.items()}, str(kernel_log) if has_log else None,
                          retried)
        runs.append(run)
        if on_finish:
            on_finish(index, run)
    lab_order = [Path(p).stem for p in paths]
    runs.sort(key=lambda r: lab_order.index(r.name))
    summary = {"profile": profile, "notebooks": [dataclasses.asdict(r) for r in runs]}
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return runs


def _to_html(nb) -> str:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def summary_table(runs: list[NotebookRun]) -> str:
    """The run's summary for a terminal: notebook, status and seconds, each notebook's headline
    numbers (or its error) wrapped below it; no line is wider than 100 columns. Every number is
    in `index.html` (`course_utils.report`)."""
    from .report import summary_lines

    return "\n".join(summary_lines(runs))


def generate_release(root: str | os.PathLike = ".", release_dir: str | os.PathLike | None = None) -> Path:
    """Regenerate the student release from the nbgrader source notebooks.

    Runs `nbgrader generate_assignment` in `root` (which holds nbgrader_config.py) with a
    throw-away gradebook, writing `<release_dir>/lab4/` (default: `root/labs/lab4`).
    nbgrader shells out to alembic, so the interpreter's bin/ goes first on PATH.
    """
    root = Path(root).resolve()
    release_dir = Path(release_dir).resolve() if release_dir else root / RELEASE_DIR.parent
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force",
               f"--CourseDirectory.release_directory={release_dir}", f"--db=sqlite:///{tmp}/gradebook.db",
               "--log-level=WARN"]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment failed:\n{proc.stdout}\n{proc.stderr}")
    return release_dir / ASSIGNMENT
