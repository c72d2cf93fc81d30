"""`OUT` as an nbgrader course folder that formgrader opens: one gradebook for the class
(`gradebook.db`) and every student's autograded notebooks (`autograded/<id>/lab4/`).

The gradebook is written here, from what the trusted grading returned, never by nbgrader
autograde in this folder: a test cell's autograded score is the trusted points (a score a
submission rigged inside nbgrader never gets here), written answers wait for a manual grade
(or score 0 when left as released). Nothing here runs a student's code.

A re-run of `autograde` replaces the submissions of the students it graded again and keeps
the TA's manual grades and comments of every answer whose text did not change; the grades it
had to drop (the answer changed) are returned for the report.

The notebooks are rendered by formgrader's own exporter, which shows markdown as HTML without
sanitizing it, in the TA's Jupyter session (a script there would act with the TA's token). So
the notebooks saved here carry no markdown: each markdown cell and markdown output is
rendered once, through the feedback pages' allowlist (`feedback.sanitize`), and stored as one
line of plain HTML (which markdown passes through as it is); HTML outputs are sanitized too,
SVG outputs dropped, and TeX commands that make links or run code in MathJax disarmed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import re
import shutil
import warnings
from pathlib import Path

import nbformat

from . import scores

ASSIGNMENT = "lab4"
GRADEBOOK = "gradebook.db"
STATE_FILE = ".autograde-state.json"  # autograde's results per student (`StudentResult` as dicts)
CONFIG = """# The class's nbgrader course folder, written by course-lab autograde
# (course_utils/grading/course_folder.py).
# Open it with: course-lab formgrade {out}
c = get_config()
c.CourseDirectory.course_id = "lab4"
import os
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(os.path.dirname(os.path.abspath(__file__)), "gradebook.db")
c.HTMLExporter.sanitize_html = True
c.GenerateFeedback.exporter_class = "course_utils.grading.feedback.FeedbackExporter"
"""
# MathJax commands that make links, set HTML attributes or load code
_TEX_COMMANDS = re.compile(r"\\(href|url|class|cssId|style|attr|data|unicode|require|html|texttip|toggle|mathtip)\b")


def saved_results(out: Path) -> dict[str, dict]:
    """student id -> the result autograde saved for them in `out` (empty before the first run)."""
    path = out / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _gradebook(out: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{out / GRADEBOOK}")


def prepare(out: Path, template: Path) -> None:
    """`out` made a course folder: its config, and a gradebook whose assignment has the cells of
    the template's (created from it, or brought up to date when the lab changed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(CONFIG.format(out=out))
    # formgrader lists the assignments that have a source folder; this one stays empty (no
    # solutions here, and nothing for formgrader's Generate button to rebuild the gradebook from)
    (out / "source" / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
    (out / "source" / ASSIGNMENT / "README.txt").write_text(
        "Empty on purpose: this course folder was written by course-lab autograde. Grade written answers in\n"
        "formgrader's Manual Grading; do not Generate, Release, Collect or Autograde here (course-lab autograde\n"
        "grades, in its sandbox).\n")
    if not (out / GRADEBOOK).exists():
        shutil.copy(template / GRADEBOOK, out / GRADEBOOK)
        return
    with _gradebook(template) as source, _gradebook(out) as target:
        target.update_or_create_assignment(ASSIGNMENT)
        for nb in source.find_assignment(ASSIGNMENT).notebooks:
            target.update_or_create_notebook(nb.name, ASSIGNMENT)
            for cell in nb.grade_cells:
                target.update_or_create_grade_cell(cell.name, nb.name, ASSIGNMENT, max_score=cell.max_score,
                                                   cell_type=cell.cell_type)
            for cell in nb.solution_cells:
                target.update_or_create_solution_cell(cell.name, nb.name, ASSIGNMENT)
            for cell in nb.source_cells:
                target.update_or_create_source_cell(cell.name, nb.name, ASSIGNMENT, cell_type=cell.cell_type,
                                                    locked=cell.locked, source=cell.source, checksum=cell.checksum)


def disarm_tex(text: str) -> str:
    """`text` with MathJax's link, attribute and code-loading commands shown as words."""
    return _TEX_COMMANDS.sub(lambda m: m.group(1), text)


def _html_line(markup: str) -> str:
    """Sanitized HTML as one line wrapped in a block (markdown passes it through unchanged)."""
    from .feedback import sanitize

    return "<div>" + disarm_tex(sanitize(markup)).replace("\r", "").replace("\n", "&#10;") + "</div>"


def for_formgrader(nb) -> None:
    """`nb` (an autograded notebook, cleaned as its feedback is) made safe for formgrader's pages."""
    from nbconvert.filters.markdown import markdown2html

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _html_line(markdown2html(cell.source))
            cell.pop("attachments", None)
        elif cell.cell_type == "raw":
            cell.source = _html_line("<pre>" + html.escape(cell.source) + "</pre>")
            cell.cell_type = "markdown"
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                data = output.get("data")
                if not isinstance(data, dict):
                    continue
                if "text/markdown" in data:
                    markdown = data.pop("text/markdown")
                    if "text/html" not in data:  # (rendered below, like any HTML)
                        data["text/html"] = markdown2html(str(markdown))
                for mime in list(data):
                    if mime == "text/html":
                        data[mime] = _html_line(str(data[mime]) if not isinstance(data[mime], list)
                                                else "".join(data[mime]))
                    elif mime == "text/latex":
                        data[mime] = disarm_tex(str(data[mime]))
                    elif mime not in ("text/plain", "image/png", "image/jpeg", "image/gif"):
                        del data[mime]  # SVG (which can carry script), JSON, widgets, anything else
    nb.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")})


def _answers(path: Path) -> dict[str, str]:
    """grade id -> the source of that nbgrader cell, in an autograded notebook saved here."""
    if not path.exists():
        return {}
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade_id")}


def record(out: Path, student_id: str, cells: dict[str, dict[str, float | None]], notebooks: dict[str, bytes],
           *, canvas_id: str = "") -> list[str]:
    """Record one student's grading in the class's course folder; the manual grades it dropped.

    `cells`: notebook stem -> grade id -> points of an autograded cell, `None` for a written
    answer that waits for a manual grade, 0 for one left as released; a stem not in it was not
    graded (every cell 0). `notebooks`: stem -> the autograded notebook (cleaned as its feedback
    is), made safe here for formgrader. Manual scores, extra credit and comments of an answer
    whose text did not change are kept; of a test cell, when no answer of its notebook changed."""
    from nbgrader.api import MissingEntry

    folder = out / "autograded" / student_id / ASSIGNMENT
    new_answers = {}
    staged = {}
    for stem, data in notebooks.items():
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        for_formgrader(nb)
        staged[stem] = nbformat.writes(nb)
        new_answers[stem] = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
                             if c.metadata.get("nbgrader", {}).get("grade_id")}
    dropped = []
    with _gradebook(out) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes inside nbgrader's add_submission
        kept: dict[tuple[str, str], tuple] = {}
        try:
            old = gb.find_submission(ASSIGNMENT, student_id)
        except MissingEntry:
            old = None
        if old is not None:
            for nb in old.notebooks:
                before = _answers(folder / f"{nb.name}.ipynb")
                after = new_answers.get(nb.name, {})
                answer_cells = {c.name for c in nb.notebook.solution_cells}
                answers_same = all(before.get(name) == after.get(name) for name in answer_cells)
                for grade in nb.grades:  # a written answer by its own text, a test cell by its notebook's answers
                    same = before.get(grade.name) == after.get(grade.name) if grade.name in answer_cells \
                        else answers_same
                    if grade.manual_score is not None or grade.extra_credit is not None:
                        if same:
                            kept[("grade", nb.name, grade.name)] = (grade.manual_score, grade.extra_credit)
                        else:
                            dropped.append(f"{nb.name}/{grade.name}: manual grade {grade.manual_score} dropped "
                                           "(the answer changed)")
                for comment in nb.comments:
                    if comment.manual_comment:
                        if before.get(comment.name) == after.get(comment.name):
                            kept[("comment", nb.name, comment.name)] = comment.manual_comment
                        else:
                            dropped.append(f"{nb.name}/{comment.name}: comment dropped (the answer changed)")
            gb.remove_submission(ASSIGNMENT, student_id)
        gb.update_or_create_student(student_id, lms_user_id=canvas_id or None)
        submission = gb.add_submission(ASSIGNMENT, student_id)
        for nb in submission.notebooks:
            values = cells.get(nb.name)
            for grade in nb.grades:
                value = values.get(grade.name, 0.0) if values is not None else 0.0
                grade.auto_score = None if value is None else float(value)
                grade.needs_manual_grade = value is None
                grade.manual_score, grade.extra_credit = kept.get(("grade", nb.name, grade.name), (None, None))
                if grade.manual_score is not None:
                    grade.needs_manual_grade = False
            for comment in nb.comments:
                comment.manual_comment = kept.get(("comment", nb.name, comment.name))
        gb.db.commit()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for stem, text in staged.items():
        (folder / f"{stem}.ipynb").write_text(text, encoding="utf-8")
    return dropped


def remove(out: Path, student_id: str) -> None:
    """A student taken out of the class's course folder (their submission, grades and notebooks)."""
    from nbgrader.api import MissingEntry

    if (out / GRADEBOOK).exists():
        with _gradebook(out) as gb:
            try:
                gb.remove_submission(ASSIGNMENT, student_id)
                gb.remove_student(student_id)
            except MissingEntry:
                pass
    shutil.rmtree(out / "autograded" / student_id, ignore_errors=True)


@dataclasses.dataclass
class CellGrade:
    """One grade of one student's notebook, as nbgrader's gradebook holds it."""

    max_score: float
    cell_type: str  # "code" (a test cell) or "markdown" (a written answer)
    auto_score: float | None
    manual_score: float | None
    extra_credit: float | None
    needs_manual_grade: bool

    @property
    def score(self) -> float:
        """nbgrader's `Grade.score`: the manual score, else the autograded one, plus extra credit."""
        base = self.manual_score if self.manual_score is not None else self.auto_score
        return 0.0 if base is None else base + (self.extra_credit or 0.0)

    @property
    def waiting(self) -> bool:  # a written answer without a manual grade
        return self.needs_manual_grade and self.manual_score is None


@dataclasses.dataclass
class NotebookGrades:
    grades: dict[str, CellGrade]
    comments: dict[str, str | None]  # nbgrader's `Comment.comment`: the manual one, else the automatic one
    late_penalty: float = 0.0

    @property
    def score(self) -> float:
        return sum(g.score for g in self.grades.values()) - self.late_penalty

    @property
    def max_score(self) -> float:
        return sum(g.max_score for g in self.grades.values())


def read_class(out: Path) -> tuple[dict[tuple[str, str], NotebookGrades], dict[str, str]]:
    """Every (student, notebook)'s grades and comments, and every student's LMS id, read in a few
    queries of nbgrader's tables (its schema since 0.9). Through nbgrader's ORM this is a query
    per notebook and per grade: 12 s for a class of 1,000, against well under one here."""
    import sqlite3

    pages: dict[tuple[str, str], NotebookGrades] = {}
    where = ("JOIN submitted_notebook sn ON x.notebook_id = sn.id "
             "JOIN submitted_assignment sa ON sn.assignment_id = sa.id JOIN assignment a ON sa.assignment_id = a.id "
             "JOIN notebook n ON sn.notebook_id = n.id JOIN base_cell bc ON x.cell_id = bc.id")
    with contextlib.closing(sqlite3.connect(f"file:{out / GRADEBOOK}?mode=ro", uri=True)) as db:
        for sid, stem, name, max_score, cell_type, auto, manual, extra, needs, late in db.execute(
                "SELECT sa.student_id, n.name, bc.name, gc.max_score, gc.cell_type, x.auto_score, x.manual_score, "
                f"x.extra_credit, x.needs_manual_grade, sn.late_submission_penalty FROM grade x {where} "
                "JOIN grade_cells gc ON gc.id = bc.id WHERE a.name = ?", (ASSIGNMENT,)):
            page = pages.setdefault((sid, stem), NotebookGrades({}, {}, late or 0.0))
            page.grades[name] = CellGrade(max_score, cell_type, auto, manual, extra, bool(needs))
        for sid, stem, name, auto, manual in db.execute(
                f"SELECT sa.student_id, n.name, bc.name, x.auto_comment, x.manual_comment FROM comment x {where} "
                "WHERE a.name = ?", (ASSIGNMENT,)):
            pages.setdefault((sid, stem), NotebookGrades({}, {})).comments[name] = manual or auto
        students = {sid: lms or "" for sid, lms in db.execute("SELECT id, lms_user_id FROM student")}
    return pages, students


def lab_maxima(out: Path) -> tuple[list[str], float]:
    """The lab's notebooks and its maximum points (autograded and written), from the gradebook."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{out / GRADEBOOK}?mode=ro", uri=True)) as db:
        notebooks = sorted(name for (name,) in db.execute(
            "SELECT n.name FROM notebook n JOIN assignment a ON n.assignment_id = a.id WHERE a.name = ?",
            (ASSIGNMENT,)))
        (maximum,) = db.execute(
            "SELECT coalesce(sum(gc.max_score), 0) FROM grade_cells gc JOIN base_cell bc ON gc.id = bc.id "
            "JOIN notebook n ON bc.notebook_id = n.id JOIN assignment a ON n.assignment_id = a.id WHERE a.name = ?",
            (ASSIGNMENT,)).fetchone()
    return notebooks, float(maximum)


def manual_state(out: Path) -> dict:
    """Per student, the manual grades and comments in the gradebook (for tests and the export)."""
    result: dict = {}
    with _gradebook(out) as gb:
        for student in gb.students:
            for sub in student.submissions:
                for nb in sub.notebooks:
                    for grade in nb.grades:
                        if grade.manual_score is not None:
                            result.setdefault(student.id, {})[f"{nb.name}/{grade.name}"] = grade.manual_score
                    for comment in nb.comments:
                        if comment.manual_comment:
                            result.setdefault(student.id, {})[f"{nb.name}/{comment.name}#comment"] = \
                                comment.manual_comment
    return json.loads(json.dumps(result))


FEEDBACK_STATE = ".feedback-state.json"


def _page_digests(out: Path, students: list[str] | None,
                  pages: dict[tuple[str, str], NotebookGrades] | None = None) -> dict[tuple[str, str], str]:
    """(student, notebook) -> a digest of what its feedback page shows from the gradebook (scores,
    manual grades, extra credit, comments), for the notebooks saved in `out/autograded`."""
    import hashlib

    pages = read_class(out)[0] if pages is None else pages
    digests = {}
    for (sid, stem), page in pages.items():
        if (students is not None and sid not in students) or \
                not (out / "autograded" / sid / ASSIGNMENT / f"{stem}.ipynb").exists():
            continue
        rows = repr((sorted(page.grades.items()), sorted(page.comments.items(), key=lambda kv: kv[0]),
                     page.late_penalty))
        digests[(sid, stem)] = hashlib.sha256(rows.encode()).hexdigest()[:16]
    return digests


def mark_feedback_current(out: Path, students: list[str]) -> None:
    """Record that the feedback pages of `students` show what the gradebook holds now (autograde
    just rendered them), so that `regenerate_feedback` renders them again only once it changes."""
    state_path = out / FEEDBACK_STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    for (sid, stem), digest in _page_digests(out, students).items():
        state[f"{sid}/{stem}"] = digest
    state_path.write_text(json.dumps(state, indent=0, sort_keys=True))


def regenerate_feedback(out: Path, students: list[str] | None = None, *, force: bool = False,
                        workers: int | None = None) -> list[Path]:
    """The feedback pages of `out` rendered again from its gradebook, with the manual grades and the
    TA's comments, through the same sanitizing exporter as autograde's pages (`feedback_page`).
    Only pages whose grades or comments changed since they were last rendered (or all, `force`);
    in a pool of `workers` processes. It renders notebooks; it runs nothing of them."""
    import concurrent.futures
    import os

    out = Path(out).resolve()
    state_path = out / FEEDBACK_STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    pages = read_class(out)[0]
    digests = _page_digests(out, students, pages)
    todo = sorted(key for key, digest in digests.items()
                  if force or state.get(f"{key[0]}/{key[1]}") != digest
                  or not (out / "feedback" / key[0] / f"{key[1]}.html").exists())
    workers = workers or min(len(todo), os.cpu_count() or 1) or 1
    written = []
    if len(todo) > 8 and workers > 1:
        chunks = [[(sid, stem, pages[(sid, stem)]) for sid, stem in todo[i::workers]] for i in range(workers)]
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            for paths in pool.map(_render_pages, [str(out)] * len(chunks), chunks):
                written += paths
    else:
        written = _render_pages(str(out), [(sid, stem, pages[(sid, stem)]) for sid, stem in todo])
    for sid, stem in todo:
        state[f"{sid}/{stem}"] = digests[(sid, stem)]
    state_path.write_text(json.dumps(state, indent=0, sort_keys=True))
    return written


_EXPORTER: dict = {}


def _exporter():
    """nbgrader's feedback template in the feedback pages' exporter, as `generate_feedback` sets it up."""
    if "exporter" not in _EXPORTER:
        import os

        import nbgrader
        from traitlets.config import Config

        from .feedback import FeedbackExporter

        here = Path(os.path.dirname(nbgrader.__file__)) / "server_extensions" / "formgrader"
        c = Config()
        c.HTMLExporter.template_name = "feedback"
        c.HTMLExporter.extra_template_basedirs = [str(here / "templates")]
        c.HTMLExporter.extra_template_paths = [str(here / "static" / "node_modules" / "bootstrap" / "dist" / "css")]
        c.HTMLExporter.sanitize_html = True
        _EXPORTER["exporter"] = FeedbackExporter(config=c)
    return _EXPORTER["exporter"]


def feedback_page(out: Path, student_id: str, stem: str, grades: NotebookGrades | None = None) -> str:
    """One feedback page from the course folder: the scores and comments nbgrader's `GetGrades` puts
    into the notebook (`grades`: from `read_class`, read here when not given), a note on each
    written answer not graded yet, then the sanitizing exporter with nbgrader's feedback template."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader import utils

    grades = read_class(out)[0][(student_id, stem)] if grades is None else grades
    # (written by `record`, validated then: read without validating again, a third of a page's time)
    nb = nbformat.v4.reads((out / "autograded" / student_id / ASSIGNMENT / f"{stem}.ipynb").read_text())
    for cell in nb.cells:  # as GetGrades.preprocess_cell
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        name = meta.get("grade_id")
        grade = grades.grades.get(name)
        if utils.is_solution(cell) or utils.is_task(cell):
            meta["comment"] = grades.comments.get(name)
        if (utils.is_grade(cell) or utils.is_task(cell)) and grade is not None:
            meta["score"], meta["points"] = grade.score, grade.max_score
        if grade is not None and grade.waiting and not meta.get("comment"):
            meta["comment"] = scores.NOT_GRADED_YET
    resources = {"nbgrader": {"notebook": stem, "assignment": ASSIGNMENT, "student": student_id,
                              "score": grades.score, "max_score": grades.max_score,
                              "late_penalty": grades.late_penalty},
                 "unique_key": stem, "output_files_dir": f"{stem}_files",
                 "config_dir": str(out / ".no-custom-css")}  # (no custom.css of the TA's in the pages)
    nb, resources = CSSHTMLHeaderPreprocessor().preprocess(nb, resources)
    page, _ = _exporter().from_notebook_node(nb, resources)
    return page


def _render_pages(out: str, pages: list[tuple[str, str, NotebookGrades]]) -> list[Path]:
    written = []
    for sid, stem, grades in pages:
        target = Path(out) / "feedback" / sid / f"{stem}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(feedback_page(Path(out), sid, stem, grades), encoding="utf-8")
        written.append(target)
    return written
