"""Final grades from the class's course folder (`course-lab export OUT`): autograded and written
points per notebook, the total, and how many written answers are still ungraded, as one CSV
of this lab's own, or the CSV that Canvas's or Moodle's gradebook import reads (`lms.py`).

Points are the gradebook's: a test cell's trusted points (or the TA's override in
formgrader), a written answer's manual grade, extra credit. A late policy the TA sets
(`late_penalty`, a fraction of the total) applies to submissions the LMS marked late.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from . import course_folder, lms
from .safe_text import printable, spreadsheet_cell

ASSIGNMENT = course_folder.ASSIGNMENT


@dataclasses.dataclass
class FinalGrade:
    student_id: str
    canvas_id: str
    late: bool
    autograded: dict[str, float]  # notebook -> points
    written: dict[str, float]
    ungraded: int  # written answers without a manual grade
    penalty: float
    total: float
    maximum: float


def final_grades(out: Path, *, late_penalty: float = 0.0) -> tuple[list[FinalGrade], list[str], float]:
    """Every student of the course folder `out`: (grades, notebooks, the maximum)."""
    state = course_folder.saved_results(out)  # (the late flags)
    pages, lms_ids = course_folder.read_class(out)
    notebooks, maximum = course_folder.lab_maxima(out)
    by_student: dict[str, dict[str, course_folder.NotebookGrades]] = {}
    for (sid, stem), page in pages.items():
        by_student.setdefault(sid, {})[stem] = page
    rows = []
    for sid in sorted(by_student):
        auto = {nb: 0.0 for nb in notebooks}
        written = {nb: 0.0 for nb in notebooks}
        ungraded = 0
        for stem, page in by_student[sid].items():
            for grade in page.grades.values():
                target = written if grade.cell_type == "markdown" else auto
                target[stem] = target.get(stem, 0.0) + grade.score
                ungraded += grade.cell_type == "markdown" and grade.waiting
        late = bool(state.get(sid, {}).get("late"))
        points = sum(auto.values()) + sum(written.values())
        penalty = round(points * late_penalty, 4) if late else 0.0
        rows.append(FinalGrade(sid, lms_ids.get(sid, ""), late, auto, written, ungraded, penalty,
                               round(points - penalty, 4), maximum))
    return rows, notebooks, maximum


def write_csv(path: Path, rows: list[FinalGrade], notebooks: list[str]) -> None:
    """The lab's own CSV: one row per student, points per notebook, total, maximum, ungraded answers."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "canvas_id", "late", *(f"{nb} autograded" for nb in notebooks),
                         *(f"{nb} written" for nb in notebooks), "autograded", "written", "late_penalty", "total",
                         "max_score", "written_ungraded"])
        for r in rows:
            writer.writerow([spreadsheet_cell(r.student_id), spreadsheet_cell(r.canvas_id), "yes" if r.late else "",
                             *(f"{r.autograded[nb]:g}" for nb in notebooks),
                             *(f"{r.written[nb]:g}" for nb in notebooks),
                             f"{sum(r.autograded.values()):g}", f"{sum(r.written.values()):g}", f"{r.penalty:g}",
                             f"{r.total:g}", f"{r.maximum:g}", r.ungraded])


def export(out: Path, *, fmt: str = "csv", path: Path | None = None, roster: lms.Roster | None = None,
           assignment: str = "Lab 4", id_column: str = "Username", late_penalty: float = 0.0) -> tuple[Path, list[str]]:
    """Write the final grades of `out` in `fmt` ("csv", "canvas", "moodle"); (the file, what the TA must
    know: ungraded written answers, roster students without a submission (0), submissions not
    in the roster)."""
    rows, notebooks, maximum = final_grades(out, late_penalty=late_penalty)
    notes = []
    ungraded = [r for r in rows if r.ungraded]
    if ungraded:
        notes.append(f"PREMATURE: {sum(r.ungraded for r in ungraded)} written answer(s) of {len(ungraded)} student(s) "
                     "have no manual grade yet (course-lab formgrade OUT)")
    if roster is not None:
        found = [roster.find(r.student_id, r.canvas_id) for r in rows]
        matched = {id(row) for row in found if row is not None}
        missing = [row for row in roster.rows if id(row) not in matched]
        strangers = [r.student_id for r, row in zip(rows, found) if row is None]
        if missing:
            notes.append(f"{len(missing)} student(s) of the roster without a submission get 0: "
                         + ", ".join(printable(m.get(roster.key) or m.get("Student", "?"), 60) for m in missing))
        if strangers:
            notes.append(f"{len(strangers)} submission(s) not in the roster (in the file, check them): "
                         + ", ".join(printable(s, 60) for s in strangers))
        for row in missing:
            sid = row.get(roster.key, "") or row.get("Student", "")
            rows.append(FinalGrade(sid, row.get("ID", ""), False, {nb: 0.0 for nb in notebooks},
                                   {nb: 0.0 for nb in notebooks}, 0, 0.0, 0.0, maximum))
    default = {"csv": "final_grades.csv", "canvas": "canvas_grades.csv", "moodle": "moodle_grades.csv"}[fmt]
    path = Path(path) if path else out / default
    if fmt == "csv":
        write_csv(path, rows, notebooks)
    else:
        plain = [{"student_id": r.student_id, "canvas_id": r.canvas_id, "total": r.total,
                  "note": _note(r)} for r in rows]
        if fmt == "canvas":
            lms.write_canvas(path, plain, assignment, maximum, roster)
        else:
            lms.write_moodle(path, plain, assignment, id_column, roster)
    return path, notes


def _note(r: FinalGrade) -> str:
    text = f"autograded {sum(r.autograded.values()):g}, written {sum(r.written.values()):g}"
    if r.late:
        text += f", late (-{r.penalty:g})" if r.penalty else ", late"
    if r.ungraded:
        text += f", {r.ungraded} written answer(s) not graded yet"
    return text
