"""Scores and feedback from what the grader saw, never from what the kernel claims.

A test cell's points = nbgrader's auto score (no error in the cell), capped at the cell's
points from the solutions, AND the trusted checker's verdict for that cell; 0 for a
notebook that was not submitted. Manual and extra-credit scores never count (written
answers are graded in formgrader). The trusted points are written back into the student's
gradebook so that nbgrader's feedback shows the same numbers as grades.csv.

The executed notebook is cleaned before nbgrader renders the feedback: a test cell shows the
checker's message (what was expected, what came back) instead of a traceback, paths of the
grading machine are replaced, JavaScript outputs are dropped (HTML is sanitized by nbconvert).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

ASSIGNMENT = "lab4"
REDACTED = "<grader>"
NOT_GRADED_YET = ("Not graded yet: written answers are graded by hand after the autograding, and this score will "
                  "change when yours is.")


def trusted_cells(course: Path, sid: str, stems: list[str], points: dict[str, dict[str, float]],
                  verdicts: dict[str, dict]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, None | float]]]:
    """The student's gradebook, rewritten from the trusted verdicts, in one pass: returns
    (notebook stem -> {test cell -> trusted points}, notebook stem -> {written answer's grade cell ->
    None (waits for a manual grade) or 0.0 (left as released: nbgrader scores it 0)}) for the
    submitted notebooks. Test cells get the trusted points as their autograded score (feedback shows
    what grades.csv counts); each written answer that waits gets the comment `NOT_GRADED_YET`, so
    that its feedback page says so instead of showing a score of 0."""
    from nbgrader.api import Gradebook, MissingEntry

    tests: dict[str, dict[str, float]] = {}
    written: dict[str, dict[str, None | float]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for stem in stems:
            cells = points.get(stem, {})
            tests[stem] = {grade_id: 0.0 for grade_id in cells}
            try:
                notebook = gb.find_submission_notebook(stem, ASSIGNMENT, sid)
            except MissingEntry:
                continue
            for grade in notebook.grades:
                if grade.name in cells:
                    auto = float(grade.auto_score or 0.0)
                    trusted = bool(verdicts.get(grade.name, {}).get("passed"))
                    tests[stem][grade.name] = min(max(auto, 0.0), cells[grade.name]) if trusted else 0.0
                    grade.auto_score = tests[stem][grade.name]
                    grade.manual_score = None
                    grade.extra_credit = None
            written[stem] = {grade.name: None if grade.needs_manual_grade else 0.0 for grade in notebook.grades
                             if grade.name not in cells}
            for comment in notebook.comments:
                if written[stem].get(comment.name, 0.0) is None:
                    comment.auto_comment = NOT_GRADED_YET
        gb.db.commit()
    return tests, written


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _clean_output(output, secrets: list[str]) -> None:
    for key in ("text", "evalue"):
        if isinstance(output.get(key), str):
            output[key] = _redact(output[key], secrets)
    if isinstance(output.get("traceback"), list):
        output["traceback"] = [_redact(str(line), secrets) for line in output["traceback"]]
    data = output.get("data")
    if isinstance(data, dict):
        for mime in [m for m in data if "javascript" in m or m.startswith("application/vnd")]:
            del data[mime]
        for mime, value in list(data.items()):
            if isinstance(value, str):
                data[mime] = _redact(value, secrets)
            elif isinstance(value, list):
                data[mime] = [_redact(str(v), secrets) for v in value]


CELL_BYTES = 2**20  # of a cell's outputs the feedback shows; the rest is replaced by a note
PAGE_BYTES = 10 * 2**20  # of a page's


def _output_size(output) -> int:
    return sum(len(str(output.get(key, ""))) for key in ("text", "data", "traceback", "evalue"))


def _truncated_note(limit: str) -> dict:
    return nbformat.v4.new_output("stream", name="stdout",
                                  text=f"[course-lab] the rest of this cell's output is not shown (over {limit})\n")


def clean_for_feedback(path: Path, verdicts: dict[str, dict], secrets: list[str]) -> None:
    """Rewrite the executed notebook at `path` as the feedback should show it: the checker's
    messages, no paths of the grading machine, no JavaScript, at most `CELL_BYTES` of outputs per
    cell and `PAGE_BYTES` per page (with a note where outputs were left out)."""
    nb = nbformat.read(path, as_version=4)
    secrets = sorted({s for s in secrets if s and len(s) > 3}, key=len, reverse=True)
    page = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept, size, noted = [], 0, False
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":  # always kept (nbgrader grades by it), shortened
                output["evalue"] = str(output.get("evalue", ""))[:2000]
                output["traceback"] = [str(line)[:2000] for line in list(output.get("traceback") or [])[-50:]]
                kept.append(output)
                continue
            grown = _output_size(output)
            if size + grown > CELL_BYTES or page + grown > PAGE_BYTES:
                if not noted:
                    kept.append(_truncated_note("1 MB per cell" if size + grown > CELL_BYTES else "10 MB per page"))
                    noted = True
                continue
            size, page = size + grown, page + grown
            kept.append(output)
        cell.outputs = kept
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        verdict = verdicts.get(grade_id) if grade_id else None
        outputs = []
        for output in cell.get("outputs", []):
            if verdict is not None and output.get("output_type") == "error":
                continue  # replaced by the checker's verdict below
            _clean_output(output, secrets)
            outputs.append(output)
        if verdict is not None:
            kernel_errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if verdict.get("failure"):  # the checker's message, never the kernel's account of it
                ename, message = "AssertionError", verdict["failure"]
            elif kernel_errors:  # the visible tests failed (or the cell failed after a passed check)
                ename, message = kernel_errors[-1].get("ename", "Error"), kernel_errors[-1].get("evalue", "")
            elif not verdict.get("passed"):
                ename, message = "AssertionError", "the hidden check did not run (the cell was not executed as released)"
            else:
                ename = None
            if ename is not None:
                ename = re.sub(r"\W", "", str(ename))[:60] or "Error"
                message = _redact(str(message), secrets)
                outputs.append(nbformat.v4.new_output("error", ename=ename, evalue=message,
                                                      traceback=[f"{ename}: {message}"]))
        cell.outputs = outputs
    nbformat.write(nb, path)


def read_verdicts(paths: list[Path]) -> tuple[dict[str, dict], list[str]]:
    """Merge the checker's verdict files of one student's nbgrader runs."""
    verdicts: dict[str, dict] = {}
    stray: list[str] = []
    for path in paths:
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        for grade_id, verdict in data.get("verdicts", {}).items():
            if verdict.get("runs") or grade_id not in verdicts:
                verdicts[grade_id] = verdict
        stray += data.get("stray", [])
    return verdicts, stray
