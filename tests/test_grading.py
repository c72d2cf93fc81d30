"""Autograding: submissions are read and repaired, every student is graded on their own,
bad submissions cost only their own points, and hidden checks stay hidden."""
import csv
import html
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import nbformat
import pytest

from course_utils.grading import submissions as subs_mod
from course_utils.grading.autograde import StudentResult, autograde, write_grades, write_report
from course_utils.grading.submissions import (match_names, prepare_notebook, read_submissions, safe_student_id,
                                              student_id_from_filename)
import dishonest_round_two as round_two
from dishonest import MARKER, SLEEP, ZERO, attacks
from grader_watch import GraderWatch
from grading_fixtures import (RELEASE, ROOT, WRONG_ANSWERS, independent, lab_points, load, release_names,
                              replace_solution, solved, with_wrong_answer, write_student, write_zip, wrong_student)

NB00 = "00_getting_started.ipynb"
GOOD = "def batch_accuracy(logits, labels):\n    return (logits.argmax(1) == labels).float().mean().item()\n"


# ---------------------------------------------------------------- reading submissions (fast)

@pytest.mark.parametrize("filename, student", [
    ("jdoe.zip", "jdoe"), ("jdoe_lab4.zip", "jdoe"), ("doejohn_12345_67890_lab4.zip", "doejohn"),
    ("s1234567_lab4.zip", "s1234567"), ("smith-jonesmary_12345_67890_lab4.zip", "smith-jonesmary"),
    ("smith-jonesmary.zip", "smith-jonesmary"),
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


def test_a_resubmission_beside_the_first_grades_the_newest_and_reports_the_other(tmp_path):
    old = write_zip(tmp_path, "jdoe_1.zip", {NB00: load(RELEASE / NB00)})
    write_zip(tmp_path, "jdoe_2.zip", {NB00: solved(NB00)})
    os.utime(old, (1, 1))  # the older file
    write_zip(tmp_path, "amy_lab4.zip", {NB00: solved(NB00)})
    report = []
    subs = {s.student_id: s for s in read_submissions(tmp_path, RELEASE, report=report)}
    assert sorted(subs) == ["amy", "jdoe"] and not report
    assert "batch_accuracy(logits" in subs["jdoe"].notebooks[NB00].replace("\\n", "\n")
    assert any("1 older submission(s) not graded (jdoe_1.zip); the newest by the files' times, jdoe_2.zip, was"
               in p for p in subs["jdoe"].problems), subs["jdoe"].problems


def test_canvas_names_give_the_student_their_canvas_id_and_late_and_loose_notebooks_are_one_student(tmp_path):
    """Canvas's export: zips and loose notebooks (uploaded files), a resubmission (a larger submission id),
    a late one, a hyphenated name, and two students of one name told apart by their Canvas ids."""
    nb02 = "02_synthetic_adversarial_examples.ipynb"
    write_zip(tmp_path, "doejohn_12345_67890_lab4.zip", {NB00: load(RELEASE / NB00)})
    write_zip(tmp_path, "doejohn_12345_67999_lab4-1.zip", {NB00: solved(NB00)})  # resubmitted: newer
    os.utime(tmp_path / "doejohn_12345_67999_lab4-1.zip", (1, 1))  # (the LMS's order wins over the files' times)
    for name, nb in [(f"smith-jonesmary_LATE_222_500_{NB00}", solved(NB00)),
                     (f"smith-jonesmary_LATE_222_501_{nb02}", solved(nb02)),
                     ("smith-jonesmary_LATE_222_502_00_getting_started-1.ipynb", solved(NB00)),
                     ("leeann_333_600_00_getting_started.ipynb", solved(NB00)),
                     ("leeann_444_601_00_getting_started.ipynb", solved(NB00))]:
        (tmp_path / name).write_text(json.dumps(nb))
    report = []
    subs = {s.student_id: s for s in read_submissions(tmp_path, RELEASE, report=report)}
    assert sorted(subs) == ["doejohn", "leeann_333", "leeann_444", "smith-jonesmary"], (subs, report)
    john, mary = subs["doejohn"], subs["smith-jonesmary"]
    assert (john.canvas_id, john.late, mary.canvas_id, mary.late) == ("12345", False, "222", True)
    assert "batch_accuracy(logits" in john.notebooks[NB00].replace("\\n", "\n")
    assert any("older submission(s) not graded (doejohn_12345_67890_lab4.zip); the newest by Canvas's submission "
               "ids" in p for p in john.problems), john.problems
    assert sorted(mary.notebooks) == [NB00, nb02]
    assert any("smith-jonesmary_LATE_222_500_00_getting_started.ipynb: an older upload" in p for p in mary.problems)
    assert subs["leeann_333"].canvas_id == "333" and any("two students named 'leeann'" in line for line in report)


def test_hostile_names_are_reported_or_made_safe(tmp_path):
    for name in ["-x.zip", ".._lab4.zip", "a b_lab4.zip", "$(touch pwn)_lab4.zip", "ok_lab4.zip", "a;b_lab4.zip",
                 "a:b_lab4.zip"]:
        write_zip(tmp_path / "zips", name, {NB00: solved(NB00)})
    report = []
    subs = read_submissions(tmp_path / "zips", RELEASE, report=report)
    ids = sorted(s.student_id for s in subs)
    assert ids == ["ok", "touch_pwn", "x"], (ids, report)  # 'a b', 'a;b' and 'a:b' all give 'a_b': none graded
    text = "\n".join(report)
    assert "'-x.zip': student id '-x' graded as 'x'" in text and "'.._lab4.zip': no usable student id" in text
    assert "'$(touch pwn)_lab4.zip': student id '$(touch pwn)' graded as 'touch_pwn'" in text
    assert "'a b_lab4.zip', 'a:b_lab4.zip', 'a;b_lab4.zip' all give student id 'a_b'; none graded" in text
    assert not (tmp_path / "pwn").exists() and not (ROOT / "pwn").exists()


@pytest.mark.parametrize("raw, safe", [("jdoe", "jdoe"), ("j.doe@uni", "j.doe@uni"), ("..", None), ("-", None),
                                       ("a/../b", None), ("  ", None), ("$(rm -rf ~)", "rm_-rf")])
def test_safe_student_ids(raw, safe):
    assert safe_student_id(raw) == safe


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


def test_without_bubblewrap_grading_refuses_unless_told(tmp_path, monkeypatch, capsys):
    from course_utils import cli
    from course_utils.grading import sandbox

    monkeypatch.setattr(sandbox, "bwrap_executable", lambda: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        autograde(tmp_path, tmp_path / "out", course_root=ROOT)
    assert cli.main(["autograde", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "--no-sandbox" in capsys.readouterr().err
    write_report([], {"00_x": 2.0}, tmp_path / "report.txt",
                 warnings=["WARNING: NOT SANDBOXED (--no-sandbox): students' code ran with the grader's rights"])
    assert (tmp_path / "report.txt").read_text().startswith("WARNING: NOT SANDBOXED")


def test_without_cgroups_grading_refuses_unless_told(tmp_path, monkeypatch, capsys):
    from course_utils import cli
    from course_utils.grading import cgroups

    def unavailable():
        raise cgroups.LimitsUnavailable("no cgroup file system is mounted. " + cgroups.HINT)

    monkeypatch.setattr(cgroups, "detect", unavailable)
    with pytest.raises(cgroups.LimitsUnavailable, match="--no-limits"):
        autograde(tmp_path, tmp_path / "out", course_root=ROOT)
    assert cli.main(["autograde", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "--no-limits" in capsys.readouterr().err


def test_a_test_cell_turned_into_markdown_or_unlocked_is_restored_from_the_release():
    release = nbformat.read(RELEASE / NB00, as_version=4)
    for change in ("markdown", "unlocked", "points"):
        nb = solved(NB00)
        cell = next(c for c in nb["cells"]
                    if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "batch_accuracy_tests")
        if change == "markdown":
            cell["cell_type"] = "markdown"
            cell.pop("outputs"), cell.pop("execution_count")
        elif change == "unlocked":
            cell["metadata"]["nbgrader"]["locked"] = False
        else:
            cell["metadata"]["nbgrader"]["points"] = 100
        text, problems = prepare_notebook(json.dumps(nb).encode(), release, NB00)
        fixed = next(c for c in nbformat.reads(text, as_version=4).cells
                     if c.metadata.get("nbgrader", {}).get("grade_id") == "batch_accuracy_tests")
        original = next(c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade_id") ==
                        "batch_accuracy_tests")
        assert fixed.cell_type == "code" and fixed.metadata["nbgrader"] == original.metadata["nbgrader"], change
        assert any("restored from the release" in p for p in problems), (change, problems)


@pytest.mark.parametrize("log, words", [
    ("[AutogradeApp | ERROR] Notebook has been modified: checksum mismatch", "changed into another kind of cell"),
    ("[AutogradeApp | ERROR] duplicate grade id batch_accuracy_tests", "two cells carry the same grade id"),
    ("[AutogradeApp | ERROR] something unexpected", "could not grade it"),
    # a restored test cell's warning is not why the notebook failed; the error under it is
    ("[AutogradeApp | WARNING] Attribute 'checksum' for cell t has changed!\n"
     "[AutogradeApp | ERROR] There was an error\n    RuntimeError: Kernel died before replying to kernel_info",
     "the kernel died"),
    ("[AutogradeApp | WARNING] Attribute 'checksum' for cell t has changed!\n[AutogradeApp | ERROR] Traceback\n"
     "    nbclient.exceptions.CellTimeoutError: A cell timed out", "did not stop when interrupted"),
])
def test_nbgrader_failures_are_said_in_words(log, words):
    from course_utils.grading.student import _failure

    assert words in _failure(log)


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
    markdown_test = _nb00(GOOD)
    for cell in markdown_test["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "batch_accuracy_tests":
            cell["cell_type"] = "markdown"
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    return {
        "markdown_test": {NB00: markdown_test},
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


STRANGE_FOLDERS = {"a b": "a_b", "$(touch pwn)": "touch_pwn"}


def _snapshot(*folders: Path) -> dict[str, str]:
    """Every file under `folders` (that a student could have touched) -> its content hash."""
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for folder in folders for p in sorted(folder.rglob("*"))
            if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts and "__pycache__" not in p.parts}


def _processes(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and "pytest" not in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


class Run(NamedTuple):
    folder: Path
    out: Path
    results: dict
    snapshots: tuple
    watch: GraderWatch
    tmp_before: set  # grading's folders in /tmp before the run (an earlier test's, swept later)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One autograde run for the whole catalogue: honest, wrong, broken and dishonest students (both
    rounds), while a watch records what the grader's own processes hold."""
    folder = tmp_path_factory.mktemp("submissions")
    out = tmp_path_factory.mktemp("graded")
    write_student(folder, "solution", {name: solved(name) for name in release_names()})
    write_student(folder, "independent", {name: independent(name) for name in release_names()})
    write_student(folder, "blank", {name: load(RELEASE / name) for name in release_names()})
    for student, notebooks in _bad_submissions().items():
        write_student(folder, student, notebooks)
    for i, (notebook, grade_id, source) in enumerate(WRONG_ANSWERS):
        write_student(folder, wrong_student(i), {notebook: with_wrong_answer(notebook, grade_id, source)})
    for student, source in attacks(str(ROOT), str(folder), str(out)).items():
        write_student(folder, student, {NB00: _nb00(source)})
    for name in STRANGE_FOLDERS:
        write_student(folder, name, {NB00: _nb00(GOOD)})
    (folder / "missing_all" / "lab4").mkdir(parents=True)
    for student, notebooks in round_two.tamper_students().items():
        write_student(folder, student, notebooks)
    write_student(folder, "markdown-xss", {NB00: round_two.markdown_attack()})
    for student, notebook in round_two.machine_students().items():
        write_student(folder, student, {NB00: notebook})
    before = _snapshot(ROOT / "course_utils", ROOT / "solutions", ROOT / "labs", folder)
    tmp_before = {p.name for p in Path("/tmp").iterdir() if p.name.startswith(("cl-", "clz-", "course-lab-"))}
    with GraderWatch() as watch:
        results = autograde(folder, out, course_root=ROOT, workers=2, timeout=30, progress=False)
    after = _snapshot(ROOT / "course_utils", ROOT / "solutions", ROOT / "labs", folder)
    return Run(folder, out, {r.student_id: r for r in results}, (before, after), watch, tmp_before)


def _total(result):
    return sum(result.scores.values())


@pytest.mark.grading
def test_solution_gets_full_marks_and_blank_gets_zero(graded):
    _, out, results, _, *_ = graded
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows["solution"]["score"] == rows["solution"]["max_score"], results["solution"]
    assert float(rows["blank"]["score"]) == 0
    assert not results["solution"].lost and not results["solution"].problems


@pytest.mark.grading
@pytest.mark.parametrize("student, points, problem", [
    ("markdown_test", 2, "turned into a markdown cell"),
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
    _, out, results, _, *_ = graded
    result = results[student]
    assert result.scores.get("00_getting_started", 0) == points, result
    if problem:
        assert any(problem in p for p in result.problems), result.problems
    report = (out / "report.txt").read_text()
    assert f"{student}: " in report


@pytest.mark.grading
@pytest.mark.parametrize("index", range(len(WRONG_ANSWERS)), ids=[g for _, g, _ in WRONG_ANSWERS])
def test_a_typical_wrong_answer_loses_that_cell_and_keeps_the_others(graded, index):
    _, out, results, _, *_ = graded
    notebook, grade_id, _ = WRONG_ANSWERS[index]
    result = results[wrong_student(index)]
    stem = Path(notebook).stem
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    solution = results["solution"].scores[stem]
    assert list(result.lost) == [f"{stem}/{grade_id}_tests"], result
    assert result.scores[stem] == solution - result.lost[f"{stem}/{grade_id}_tests"] < solution
    assert rows[wrong_student(index)][stem] == f"{result.scores[stem]:g}"


@pytest.mark.grading
def test_answers_written_from_the_exercise_texts_alone_get_full_marks(graded):
    _, out, results, _, *_ = graded
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows["independent"]["score"] == rows["independent"]["max_score"] == str(lab_points()), results["independent"]
    assert not results["independent"].lost


@pytest.mark.grading
def test_feedback_per_student_and_hidden_checks_stay_hidden(graded):
    _, out, _, _, *_ = graded
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
    folder, out, first, _, *_ = graded
    again = autograde(folder, out, course_root=ROOT, workers=1, timeout=30, progress=False,
                      executor=ThreadPoolExecutor(1))
    assert {r.student_id: r.seconds for r in again} == {s: r.seconds for s, r in first.items()}


# ---------------------------------------------------------------- a dishonest student (issue 11)

@pytest.mark.grading
@pytest.mark.parametrize("student", ZERO)
def test_a_cheat_scores_zero_and_the_honest_student_keeps_full_marks(graded, student):
    _, out, results, _, *_ = graded
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows[student]["score"] == "0", (results[student], open(out / "report.txt").read())
    assert rows["solution"]["score"] == rows["solution"]["max_score"] == str(lab_points())
    report = (out / "report.txt").read_text()
    assert f"{student}: 0 / {lab_points()}" in report


@pytest.mark.grading
def test_report_and_grades_agree_line_by_line(graded):
    _, out, results, _, *_ = graded
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    report = (out / "report.txt").read_text()
    assert set(rows) == set(results)
    for sid, row in rows.items():
        assert f"\n{sid}: {row['score']} / {row['max_score']}  (" in report, sid


@pytest.mark.grading
def test_nothing_outside_the_students_folder_changed(graded):
    folder, out, _, (before, after), *_ = graded
    assert before == after, sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    for place in (ROOT, folder, out, Path("/tmp"), Path.home()):
        assert not (place / MARKER).exists(), place
    feedback = out / "feedback" / "solution" / "00_getting_started.html"
    assert MARKER not in feedback.read_text() and MARKER not in (out / "grades.csv").read_text()
    assert "pwn" not in {p.name for p in folder.iterdir()} and not (ROOT / "pwn").exists()


@pytest.mark.grading
def test_no_process_outlives_the_run(graded):
    assert not _processes(SLEEP), _processes(SLEEP)
    assert not _processes("course_utils.grading.sandbox") and not _processes("bwrap --unshare-all")


@pytest.mark.grading
def test_feedback_shows_the_checks_message_and_leaks_nothing(graded):
    _, out, _, _, *_ = graded
    leak = html.unescape((out / "feedback" / "cheat-leak" / "00_getting_started.html").read_text())
    # passes the visible tests, fails the hidden check: the feedback shows the checker's message
    wrong = html.unescape((out / "feedback" / "cheat-always-equal" / "00_getting_started.html").read_text())
    assert "on 50 random rows of 7 classes expected accuracy" in wrong and "got 0.7500" in wrong
    assert "course_utils/checks" not in wrong and "Traceback (most recent call last)" not in wrong
    assert str(ROOT) not in wrong and "/tmp/" not in wrong  # no path of the grading machine
    secret_lines = [line.strip() for module in sorted((ROOT / "course_utils" / "checks").glob("*.py"))
                    for line in module.read_text().splitlines() if len(line.strip()) > 30
                    and not line.strip().startswith(("#", "from ", "import ", '"""', "def check_"))]
    for page in (leak, wrong):
        for line in secret_lines:
            assert line not in page, f"a hidden check leaks into the feedback: {line!r}"
        assert "BEGIN SOLUTION" not in page
    assert "remote_check(" in leak  # what it could read of the checks: the grading stub
    script = (out / "feedback" / "script-output" / "00_getting_started.html").read_text()
    assert "<script>alert('xss" not in script and "&lt;script&gt;alert('xss" in script  # shown, not run
    assert script.count("js-from-a-student") == 1  # only in the listing of the student's code


@pytest.mark.grading
def test_suspicious_answers_are_flagged_for_the_ta(graded):
    _, out, results, _, *_ = graded
    for student in ["cheat-patch-check", "cheat-builtins", "cheat-input-transformer", "cheat-ast-transformer",
                    "cheat-leave-process", "cheat-kill-grader", "reference-hook-off"]:
        assert any(p.startswith("suspicious:") for p in results[student].problems), (student, results[student])
    assert not any(p.startswith("suspicious:") for p in results["solution"].problems)
    assert not any(p.startswith("suspicious:") for p in results["independent"].problems)


@pytest.mark.grading
def test_strange_folder_names_are_graded_under_safe_ids(graded):
    _, out, results, _, *_ = graded
    for safe in STRANGE_FOLDERS.values():
        assert results[safe].scores["00_getting_started"] == 2
    assert "graded as 'touch_pwn'" in (out / "report.txt").read_text()


@pytest.mark.grading
def test_without_the_sandbox_the_checker_still_judges_and_the_report_says_so(tmp_path):
    """--no-sandbox: no isolation, but points still need the checker's verdict."""
    folder = tmp_path / "submissions"
    write_student(folder, "honest", {NB00: _nb00(GOOD)})
    write_student(folder, "sneaky", {NB00: _nb00(attacks("", "", "")["cheat-always-equal"])})
    results = {r.student_id: r for r in autograde(folder, tmp_path / "out", course_root=ROOT, workers=2, timeout=30,
                                                   progress=False, sandboxed=False, limits=False)}
    assert results["honest"].scores["00_getting_started"] == 2
    assert results["sneaky"].scores["00_getting_started"] == 0
    first, second = (tmp_path / "out" / "report.txt").read_text().splitlines()[:2]
    assert first.startswith("WARNING: NOT SANDBOXED") and second.startswith("WARNING: NO LIMITS PER STUDENT")
    assert not results["honest"].usage  # (no cgroup: nothing measured)


# ---------------------------------------------------------------- round two (issue 33)

HONEST = ["solution", "independent", *STRANGE_FOLDERS.values()]
BUDGET = 30  # seconds for a student of the zip run (an honest one-notebook student takes about 5; a cell 60)


@pytest.mark.grading
@pytest.mark.parametrize("student", sorted(round_two.tamper_students()))
def test_an_answer_that_tampers_with_the_checks_fixture_scores_nothing(graded, student):
    """Row 1 (notebook 02: the weights zeroed, x returned) and its kind for every exercise: the visible
    tests pass (the functions answer them honestly), every hidden check fails."""
    result = graded.results[student]
    assert sorted(result.lost) == sorted(round_two.tampered_cells(student)), result
    assert sum(result.scores.values()) == 0, result
    page = html.unescape((graded.out / "feedback" / student / f"{sorted(result.scores)[0]}.html").read_text())
    assert "changed" in page  # the check's message says what was changed


@pytest.mark.grading
def test_student_markdown_runs_nowhere_and_the_page_says_the_real_score(graded):
    """Row 2, read from the page: nothing of the student's markdown is live; the policy forbids the rest."""
    from bs4 import BeautifulSoup

    page = (graded.out / "feedback" / "markdown-xss" / "00_getting_started.html").read_text()
    head, body = page.split("<body", 1)
    soup = BeautifulSoup(body, features="html.parser")
    assert not soup.find_all(["script", "iframe", "svg", "style", "meta", "base"])
    assert not [t for t in soup.find_all(True) if any(a.startswith("on") or a == "style" for a in t.attrs)]
    assert not [a for a in soup.find_all("a") if "javascript" in str(a.get("href", "")).lower()]
    assert "Content-Security-Policy" in head and "script-src" not in head and "default-src 'none'" in head
    assert "(Score: 0.0 / 2.0)" in page and graded.results["markdown-xss"].scores["00_getting_started"] == 0


@pytest.mark.grading
@pytest.mark.browser
def test_in_chromium_no_student_script_runs_and_the_real_score_is_what_is_seen(graded):
    if os.environ.get("LAB_SKIP_BROWSER"):
        pytest.skip("LAB_SKIP_BROWSER is set")
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

    page_file = graded.out / "feedback" / "markdown-xss" / "00_getting_started.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            dialogs, requests = [], []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_timeout(1500)  # a refresh, an onerror, an animation's begin: time to fire
            assert page.url == page_file.as_uri(), "the page navigated away (meta refresh)"
            assert page.evaluate("window.pwned") is None and not dialogs
            assert not [u for u in requests if "example.org" in u], requests  # (the template's own MathJax is
            # blocked by the policy too)
            heading = page.locator("div.panel-heading h4").first
            assert heading.is_visible() and "(Score: 0.0 / 2.0)" in heading.inner_text()
            box = heading.bounding_box()
            top = page.evaluate(f"document.elementFromPoint({box['x'] + 5}, {box['y'] + box['height'] / 2}).closest('h4')"
                                " !== null")
            assert top, "something covers the real score"
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "feedback-markdown-xss.png"), full_page=False)
        finally:
            browser.close()


@pytest.mark.grading
@pytest.mark.parametrize("student", sorted(round_two.MACHINE))
def test_an_attack_on_the_machine_costs_only_its_own_points(graded, student):
    """Rows 3-6 and 9, and the variants: the attacker keeps what its own right answer earns where
    the limits let its notebook finish, is reported for what it ran into, and nobody else loses."""
    result = graded.results[student]
    expected = round_two.MACHINE_POINTS[student]
    if expected is not None:
        assert result.scores["00_getting_started"] == expected, result
    assert not any("grading failed" in p or "refused it" in p or "could not grade" in p for p in result.problems), \
        result.problems
    for honest in HONEST:
        assert not graded.results[honest].lost and not any("stopped" in p for p in graded.results[honest].problems)
    rows = {r["student_id"]: r for r in csv.DictReader(open(graded.out / "grades.csv"))}
    assert rows["solution"]["score"] == rows["independent"]["score"] == str(lab_points())


@pytest.mark.grading
def test_two_hundred_spinners_stop_at_the_students_budget_never_run_again(graded):
    """Row 5: the hog's processes share one core; its grading ends within its budget (one notebook),
    is reported as stopped by it if it ran out, and is never graded a second time."""
    from course_utils.grading.student import student_budget

    result = graded.results["spin-200"]
    assert result.seconds <= student_budget(30, 1) + 30, result
    assert all(p.startswith("stopped: time budget") for p in result.problems if "stopped" in p)
    assert result.usage["throttled"] > 0  # its processes together ran into the one core they have


@pytest.mark.grading
def test_a_students_forks_and_tmpfs_share_one_memory_limit(graded):
    """Row 6: a dozen forks of up to 1.2 GB (the tmpfs in a nested user namespace is refused: no
    namespaces in a kernel), and 8 GB in memory files, against the 6 GB of the student's group."""
    for student in ("fork-memory", "memfd-8gb"):
        result = graded.results[student]
        assert result.usage["memory_peak"] <= 6 * 2**30 + 64 * 2**20, result.usage
        assert result.usage["oom_kills"] >= 1 and any(p.startswith("memory:") for p in result.problems), result
    assert graded.results["fork-bomb"].usage["forks_refused"] > 0


@pytest.mark.grading
def test_the_graders_own_processes_and_files_stay_bounded(graded):
    """Rows 3, 4 and 9: 3 GB written to the kernel's stdout, 2 GB of files in the IPC folder, 300 MB
    printed: no process of the grader's holds much more than its own code, no page is more than
    the caps, nothing is left in /tmp."""
    largest, command = graded.watch.largest()
    assert largest < 2 * 2**30, (largest, command)
    pages = sorted((graded.out / "feedback").rglob("*.html"))
    assert max(p.stat().st_size for p in pages) < 12 * 2**20
    flood = (graded.out / "feedback" / "print-300mb" / "00_getting_started.html").read_text()
    assert "output truncated" in flood or "not shown" in flood
    assert sum(p.stat().st_size for p in graded.out.rglob("*") if p.is_file()) < 200 * 2**20
    left = {p.name for p in Path("/tmp").iterdir() if p.name.startswith(("cl-", "clz-", "course-lab-autograde-"))}
    assert not left - graded.tmp_before, left - graded.tmp_before


@pytest.mark.grading
def test_the_report_holds_no_control_characters(graded):
    """Row 8's kind, from inside a kernel: a check asked for under a name with a carriage return and
    escape codes is reported, escaped."""
    report = (graded.out / "report.txt").read_text()
    assert "\r" not in report and "\x1b" not in report
    assert "\\r\\e[2Kflood-checker: 32 / 32" in report


@pytest.fixture(scope="module")
def zip_run(graded, tmp_path_factory):
    """The next run after the big one (whose fill-ipc student filled its IPC folder): LMS zips, honest
    and hostile, graded while the TA's process's memory is traced."""
    import tracemalloc

    zips = tmp_path_factory.mktemp("zips")
    round_two.hostile_zips(zips)
    # and a student whose answer never ends, in a run whose budget runs out before the cell's timeout
    looping = json.dumps(_nb00("while True:\n    pass\n" + GOOD)).encode()
    (zips / "looper_lab4.zip").write_bytes(round_two.zip_bytes({f"lab4/{NB00}": looping}))
    # and one whose first notebook is right and whose second never ends: the first keeps its points
    nb02 = "02_synthetic_adversarial_examples.ipynb"
    looping_02 = replace_solution(solved(nb02), "fgsm_attack", "while True:\n    pass\n")
    (zips / "partial_lab4.zip").write_bytes(round_two.zip_bytes({f"lab4/{NB00}": json.dumps(solved(NB00)).encode(),
                                                                  f"lab4/{nb02}": json.dumps(looping_02).encode()}))
    out = tmp_path_factory.mktemp("zips-out")
    tracemalloc.start()
    try:
        results = {r.student_id: r for r in autograde(zips, out, course_root=ROOT, workers=2, timeout=60,
                                                       budget=BUDGET, progress=False)}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, results, peak


@pytest.mark.grading
def test_after_a_student_filled_their_ipc_folder_the_next_run_grades_everyone(zip_run):
    """Row 4's aftermath: the next run (which sweeps what earlier graders left) grades honest students."""
    _, results, _ = zip_run
    assert results["honest"].scores["00_getting_started"] == 2.0, results["honest"].problems
    assert results["name_2Kescname_32_-_32"].scores["00_getting_started"] == 2.0
    assert not any("grading failed" in p for r in results.values() for p in r.problems)


@pytest.mark.grading
def test_a_student_past_the_budget_is_stopped_once_and_says_so(zip_run):
    """The budget (30 s), shorter here than one cell's timeout (60 s): the student is stopped within
    it (and the time the kill takes), not graded again, reported as stopped; its page says why."""
    out, results, _ = zip_run
    looper = results["looper"]
    assert looper.seconds < BUDGET + 15, looper
    assert any(p.startswith("stopped: time budget") for p in looper.problems), looper.problems
    assert not any("refused" in p or "could not grade" in p for p in looper.problems)
    assert looper.scores == {"00_getting_started": 0}
    assert "Grading stopped" in (out / "feedback" / "looper" / "00_getting_started.html").read_text()
    partial = results["partial"]  # what was graded before the budget ran out keeps its points
    assert partial.scores == {"00_getting_started": 2.0, "02_synthetic_adversarial_examples": 0}, partial
    assert any("02_synthetic_adversarial_examples scored 0 (not run again)" in p for p in partial.problems)


@pytest.mark.grading
def test_hostile_zips_are_skipped_and_the_rest_graded(zip_run):
    """Rows 7 and 8: a zip of 60 members of 50 MB, another of 30 notebook-named ones, and names with
    carriage returns and escape codes, beside honest zips: the honest students are graded, the bombs
    are reported and not read, the report holds no control character."""
    out, results, peak = zip_run
    assert peak < 300 * 2**20, peak  # (it read 3.6 GB before the caps)
    assert results["escape"].scores["00_getting_started"] == 0.0
    # 60 members that are not the lab's notebooks: ignored, unread; the notebook beside them graded
    assert results["bomb"].scores["00_getting_started"] == 2.0
    assert any("60 file(s) that are not the lab's notebooks ignored" in p for p in results["bomb"].problems)
    # 30 notebook-named members that expand a thousand times: nothing read, the student listed with 0
    assert results["bombnb"].scores == {} and any("over the caps" in p for p in results["bombnb"].problems)
    report = (out / "report.txt").read_text()
    assert "\r" not in report and "\x1b" not in report and "\u202e" not in report
    assert "bombnb_lab4.zip: over the caps of a submission" in report
    assert not [line for line in report.splitlines() if line.startswith("escape: 32")]  # no line faked by a name
    grades = (out / "grades.csv").read_text()
    assert "\r" not in grades.replace("\r\n", "\n") and "\x1b" not in grades
