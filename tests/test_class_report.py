"""OUT/index.html from results alone (no grading): counts, escaping, pictures, no script."""
from course_utils.grading import class_report

POINTS = {"00_getting_started": {"batch_accuracy_tests": 2.0}, "02_synthetic_adversarial_examples": {"fgsm_attack_tests": 2.0}}


def _result(sid, lost=None, mistakes=None, problems=(), late=False):
    lost = lost or {}
    return {"student_id": sid, "scores": {"00_getting_started": 2.0 - sum(lost.values())}, "lost": lost,
            "problems": list(problems), "mistakes": mistakes or {}, "late": late}


def test_named_mistakes_are_counted_and_every_student_string_is_escaped(tmp_path):
    key = "00_getting_started/batch_accuracy_tests"
    results = [_result("amy"), _result("bob", {key: 2.0}, {key: "a count, not a fraction"}),
               _result("<script>alert(1)</script>", {key: 2.0}, {key: "a count, not a fraction"},
                       ["00_getting_started/cell 3: ran past the time limit and was interrupted"], late=True)]
    (tmp_path / "feedback" / "amy").mkdir(parents=True)
    (tmp_path / "feedback" / "amy" / "00_getting_started.html").write_text("page")
    page = class_report.write_index(tmp_path, results, POINTS, pairs=[
        {"a": "amy", "b": "<b>bob</b>", "share_a": 0.9, "share_b": 0.8, "page": "similarity/pair-0001.html"}]).read_text()
    assert "<td>a count, not a fraction</td><td class='n'>2</td>" in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;bob" in page
    assert "<td>ran past a cell&#x27;s time limit</td><td class='n'>1</td>" in page
    assert "<td>02_synthetic_adversarial_examples/fgsm_attack_tests</td><td>2</td><td>no submission</td>" in page
    assert "<td>00_getting_started/batch_accuracy_tests</td><td>2</td><td>33%</td>" in page
    assert "href='feedback/amy/00_getting_started.html'" in page and page.count("data:image/png;base64,") == 2
    assert "Content-Security-Policy" in page and "script-src" not in page.split("<body")[1]
