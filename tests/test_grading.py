"""Autograding: submissions are read and repaired, every student is graded on their own,
bad submissions cost only their own points, and hidden checks stay hidden."""
import csv
import html
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from course_utils.grading import submissions as subs_mod
from course_utils.grading.autograde import StudentResult, autograde, write_grades, write_report
from course_utils.grading.submissions import match_names, prepare_notebook, read_submissions, student_id_from_filename
from grading_fixtures import (RELEASE, ROOT, WRONG_ANSWERS, load, release_names, replace_solution, solved,
                              with_wrong_answer, write_student, write_zip)

NB00 = "00_getting_started.ipynb"
GOOD = "def batch_accuracy(logits, labels):\n    return (logits.argmax(1) == labels).float().mean().item()\n"


# ---------------------------------------------------------------- reading submissions (fast)

@pytest.mark.parametrize("filename, student", [
    ("jdoe.zip", "jdoe"), ("jdoe_lab4.zip", "jdoe"), ("doejohn_12345_67890_lab4.zip", "doejohn"),
    ("s1234567-lab4.zip", "s1234567"),
])
def test_student_id_from_lms_file_names(filename, student):
    assert student_id_from_filename(filename) == student


def test_custom_id_pattern_and_its_error():
    assert student_id_from_filename("lab4_jdoe.zip", r"lab4_(?P<student>\w+)\.zip") == "jdoe"
    with pytest.raises(ValueError, match="named group 'student'"):
        student_id_from_filename("x.zip", r"(\w+)")


def test_zip_members_are_read_never_extracted(tmp_path):
    zdir = tmp_path / "zips"
    zdir.mkdir()
    with zipfile.ZipFile(zdir / "jdoe_lab4.zip", "w") as zf:
        zf.writestr("../../evil/" + NB00, json.dumps(solved(NB00)))
        zf.writestr("jdoe/lab4/" + NB00, json.dumps(solved(NB00)))
        zf.writestr("__MACOSX/._" + NB00, "junk")
        zf.writestr("lab4/.ipynb_checkpoints/" + NB00, "junk")
    (sub,) = read_submissions(zdir, RELEASE)
    assert sub.student_id == "jdoe" and list(sub.notebooks) == [NB00]
    assert not (tmp_path / "evil").exists()


def test_unreadable_zip_and_oversized_member(tmp_path, monkeypatch):
    zdir = tmp_path / "zips"
    zdir.mkdir()
    (zdir / "broken.zip").write_bytes(b"not a zip")
    write_zip(zdir, "big_lab4.zip", {NB00: solved(NB00)})
    monkeypatch.setattr(subs_mod, "MAX_NOTEBOOK_BYTES", 1000)
    found = {s.student_id: s for s in read_submissions(zdir, RELEASE)}
    assert any("not a readable zip" in p for p in found["broken"].problems)
    assert any("over the" in p for p in found["big"].problems) and not found["big"].notebooks


def test_two_zips_for_one_student_is_an_error(tmp_path):
    write_zip(tmp_path, "jdoe_1.zip", {NB00: solved(NB00)})
    write_zip(tmp_path, "jdoe_2.zip", {NB00: solved(NB00)})
    with pytest.raises(ValueError, match="two zip files"):
        read_submissions(tmp_path, RELEASE)


def test_names_are_matched_by_their_number():
    expected = ["00_a.ipynb", "01_b.ipynb", "02_c.ipynb"]
    found = {"00_a.ipynb": b"0", "01_b (1).ipynb": b"1", "02_c-Copy1.ipynb": b"2a", "02_c-Copy2.ipynb": b"2b",
             "notes.ipynb": b"x"}
    matched, problems = match_names(found, expected)
    assert matched == {"00_a.ipynb": b"0", "01_b.ipynb": b"1"}
    text = "\n".join(problems)
    assert "01_b (1).ipynb was graded as 01_b.ipynb" in text
    assert "02_c.ipynb is missing, and 02_c-Copy1.ipynb, 02_c-Copy2.ipynb could each be it" in text
    assert "notes.ipynb is not part of the lab" in text


def test_deleted_test_cell_is_restored_in_place_and_outputs_dropped():
    release = nbformat.read(RELEASE / NB00, as_version=4)
    nb = solved(NB00)
    test_index = next(i for i, c in enumerate(nb["cells"])
                      if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "batch_accuracy_tests")
    del nb["cells"][test_index]
    nb["cells"][1]["outputs"] = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x" * 2_000_000}]
    text, problems = prepare_notebook(json.dumps(nb).encode(), release, NB00)
    fixed = nbformat.reads(text, as_version=4)
    assert fixed.cells[test_index].metadata["nbgrader"]["grade_id"] == "batch_accuracy_tests"
    assert fixed.cells[test_index - 1].metadata["nbgrader"]["grade_id"] == "batch_accuracy"
    assert all(not c.outputs for c in fixed.cells if c.cell_type == "code")
    assert any("deleted; restored" in p for p in problems) and any("saved outputs dropped" in p for p in problems)


def test_edited_test_cell_is_reported_and_malformed_json_refused():
    release = nbformat.read(RELEASE / NB00, as_version=4)
    nb = solved(NB00)
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "batch_accuracy_tests":
            cell["source"] = "print('all good')"
    _, problems = prepare_notebook(json.dumps(nb).encode(), release, NB00)
    assert any("was edited" in p for p in problems)
    text, problems = prepare_notebook(b'{"cells": [', release, NB00)
    assert text is None and "not a valid notebook" in problems[0]


def test_grades_csv_and_report(tmp_path):
    results = [StudentResult("b", {"00_x": 2.0}, {}, [], 3.0, "d"),
               StudentResult("a", {"00_x": 0.0, "01_y": 1.0}, {"00_x/t": 2.0}, ["00_x.ipynb is missing"], 1.0, "d")]
    maxima = {"00_x": 2.0, "01_y": 3.0}
    write_grades(results, maxima, tmp_path / "grades.csv")
    rows = list(csv.reader(open(tmp_path / "grades.csv")))
    assert rows[0] == ["student_id", "00_x", "01_y", "score", "max_score"]
    assert rows[1] == ["b", "2", "0", "2", "5"] and rows[2] == ["a", "0", "1", "1", "5"]
    write_report(results, maxima, tmp_path / "report.txt")
    report = (tmp_path / "report.txt").read_text()
    assert "a: 1 / 5" in report and "lost 2 on 00_x/t" in report and "! 00_x.ipynb is missing" in report


# ---------------------------------------------------------------- grading a class (runs nbgrader)

def _nb00(body: str) -> dict:
    return replace_solution(solved(NB00), "batch_accuracy", body)


def _bad_submissions() -> dict[str, dict]:
    """Student id -> {notebook name: content}; each case touches notebook 00 only."""
    deleted = _nb00(GOOD)
    deleted["cells"] = [c for c in deleted["cells"]
                        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "batch_accuracy_tests"]
    edited = _nb00("def batch_accuracy(logits, labels):\n    return 0.5\n")
    for cell in edited["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "batch_accuracy_tests":
            cell["source"] = "print('all good')"
    saved_outputs = _nb00(GOOD)
    for cell in saved_outputs["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x" * 1_000_000}]
    return {
        "infinite_loop": {NB00: _nb00(GOOD + "while True:\n    pass\n")},
        "os_exit": {NB00: _nb00("import os\nos._exit(1)\n")},
        "segfault": {NB00: _nb00("import ctypes\nctypes.string_at(0)\n")},
        "memory_hog": {NB00: _nb00(GOOD + "hog = bytearray(64 * 1024**3)\n")},
        "deleted_test": {NB00: deleted},
        "edited_test": {NB00: edited},
        "malformed": {NB00: '{"cells": [ {"cell_type": "code", '},
        "misnamed": {"00_getting_started (1).ipynb": _nb00(GOOD)},
        "huge_output": {NB00: saved_outputs},
        "printing_loop": {NB00: _nb00(GOOD + "for i in range(100000):\n    print('spam' * 20)\n")},
        "calls_reference": {NB00: _nb00("from course_utils.metrics import accuracy\n"
                                        "def batch_accuracy(logits, labels):\n    return accuracy(logits, labels)\n")},
        "wrong_count": {NB00: _nb00("def batch_accuracy(logits, labels):\n"
                                    "    return float((logits.argmax(1) == labels).sum())\n")},
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    write_student(folder, "solution", {name: solved(name) for name in release_names()})
    write_student(folder, "blank", {name: load(RELEASE / name) for name in release_names()})
    for student, notebooks in _bad_submissions().items():
        write_student(folder, student, notebooks)
    for notebook, grade_id, source in WRONG_ANSWERS:
        write_student(folder, f"wrong-{grade_id}", {notebook: with_wrong_answer(notebook, grade_id, source)})
    (folder / "missing_all" / "lab4").mkdir(parents=True)
    out = tmp_path_factory.mktemp("graded")
    results = autograde(folder, out, course_root=ROOT, workers=2, timeout=30, progress=False)
    return folder, out, {r.student_id: r for r in results}


def _total(result):
    return sum(result.scores.values())


@pytest.mark.grading
def test_solution_gets_full_marks_and_blank_gets_zero(graded):
    _, out, results = graded
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows["solution"]["score"] == rows["solution"]["max_score"], results["solution"]
    assert float(rows["blank"]["score"]) == 0
    assert not results["solution"].lost and not results["solution"].problems


@pytest.mark.grading
@pytest.mark.parametrize("student, points, problem", [
    ("infinite_loop", 2, "time limit"),
    ("os_exit", 0, "kernel died"),
    ("segfault", 0, "kernel died"),
    ("memory_hog", 2, "out of memory"),
    ("deleted_test", 2, "deleted; restored"),
    ("edited_test", 0, "was edited"),
    ("malformed", 0, "not a valid notebook"),
    ("misnamed", 2, "misnamed"),
    ("huge_output", 2, "saved outputs dropped"),
    ("printing_loop", 2, None),
    ("calls_reference", 0, None),
    ("wrong_count", 0, None),
    ("missing_all", 0, "is missing"),
])
def test_bad_submissions_cost_only_their_own_points(graded, student, points, problem):
    _, out, results = graded
    result = results[student]
    assert result.scores.get("00_getting_started", 0) == points, result
    if problem:
        assert any(problem in p for p in result.problems), result.problems
    report = (out / "report.txt").read_text()
    assert f"{student}: " in report


@pytest.mark.grading
@pytest.mark.parametrize("notebook, grade_id", [(n, g) for n, g, _ in WRONG_ANSWERS])
def test_a_typical_wrong_answer_loses_that_cell_and_keeps_the_others(graded, notebook, grade_id):
    _, out, results = graded
    result = results[f"wrong-{grade_id}"]
    stem = Path(notebook).stem
    maxima = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    solution = results["solution"].scores[stem]
    assert list(result.lost) == [f"{stem}/{grade_id}_tests"], result
    assert result.scores[stem] == solution - result.lost[f"{stem}/{grade_id}_tests"] < solution
    assert maxima[f"wrong-{grade_id}"][stem] == f"{result.scores[stem]:g}"


@pytest.mark.grading
def test_feedback_per_student_and_hidden_checks_stay_hidden(graded):
    _, out, _ = graded
    feedback = out / "feedback" / "solution"
    pages = sorted(feedback.glob("*.html"))
    assert [p.stem for p in pages] == [Path(n).stem for n in release_names()]
    released = "\n".join((RELEASE / n).read_text() for n in release_names())
    assert "BEGIN HIDDEN TESTS" not in released and "course_utils.checks" not in released
    shown = "\n".join(html.unescape(p.read_text())
                      for p in pages + sorted((out / "feedback" / "wrong_count").glob("*.html")))
    # the feedback shows the hidden cells' one import-and-call line, never what the checks do
    for module in sorted((ROOT / "course_utils" / "checks").glob("*.py")):
        for line in module.read_text().splitlines():
            line = line.strip()
            if len(line) > 30 and not line.startswith(("#", "from ", "import ", '"""', "def check_")) \
                    and line not in released:
                assert line not in shown, f"{module.name} leaks into the feedback: {line!r}"


@pytest.mark.grading
def test_grading_again_skips_unchanged_submissions(graded, tmp_path):
    folder, out, first = graded
    again = autograde(folder, out, course_root=ROOT, workers=1, timeout=30, progress=False,
                      executor=ThreadPoolExecutor(1))
    assert {r.student_id: r.seconds for r in again} == {s: r.seconds for s, r in first.items()}
