"""A TA's grading day after autograde (issue 34): OUT is the class's nbgrader course folder,
manual grades survive re-runs, final grades for Canvas and Moodle, feedback with the TA's words,
the class at a glance, similar submissions, late and partial runs, --only."""
import csv
import json
import os
import re
import urllib.request
import zipfile
from pathlib import Path

import pytest

import dishonest
from course_utils.grading import class_report, course_folder, final_grades, lms, similarity
from course_utils.grading.autograde import autograde
from grading_fixtures import (RELEASE, ROOT, independent, lab_points, load, release_names, replace_solution,
                              solved, written_points)

NB00, NB01 = "00_getting_started.ipynb", "01_natural_adversarial_examples.ipynb"
COUNT = "def batch_accuracy(logits, labels):\n    return float((logits.argmax(1) == labels).sum())\n"
# passes the visible tests (3 of 4 right), fails the hidden check: "not the argmax over classes"
FIXED = "def batch_accuracy(logits, labels):\n    return 0.75\n"
FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE_ANSWER = ("The background decides. <script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">"
                  "<style>.score { display: none }</style>")


def _zip(folder: Path, name: str, notebooks: dict[str, dict]) -> None:
    with zipfile.ZipFile(folder / name, "w") as zf:
        for nb_name, nb in notebooks.items():
            zf.writestr(f"lab4/{nb_name}", json.dumps(nb))


def _with_answer(name: str, source: str) -> dict:
    return replace_solution(solved(name), "batch_accuracy", source) if name == NB00 else solved(name)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A class as Canvas exports it, graded once; the TA then grades written answers through nbgrader's API."""
    subs = tmp_path_factory.mktemp("canvas")
    out = tmp_path_factory.mktemp("out")
    _zip(subs, "doejohn_101_5001_lab4.zip", {NB00: solved(NB00), NB01: solved(NB01)})
    _zip(subs, "roejane_102_5002_lab4.zip", {NB00: _with_answer(NB00, FIXED), NB01: solved(NB01)})
    hostile = replace_solution(solved(NB01), "cues_answer", HOSTILE_ANSWER)
    _zip(subs, "moecurly_103_5003_lab4.zip", {NB00: _with_answer(NB00, FIXED), NB01: hostile})
    _zip(subs, "larrycount_107_5007_lab4.zip", {NB00: _with_answer(NB00, COUNT), NB01: solved(NB01)})
    cheat = dishonest.attacks(str(ROOT), str(subs), str(out))["cheat-patch-check"]
    _zip(subs, "cheatbob_104_5004_lab4.zip", {NB00: _with_answer(NB00, cheat)})
    (subs / f"leeann_LATE_105_5005_{NB00}").write_text(json.dumps(solved(NB00)))  # uploaded, not zipped
    (subs / f"leeann_LATE_105_5006_00_getting_started-1.ipynb").write_text(json.dumps(solved(NB00)))  # again
    first = {r.student_id: r for r in autograde(subs, out, course_root=ROOT, workers=2, timeout=60, progress=False)}
    # the TA grades two written answers and comments on one, as formgrader would (nbgrader's API)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        for sid, points in [("doejohn", 2.0), ("roejane", 1.0)]:
            grade = gb.find_grade("cues_answer", "01_natural_adversarial_examples", "lab4", sid)
            grade.manual_score, grade.needs_manual_grade = points, False  # (as formgrader saves a grade)
            comment = gb.find_comment("cues_answer", "01_natural_adversarial_examples", "lab4", sid)
            comment.manual_comment = f"Well argued, {sid} <script>window.pwned=1</script>"
        gb.db.commit()
    return subs, out, first


@pytest.mark.grading
def test_the_class_gradebook_holds_every_student_with_the_trusted_points(day):
    _, out, first = day
    assert sorted(first) == ["cheatbob", "doejohn", "larrycount", "leeann", "moecurly", "roejane"]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        scores = {s.student.id: s.score for s in gb.find_assignment("lab4").submissions}
        assert gb.find_student("doejohn").lms_user_id == "101"
        # the cheat's nbgrader-rigged visible test is not a point in the class's gradebook
        assert gb.find_grade("batch_accuracy_tests", "00_getting_started", "lab4", "cheatbob").auto_score == 0
        assert gb.find_grade("cues_answer", "01_natural_adversarial_examples", "lab4", "doejohn").needs_manual_grade \
            is False  # (graded above)
    assert scores["cheatbob"] == 0 and scores["moecurly"] == sum(first["moecurly"].scores.values())
    assert scores["larrycount"] == sum(first["larrycount"].scores.values()) and first["larrycount"].scores[NB00[:-6]] == 0
    assert scores["doejohn"] == sum(first["doejohn"].scores.values()) + 2.0
    for sid in first:
        assert (out / "autograded" / sid / "lab4" / f"{NB00}".replace(".ipynb", ".ipynb")).exists()
    assert first["leeann"].late and first["leeann"].canvas_id == "105" and first["leeann"].scores[NB00[:-6]] == 2.0


@pytest.mark.grading
def test_notebooks_for_formgrader_carry_no_live_markup(day):
    _, out, _ = day
    nb = json.loads((out / "autograded" / "doejohn" / "lab4" / NB01).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"])
            assert source.startswith("<div>") and "\n" not in source and "<script" not in source.lower()


def test_formgrader_notebooks_are_sanitized():
    """A student's markdown and outputs, as formgrader would render them: nothing runs."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# hi\n<script>alert(1)</script><img src=x onerror=alert(2)>\n\n"
                                              "[x](javascript:alert(3)) $\\href{javascript:alert(4)}{y}$"),
                nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output(
                    "display_data", data={"text/html": "<iframe srcdoc='x'></iframe><b>ok</b>",
                                          "image/svg+xml": "<svg onload=alert(5)></svg>",
                                          "text/markdown": "<style>h4{display:none}</style>"})])]
    course_folder.for_formgrader(nb)
    text = json.dumps(nb)
    for bad in ("<script", "onerror=", 'href=\\"javascript', "\\\\href", "<iframe", "svg", "<style"):
        assert bad not in text, bad
    assert "<b>ok</b>" in text and "<h1>hi" in text


@pytest.mark.grading
def test_export_gives_final_grades_and_says_what_is_ungraded(day):
    _, out, first = day
    path, notes = final_grades.export(out)
    rows = {r["student_id"]: r for r in csv.DictReader(path.open())}
    assert float(rows["doejohn"]["written"]) == 2.0 and float(rows["roejane"]["written"]) == 1.0
    assert float(rows["doejohn"]["total"]) == sum(first["doejohn"].scores.values()) + 2.0
    assert rows["doejohn"]["max_score"] == str(lab_points() + written_points()) and rows["leeann"]["late"] == "yes"
    assert rows["doejohn"]["written_ungraded"] == "0"  # robustness_answer: not submitted (03 not handed in)
    penalised, _ = final_grades.export(out, late_penalty=0.1, path=out / "late.csv")
    late = {r["student_id"]: r for r in csv.DictReader(penalised.open())}
    assert float(late["leeann"]["total"]) == pytest.approx(1.8)


@pytest.mark.grading
def test_canvas_and_moodle_files_from_their_rosters(day):
    _, out, first = day
    roster = lms.read_roster(FIXTURES / "canvas_gradebook_export.csv")
    path, notes = final_grades.export(out, fmt="canvas", roster=roster, assignment="Lab 4 (4711)")
    lines = list(csv.reader(path.open()))
    assert lines[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 4 (4711)"]
    assert lines[1][0] == "Points Possible" and lines[1][5] == str(lab_points() + written_points())
    by_id = {line[1]: line for line in lines[2:]}
    assert by_id["101"][0] == "Doe, John" and float(by_id["101"][5]) == sum(first["doejohn"].scores.values()) + 2
    assert by_id["999"][0] == "Nobody, Nora" and by_id["999"][5] == "0"  # in the roster, no submission
    text = "\n".join(notes)
    assert "without a submission get 0: nnobody" in text and "not in the roster" in text and "cheatbob" in text
    assert "PREMATURE: 2 written answer(s) of 2 student(s)" in text  # larrycount's and moecurly's
    moodle_roster = lms.read_roster(FIXTURES / "moodle_grades_export.csv", key="Username")
    path, _ = final_grades.export(out, fmt="moodle", roster=moodle_roster, id_column="Email address")
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["Email address", "Lab 4", "Lab 4 (feedback)"]
    found = {r[0]: r for r in rows[1:]}
    assert float(found["john.doe@uni.example"][1]) == sum(first["doejohn"].scores.values()) + 2
    assert "written 2" in found["john.doe@uni.example"][2]


@pytest.mark.grading
def test_feedback_again_with_the_written_points_and_the_comment_sanitized(day):
    _, out, _ = day
    assert course_folder.regenerate_feedback(out, ["doejohn"])
    assert not course_folder.regenerate_feedback(out, ["doejohn"])  # nothing changed since
    page = (out / "feedback" / "doejohn" / "01_natural_adversarial_examples.html").read_text()
    assert "Well argued, doejohn" in page and "<script>window.pwned" not in page
    assert re.search(r"Score: 2\.0 / 2\.0", page)
    assert "Content-Security-Policy" in page and str(out) not in page
    course_folder.regenerate_feedback(out, ["larrycount"])  # a written answer nobody graded yet says so
    waiting = (out / "feedback" / "larrycount" / "01_natural_adversarial_examples.html").read_text()
    assert "Not graded yet" in waiting


@pytest.mark.grading
def test_autograde_feedback_says_a_written_answer_is_not_graded_yet(day):
    _, out, first = day
    page = (out / "feedback" / "roejane" / "01_natural_adversarial_examples.html").read_text()
    assert "Not graded yet" in page


@pytest.mark.grading
def test_the_class_at_a_glance(day):
    _, out, _ = day
    page = (out / "index.html").read_text()
    assert "Content-Security-Policy" in page and "<script" not in page
    assert "data:image/png;base64," in page
    row = re.search(r"<td>00_getting_started/batch_accuracy_tests</td><td>not the argmax over classes</td>"
                    r"<td class='n'>(\d+)</td>", page)
    assert row and row.group(1) == "2", page[:3000]  # roejane and moecurly
    assert "visible tests failed (the hidden check did not run)</td><td class='n'>2<" in page  # larrycount, cheatbob
    assert "feedback/doejohn/00_getting_started.html" in page
    # the same answers (the solution's notebook 01) are listed as similar, with a page side by side
    pair = re.search(r"<td>doejohn and larrycount</td><td>\d+%</td><td><a href='(similarity/pair-\d+\.html)'>", page)
    assert pair and "<mark>" in (out / pair.group(1)).read_text()


@pytest.mark.grading
@pytest.mark.browser
def test_index_in_chromium(day):
    if os.environ.get("LAB_SKIP_BROWSER"):
        pytest.skip("LAB_SKIP_BROWSER is set")
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

    _, out, _ = day
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto((out / "index.html").as_uri())
            images = page.locator("img")
            assert images.count() == 2
            assert all(page.evaluate(f"document.images[{i}].naturalWidth") > 100 for i in range(2))
            assert page.locator("text=not the argmax over classes").count() == 1
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "class-index.png"), full_page=True)
        finally:
            browser.close()


@pytest.mark.grading
def test_formgrader_serves_the_course_folder_and_no_kernel(day):
    from course_utils.lab_server import NO_CODE, start_lab

    _, out, _ = day
    server = start_lab(out, extra=NO_CODE)
    try:
        assert server.api("GET", "kernelspecs")["kernelspecs"] == {}
        opener = urllib.request.build_opener()
        opener.addheaders = [("Authorization", f"token {server.token}")]
        with opener.open(f"{server.base_url}/formgrader/api/submissions/lab4", timeout=30) as r:
            submissions = {s["student"]: s for s in json.loads(r.read())}
        assert set(submissions) == {"cheatbob", "doejohn", "larrycount", "leeann", "moecurly", "roejane"}
        assert submissions["cheatbob"]["score"] == 0
        with opener.open(f"{server.base_url}/formgrader/api/submitted_notebooks/lab4/"
                         "01_natural_adversarial_examples", timeout=30) as r:
            notebook = {n["student"]: n for n in json.loads(r.read())}["doejohn"]
        with opener.open(f"{server.base_url}/formgrader/submissions/{notebook['id']}/", timeout=60) as r:
            page = r.read().decode()
        assert "cues_answer" in page and "pwned" not in page.split("Well argued")[0]
    finally:
        server.stop()


@pytest.mark.grading
@pytest.mark.browser
def test_a_ta_grades_in_formgrader_in_chromium_and_no_student_script_runs(day):
    """The TA's browser on formgrader: moecurly's written answer carries a script, an onerror and a style;
    none of them acts, and the grade and comment typed in reach the gradebook, the export and the page."""
    if os.environ.get("LAB_SKIP_BROWSER"):
        pytest.skip("LAB_SKIP_BROWSER is set")
    from playwright.sync_api import sync_playwright

    from course_utils.lab_server import NO_CODE, start_lab
    from test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

    _, out, first = day
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        notebook_id = gb.find_submission_notebook("01_natural_adversarial_examples", "lab4", "moecurly").id
    server = start_lab(out, extra=NO_CODE)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                dialogs = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(server.login_url("/formgrader/gradebook"))  # as `course-lab formgrade` prints it
                page.locator("a:text-is('lab4')").click(timeout=30000)  # Manual Grading: the assignment,
                page.locator("a:text-is('01_natural_adversarial_examples')").click(timeout=30000)  # a notebook,
                page.locator(f"a[href*='{notebook_id}']").first.click(timeout=30000)  # a student's submission
                page.wait_for_url(f"**/formgrader/submissions/{notebook_id}/**", timeout=30000)
                score = page.locator("input.score#cues_answer")
                score.wait_for(timeout=30000)
                assert "The background decides." in page.content()
                score.fill("1.5")
                score.press("Tab")
                comment = page.locator("textarea#cues_answer-comment")
                comment.fill("Say which cue misleads the model.")
                comment.press("Tab")
                page.wait_for_timeout(1500)  # the form saves on change
                assert page.evaluate("window.pwned") is None and not dialogs
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / "formgrader-written-answer.png"), full_page=False)
            finally:
                browser.close()
    finally:
        server.stop()
    state = course_folder.manual_state(out)["moecurly"]
    assert state["01_natural_adversarial_examples/cues_answer"] == 1.5
    assert state["01_natural_adversarial_examples/cues_answer#comment"] == "Say which cue misleads the model."
    rows = {r.student_id: r for r in final_grades.final_grades(out)[0]}
    assert rows["moecurly"].written["01_natural_adversarial_examples"] == 1.5
    course_folder.regenerate_feedback(out, ["moecurly"])
    page = (out / "feedback" / "moecurly" / "01_natural_adversarial_examples.html").read_text()
    assert "Say which cue misleads the model." in page and "window.pwned = 1</script>" not in page


@pytest.mark.grading
def test_the_commands_of_the_day(day, capsys):
    """`course-lab export`, `feedback` and `formgrade` as a TA types them."""
    import subprocess
    import sys

    from course_utils.cli import main

    _, out, _ = day
    assert main(["export", str(out), "--format", "canvas", "--roster", str(FIXTURES / "canvas_gradebook_export.csv"),
                 "--assignment", "Lab 4 (4711)"]) == 0
    printed = capsys.readouterr().out
    assert "! PREMATURE" in printed and "without a submission get 0: nnobody" in printed
    assert (out / "canvas_grades.csv").is_file() and f"{out}/index.html" in printed
    assert main(["feedback", str(out)]) == 0
    assert "feedback page(s) written again" in capsys.readouterr().out
    assert main(["export", str(out.parent)]) == 1  # not a graded class: says so
    server = subprocess.Popen([sys.executable, "-m", "course_utils.cli", "formgrade", str(out), "--no-browser"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = next(line.split("open:", 1)[1].strip() for line in server.stdout if "open:" in line)
        assert "/login?next=%2Fformgrader%2Fgradebook&token=" in address
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())  # (keeps the login cookie)
        with browser.open(address, timeout=30) as r:  # logs in, and lands on Manual Grading
            assert r.status == 200 and "Manual Grading" in r.read().decode()
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(scope="module")
def second_day(day, tmp_path_factory):
    """Later: a folder with only roejane's resubmission (a changed written answer) and a late student."""
    subs, out, first = day
    later = tmp_path_factory.mktemp("later")
    changed = replace_solution(solved(NB01), "cues_answer", "A different answer, written late at night.")
    _zip(later, "roejane_102_5100_lab4.zip", {NB00: solved(NB00), NB01: changed})
    _zip(later, "latekid_LATE_106_5101_lab4.zip", {NB00: solved(NB00)})
    results = {r.student_id: r for r in autograde(later, out, course_root=ROOT, workers=2, timeout=60,
                                                   progress=False)}
    return later, out, first, results


@pytest.mark.grading
def test_a_run_with_a_few_students_keeps_the_class_and_the_manual_grades_of_unchanged_answers(second_day):
    _, out, first, results = second_day
    assert sorted(results) == ["cheatbob", "doejohn", "larrycount", "latekid", "leeann", "moecurly", "roejane"]
    assert course_folder.manual_state(out)["moecurly"]["01_natural_adversarial_examples/cues_answer"] == 1.5
    assert results["doejohn"].seconds == first["doejohn"].seconds  # untouched
    grades = {row["student_id"] for row in csv.DictReader((out / "grades.csv").open())}
    assert grades == set(results)
    state = course_folder.manual_state(out)
    assert state["doejohn"]["01_natural_adversarial_examples/cues_answer"] == 2.0
    assert "01_natural_adversarial_examples/cues_answer" not in state.get("roejane", {})
    report = (out / "report.txt").read_text()
    assert "manual grade dropped: roejane: 01_natural_adversarial_examples/cues_answer" in report
    assert f"latekid: 2 / {lab_points()}" in report and "LATE" in report and "kept" in report


@pytest.mark.grading
def test_only_regrades_one_student_and_leaves_the_rest(second_day):
    subs, out, _, before = second_day
    results = {r.student_id: r for r in autograde(subs, out, course_root=ROOT, workers=1, timeout=60,
                                                   progress=False, only=["doejohn"])}
    assert results["doejohn"].seconds != before["doejohn"].seconds or results["doejohn"] is not before["doejohn"]
    for sid in ("roejane", "latekid", "moecurly"):
        assert results[sid].seconds == before[sid].seconds, sid
    assert course_folder.manual_state(out)["doejohn"]["01_natural_adversarial_examples/cues_answer"] == 2.0


def _answers(notebooks: dict[str, dict], tmp_path: Path) -> str:
    folder = tmp_path / str(len(list(tmp_path.iterdir())))
    folder.mkdir()
    for name, nb in notebooks.items():
        (folder / name).write_text(json.dumps(nb))
    return similarity.answer_code(list(folder.glob("*.ipynb")))


def test_a_renamed_reordered_copy_is_flagged_and_independent_answers_are_not(tmp_path):
    """The calibration of `similarity.THRESHOLD` (docs/grading.md)."""
    import nbformat

    names = release_names()
    solution = _answers({n: solved(n) for n in names}, tmp_path)
    own = _answers({n: independent(n) for n in names}, tmp_path)
    blank = _answers({n: load(RELEASE / n) for n in names}, tmp_path)
    renamed = solution
    for i, word in enumerate(["logits", "labels", "model", "images", "epsilon", "steps", "alpha", "delta", "loss",
                              "target", "mask", "z1", "z2", "temperature", "patches", "angles", "correct"]):
        renamed = re.sub(rf"\b{word}\b", f"v{i}", renamed)
    copy = "\n".join(reversed(renamed.split("\n# ")))  # the answers in another order
    release = "\n".join(c.source for p in sorted(RELEASE.glob("*.ipynb"))
                        for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")
    pairs = similarity.similar_pairs({"solution": solution, "independent": own, "copy": copy, "blank": blank},
                                     release)
    assert [(p.a, p.b) for p in pairs] == [("copy", "solution")], pairs
    page = similarity.side_by_side(pairs[0], copy, solution, release)
    assert "<mark>" in page and "Content-Security-Policy" in page


def test_roster_files_in_the_lms_formats():
    canvas = lms.read_roster(FIXTURES / "canvas_gradebook_export.csv")
    assert canvas.key == "SIS Login ID" and len(canvas.rows) == 4  # the Points Possible row is not a student
    assert canvas.find("whoever", "101")["Student"] == "Doe, John"
    moodle = lms.read_roster(FIXTURES / "moodle_grades_export.csv")
    assert moodle.key == "Username" and moodle.find("doejohn")["Email address"] == "john.doe@uni.example"
    assert lms.canvas_name("doe-smith_LATE_12_34_lab4 (1).zip") == lms.LmsName("doe-smith", "12", True, 34,
                                                                             "lab4 (1).zip")
    assert lms.canvas_name("jdoe_lab4.zip") is None


@pytest.mark.grading
def test_remove_takes_a_student_out_and_only_with_the_flag(second_day):
    later, out, _, _ = second_day
    results = {r.student_id: r for r in autograde(later, out, course_root=ROOT, workers=1, timeout=60,
                                                   progress=False, remove=["latekid"])}
    assert "latekid" not in results and "doejohn" in results
    assert not (out / "feedback" / "latekid").exists() and not (out / "autograded" / "latekid").exists()
    assert "latekid" not in {r.student_id for r in final_grades.final_grades(out)[0]}
    assert course_folder.manual_state(out)["doejohn"]["01_natural_adversarial_examples/cues_answer"] == 2.0
