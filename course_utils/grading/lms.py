"""What learning-management systems give the grader and take back from it.

Given: Canvas's "Download Submissions" names every file
`<name>_[LATE_]<user id>_<submission id>_<the student's file name>`, e.g.
`doejohn_12345_67890_lab4.zip` or, for a student who uploaded notebooks instead of a zip,
`doejohn_LATE_12345_67891_00_getting_started.ipynb` (Canvas, "Download assignment
submissions"; its submission ids grow with time, so the larger one is the newer file).

Taken: final grades as the CSV that Canvas's gradebook import reads (`write_canvas`: the
columns of Canvas's own gradebook export, `Student, ID, SIS User ID, SIS Login ID, Section`,
then one column per assignment, and a "Points Possible" row under the header), and as the CSV
that Moodle's "Import grades: CSV file" reads (`write_moodle`: one identifier column, which the
TA maps to Moodle's email address, username or ID number when importing, a grade column and a
feedback column). A roster (`read_roster`) is either LMS's gradebook export.
"""
from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

from .safe_text import spreadsheet_cell

CANVAS_NAME = re.compile(r"^(?P<student>[^_]+)_(?:(?P<late>LATE)_)?(?P<canvas_id>\d+)_(?P<submission>\d+)_"
                         r"(?P<filename>.+)$")
CANVAS_ID_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


@dataclasses.dataclass(frozen=True)
class LmsName:
    """What an LMS's file name says: the student's name part, their LMS id, late or not, the
    submission's id (its order: larger is newer) and the file name the student uploaded."""

    student: str
    canvas_id: str
    late: bool
    submission: int
    filename: str


def canvas_name(filename: str) -> LmsName | None:
    """The fields of a Canvas submission file name, or None if `filename` is not one."""
    match = CANVAS_NAME.match(Path(filename).name)
    if not match:
        return None
    return LmsName(match["student"], match["canvas_id"], bool(match["late"]), int(match["submission"]),
                   match["filename"])


@dataclasses.dataclass
class Roster:
    """A class list from an LMS: one dict per student (the export's own columns), and the column
    whose values are the ids grading uses (`key`)."""

    rows: list[dict[str, str]]
    columns: list[str]
    key: str

    def find(self, student_id: str, canvas_id: str = "") -> dict[str, str] | None:
        """The roster row of a graded student: by the Canvas id from the submission's name first,
        then by the grading id in the key column."""
        for row in self.rows:
            if canvas_id and row.get("ID", "").strip() == canvas_id:
                return row
        for row in self.rows:
            if row.get(self.key, "").strip().lower() == student_id.lower():
                return row
        return None


def read_roster(path: str | Path, key: str | None = None) -> Roster:
    """A gradebook export of Canvas (its second row may be "Points Possible") or Moodle, or any CSV
    with a header. `key`: the column holding the ids that grading gives students; default the
    first of `SIS Login ID`, `Username`, `ID number`, `Email address`, `ID` the file has."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]
    rows = [r for r in rows if "points possible" not in " ".join(r.values()).lower()]
    if key is None:
        key = next((c for c in ("SIS Login ID", "Username", "ID number", "Email address", "ID") if c in columns),
                   columns[0] if columns else "")
    if key not in columns:
        raise ValueError(f"the roster {path} has no column {key!r} (its columns: {', '.join(columns)})")
    return Roster(rows, columns, key)


def write_canvas(path: Path, rows: list[dict], assignment: str, points_possible: float,
                 roster: Roster | None = None) -> None:
    """Canvas's gradebook import: the identifying columns of Canvas's export (Canvas matches a row by
    `ID`, then `SIS User ID`, then `SIS Login ID`), one column titled `assignment` (Canvas creates an
    assignment of that name, or updates the one whose title is `Name (assignment id)`), and a
    "Points Possible" row. `rows`: `final_grades.FinalGrade`-like dicts with student_id, canvas_id,
    total."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*CANVAS_ID_COLUMNS, assignment])
        writer.writerow(["Points Possible", "", "", "", "", f"{points_possible:g}"])
        for row in rows:
            found = roster.find(row["student_id"], row.get("canvas_id", "")) if roster else None
            found = found or {}
            writer.writerow([spreadsheet_cell(found.get("Student", row["student_id"])),
                             spreadsheet_cell(found.get("ID", row.get("canvas_id", ""))),
                             spreadsheet_cell(found.get("SIS User ID", "")),
                             spreadsheet_cell(found.get("SIS Login ID", "" if roster else row["student_id"])),
                             spreadsheet_cell(found.get("Section", "")), f"{row['total']:g}"])


def write_moodle(path: Path, rows: list[dict], assignment: str, id_column: str,
                 roster: Roster | None = None) -> None:
    """Moodle's CSV grade import: the identifier (mapped on import to the user field the TA names,
    e.g. "Email address"), the grade item `assignment`, and its feedback column. The identifier is
    the roster's `id_column` for the student, or the grading id without a roster."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([id_column, assignment, f"{assignment} (feedback)"])
        for row in rows:
            found = roster.find(row["student_id"], row.get("canvas_id", "")) if roster else None
            ident = (found or {}).get(id_column, "") or row["student_id"]
            writer.writerow([spreadsheet_cell(ident), f"{row['total']:g}", spreadsheet_cell(row.get("note", ""))])
