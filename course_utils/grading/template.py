"""The prepared course that every student's grading starts from (made once per run).

- `solutions/`, `nbgrader_config.py` and a gradebook that knows every grade cell
  (`nbgrader generate_assignment`), as nbgrader needs them;
- `checks.json`: each autograded test cell's grade_id -> the hidden check its hidden block
  calls (`module.check_name`). Every test cell must have exactly one: a cell's points need
  the trusted checker's verdict;
- `points.json`: each test cell's points, from the gradebook made from the solutions (a
  submission's metadata never sets them);
- `site/`: a copy of `course_utils` for the sandboxed kernel, in which `checks` holds only
  stubs that ask the checker (nothing of the hidden checks can be read inside);
- `jupyter/kernels/course-lab-sandbox`: the kernelspec that starts the sandbox; `etc/`.
"""
from __future__ import annotations

import ast
import compileall
import hashlib
import json
import re
import shutil
from pathlib import Path

import nbformat

from . import sandbox

ASSIGNMENT = "lab4"
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", re.S)
CHECK_IMPORT = re.compile(r"from\s+course_utils\.checks\.(\w+)\s+import\s+(check_\w+)")
STUB = '''"""Grading stub: the hidden checks of this notebook run in the grader's checker, outside this kernel."""
from course_utils.grading.check_client import remote_check

{lines}
'''


def test_cell_checks(solutions: Path) -> dict[str, str]:
    """grade_id of every autograded test cell -> the check its hidden block calls."""
    checks, problems = {}, []
    for path in sorted(solutions.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            found = [m for block in HIDDEN.findall(cell.source) for m in CHECK_IMPORT.findall(block)]
            if len(found) != 1:
                problems.append(f"{path.name}/{meta['grade_id']} calls {len(found)} hidden checks (needs one)")
                continue
            if meta["grade_id"] in checks:
                problems.append(f"grade_id {meta['grade_id']} appears twice")
            checks[meta["grade_id"]] = f"{found[0][0]}.{found[0][1]}"
    if problems:
        raise ValueError("every autograded test cell must call exactly one course_utils.checks function in its "
                         "hidden block, so that its points come from the trusted checker: " + "; ".join(problems))
    return checks


def build_site(course_root: Path, site: Path) -> Path:
    """`course_utils` for the sandboxed kernel: the library as students have it, and check stubs."""
    package = course_root / "course_utils"
    if not package.is_dir():  # an installed (non-editable) package
        import course_utils

        package = Path(course_utils.__file__).parent
    target = site / "course_utils"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "checks"))
    stubs = target / "checks"
    stubs.mkdir()
    (stubs / "__init__.py").write_text('"""Grading stubs (see course_utils.grading.check_client)."""\n')
    for module_path in sorted((package / "checks").glob("*.py")):
        if module_path.name.startswith("_"):  # the package and the check framework's own modules: no checks
            continue
        lines = "\n".join(f'{n} = remote_check("{module_path.stem}.{n}")' for n in check_names(module_path))
        (stubs / module_path.name).write_text(STUB.format(lines=lines))
    # compiled once here: the sandbox's copy is read-only, so a kernel could never cache it
    compileall.compile_dir(str(target), quiet=1)
    return site


def check_names(module_path: Path) -> list[str]:
    """The `check_*` functions a hidden-check module defines, read from its source: the TA's
    machine need not import the checks (torch: seconds before a cluster's first task) to write
    their stubs; the checker imports them where it grades."""
    tree = ast.parse(module_path.read_text(), str(module_path))
    return sorted(node.name for node in tree.body
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("check_"))


def sandbox_digest(site: Path, etc: Path) -> str:
    """A digest of what a kernel's sandbox binds from a template (site/ and etc/): the files'
    paths and bytes, without Python's compiled caches (written from the same sources, but not
    byte for byte on two machines). A worker keeps its zygote for a template with the same."""
    h = hashlib.sha256()
    for label, folder in (("site", Path(site)), ("etc", Path(etc))):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(f"{label}/{path.relative_to(folder)}".encode() + b"\0")
                h.update(path.read_bytes())
                h.update(b"\0")
    return h.hexdigest()


def test_cell_points(template: Path) -> dict[str, dict[str, float]]:
    """notebook stem -> {test cell grade_id -> points}, from the template's gradebook."""
    from nbgrader.api import Gradebook

    points: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{template / 'gradebook.db'}") as gb:
        for nb in gb.find_assignment(ASSIGNMENT).notebooks:
            points[nb.name] = {c.name: float(c.max_score) for c in nb.grade_cells if c.cell_type == "code"}
    return points


def finish_template(course_root: Path, template: Path) -> None:
    """Everything the trusted grading adds to nbgrader's prepared course."""
    checks = test_cell_checks(template / "solutions" / ASSIGNMENT)
    (template / "checks.json").write_text(json.dumps(checks, indent=1))
    points = test_cell_points(template)
    missing = [g for cells in points.values() for g in cells if g not in checks]
    if missing:
        raise ValueError(f"autograded cells without a hidden check: {missing}")
    (template / "points.json").write_text(json.dumps(points, indent=1))
    build_site(course_root, template / "site")
    sandbox.install_kernelspec(template / "jupyter")
    sandbox.write_etc(template / "etc")
