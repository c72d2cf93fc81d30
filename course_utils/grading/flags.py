"""Answer cells that reach into the grading machinery: a hint for the TA, not a defence.

The defences are the sandbox and the trusted checker; a student can hide any of these
patterns (string building, `getattr`), so an empty list proves nothing. A listed cell is
worth a look: honest answers to this lab need none of it.
"""
from __future__ import annotations

import re

import nbformat

PATTERNS = {
    "IPython's shell or its transformers": r"get_ipython|\bIPython\b|input_transformers|ast_transformers|events\.register",
    "sys.modules": r"sys\s*\.\s*modules",
    "builtins": r"\bbuiltins\b|__builtins__|__import__",
    "/proc": r"/proc\b",
    "the gradebook or nbgrader": r"gradebook|nbgrader",
    "the hidden checks or the grader": r"course_utils\s*\.\s*(checks|grading)|check_client|COURSE_CHECKER",
    "subprocesses": r"\bsubprocess\b|os\s*\.\s*(system|popen|exec\w*|spawn\w*|fork)|\bpty\b|multiprocessing",
    "signals": r"\bsignal\b|os\s*\.\s*kill",
    "ctypes": r"\bctypes\b|\bcffi\b",
    "tracing or frame hooks": r"settrace|setprofile|_getframe|f_back|f_globals|f_locals|gc\s*\.\s*get_objects",
    "sockets": r"\bsocket\b",
    # the builtins, not a method: `encoder.eval()` is an honest answer's, `re.compile(` a regular expression's
    "exec or eval": r"(?<![.\w])(?:exec|eval|compile)\s*\(",
    "patching torch or its comparisons": r"torch\s*\.\s*\w+\s*=[^=]|setattr\s*\(\s*torch|__eq__|__bool__",
}
_COMPILED = {name: re.compile(pattern) for name, pattern in PATTERNS.items()}


def suspicious_cells(notebook_text: str, release_sources: set[str], name: str) -> list[str]:
    """'<notebook>/<cell>: <what it reaches>' for every answer cell, or cell not as released, that matches."""
    try:
        nb = nbformat.reads(notebook_text, as_version=4)
    except Exception:  # unreadable notebooks are reported elsewhere
        return []
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id")
        source = str(cell.get("source", ""))
        if not meta.get("solution") and source.strip() in release_sources:
            continue
        hits = [what for what, pattern in _COMPILED.items() if pattern.search(source)]
        if hits:
            where = grade_id if meta.get("solution") and grade_id else f"cell {index + 1}"
            found.append(f"{name.removesuffix('.ipynb')}/{where}: reaches {', '.join(hits)}")
    return found
