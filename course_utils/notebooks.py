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
from typing import Any

from .results import read_results

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


# The longest cell of any profile (training on a busy 2-core CPU) takes a few minutes; a cell that
# runs for half an hour is stuck, and fails its notebook instead of stalling the run (and CI).
CELL_TIMEOUT = int(os.environ.get("LAB_CELL_TIMEOUT", "1800"))


def run_notebooks(paths: list[Path], *, profile: str = "quick", out_dir: str | os.PathLike = "build",
                  html: bool = True, log_output: bool = False) -> list[NotebookRun]:
    """Execute each notebook with papermill on `profile`, from its own folder; a cell that runs
    longer than `CELL_TIMEOUT` seconds (`LAB_CELL_TIMEOUT` in the environment) fails its notebook.

    Writes `out_dir/executed/<name>.ipynb`, `out_dir/html/<name>.html` and
    `out_dir/results.json`; a failing notebook is recorded and the others still run.
    """
    import nbformat
    import papermill

    out_dir = Path(out_dir)
    (out_dir / "executed").mkdir(parents=True, exist_ok=True)
    if html:
        (out_dir / "html").mkdir(parents=True, exist_ok=True)
    runs = []
    for path in paths:
        path = Path(path)
        target = out_dir / "executed" / path.name
        start = time.perf_counter()
        error = None
        try:
            papermill.execute_notebook(str(path), str(target), parameters={"PROFILE": profile},
                                       cwd=str(path.parent), progress_bar=False, log_output=log_output,
                                       kernel_name="python3", execution_timeout=CELL_TIMEOUT)
        except Exception as exc:  # papermill raises PapermillExecutionError and friends; the run goes on
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            if "Timeout" in type(exc).__name__:
                error = f"{type(exc).__name__}: a cell ran longer than {CELL_TIMEOUT} s (LAB_CELL_TIMEOUT); it is stuck or too slow"
        seconds = time.perf_counter() - start
        results, html_path = {}, None
        if target.exists():
            nb = nbformat.read(str(target), as_version=4)
            results = read_results(nb)
            if html:
                html_path = out_dir / "html" / (path.stem + ".html")
                html_path.write_text(_to_html(nb), encoding="utf-8")
        runs.append(NotebookRun(path.stem, "failed" if error else "ok", round(seconds, 1), results, error,
                                str(target), str(html_path) if html_path else None))
    summary = {"profile": profile, "notebooks": [dataclasses.asdict(r) for r in runs]}
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return runs


def _to_html(nb) -> str:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def summary_table(runs: list[NotebookRun]) -> str:
    """One plain-text table: notebook, status, seconds, headline numbers."""
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else json.dumps(v)

    rows = [("notebook", "status", "seconds", "results")]
    for r in runs:
        numbers = ", ".join(f"{k}={fmt(v)}" for k, v in r.results.items())
        rows.append((r.name, r.status, f"{r.seconds:.1f}", numbers if not r.error else f"{numbers} {r.error}".strip()))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


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
