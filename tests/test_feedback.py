"""The feedback exporter renders the page nbconvert's HTMLExporter renders, without its second parse."""
import base64
import os

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

import nbgrader
from course_utils.grading.feedback import NO_ALT, FeedbackExporter, SanitizedHTMLExporter, add_missing_alt, csp

PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                                     "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()


def feedback_config() -> Config:
    """What nbgrader's GenerateFeedback gives the exporter (its template), with our sanitizing."""
    c = Config()
    c.HTMLExporter.template_name = "feedback"
    formgrader = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader")
    c.HTMLExporter.extra_template_basedirs = [os.path.join(formgrader, "templates")]
    c.HTMLExporter.extra_template_paths = [os.path.join(formgrader, "static", "node_modules", "bootstrap", "dist", "css")]
    c.HTMLExporter.sanitize_html = True
    return c


def notebook():
    code = new_code_cell("import torch\nx = torch.zeros(3)  # a comment\nprint(x)", execution_count=1, outputs=[
        new_output("stream", name="stdout", text="tensor([0., 0., 0.])\n"),
        new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
        new_output("display_data", data={"text/html": '<b>bold</b><img src="x.png"><img alt="kept" src="y.png">'
                                                      '<script>alert(1)</script>'}),
        new_output("error", ename="AssertionError", evalue="wrong", traceback=["\x1b[31mAssertionError\x1b[0m: wrong"]),
    ])
    markdown = new_markdown_cell("# Title\n\nText with ![an image](a.png) and <img src='b.png'> and $x^2$.")
    nb = new_notebook(cells=[markdown, code], metadata={"language_info": {"name": "python",
                                                                          "pygments_lexer": "ipython3"}})
    nb.cells[1].metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 1, "solution": False,
                                        "locked": True, "schema_version": 3, "score": 0}
    return nbformat.from_dict(nb)


def export(exporter_class, nb):
    # what nbgrader's GetGrades preprocessor adds to the resources
    resources = {"nbgrader": {"notebook": "00_example", "score": 0, "max_score": 1, "late_penalty": 0}}
    return exporter_class(config=feedback_config()).from_notebook_node(nb, resources)[0]


def test_the_page_is_htmlexporters_page():
    nb = notebook()
    # HTMLExporter with the feedback's sanitizing and policy, and its BeautifulSoup pass
    ours, theirs = export(FeedbackExporter, nb), export(SanitizedHTMLExporter, nb)
    assert "jp-Notebook" not in ours  # the classic template: nothing but the alternative text to add
    # HTMLExporter's page is BeautifulSoup's writing of what it rendered: ours, read and written the same way
    soup = lambda page: str(BeautifulSoup(page, features="html.parser"))  # noqa: E731
    assert soup(ours) == soup(theirs)
    assert ours.count(f'alt="{NO_ALT}"') == theirs.count(f'alt="{NO_ALT}"') >= 2
    assert "<script>alert(1)</script>" not in ours  # sanitized as before


HOSTILE_MARKDOWN = """<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">
<svg><animate onbegin="window.pwned = 3" attributeName="x" dur="1s"/></svg>
<iframe srcdoc="<script>parent.pwned = 4</script>"></iframe>
[click me](javascript:window.pwned=5) <a href="JaVaScRiPt:window.pwned=6">also</a>
<meta http-equiv="refresh" content="0;url=https://example.org/phish"><base href="https://example.org/">
<style>h4 { display: none }</style><div class="navbar-fixed-top" style="position:fixed;top:0">Score: 2.0 / 2.0</div>
<form action="https://example.org"><input name="x"></form><object data="x.swf"></object><embed src="x.swf">
<img src="https://example.org/tracker.png"> <img src="data:image/svg+xml,<svg onload='window.pwned=7'/>">
"""


def test_markdown_and_outputs_keep_no_script_handler_frame_style_or_link_to_javascript():
    nb = notebook()
    nb.cells.insert(0, new_markdown_cell(HOSTILE_MARKDOWN))
    nb.cells[2].outputs.append(new_output("display_data", data={"text/html": HOSTILE_MARKDOWN,
                                                                "text/markdown": HOSTILE_MARKDOWN}))
    page = export(FeedbackExporter, nb)
    body = BeautifulSoup(page.split("<body", 1)[1], features="html.parser")
    assert not body.find_all(["script", "iframe", "svg", "style", "meta", "base", "form", "input", "object", "embed"])
    for tag in body.find_all(True):
        assert not [a for a in tag.attrs if a.lower().startswith("on") or a in ("style", "srcdoc")], tag
        assert not (tag.name == "div" and "navbar-fixed-top" in (tag.get("class") or [])), tag
        for attribute in ("href", "src"):
            value = str(tag.get(attribute, "")).strip().lower()
            assert not value.startswith(("javascript:", "https://example.org")), tag
            assert not (attribute == "src" and value.startswith("data:image/svg")), tag
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page  # shown as text


def test_every_page_has_a_policy_that_runs_nothing_and_only_the_templates_styles():
    page = export(FeedbackExporter, notebook())
    head = page.split("<body", 1)[0]
    meta = BeautifulSoup(head, features="html.parser").find("meta", attrs={"http-equiv": "Content-Security-Policy"})
    policy = dict(part.strip().split(" ", 1) for part in meta["content"].split(";") if part.strip())
    assert policy["default-src"] == "'none'" and "script-src" not in policy  # no script, of any origin
    assert policy["img-src"] == "data:" and policy["base-uri"] == "'none'"
    styles = policy["style-src"].split()
    assert len(styles) == head.count("<style") and all(s.startswith("'sha256-") for s in styles)
    assert head.index("Content-Security-Policy") < head.index("<style")  # before what it governs
    assert csp("<html><head><style>a{}</style></head><body><style>b{}</style></body></html>").count("sha256") == 1


@pytest.mark.parametrize("html, expected", [
    ('<img src="a.png">', f'<img alt="{NO_ALT}" src="a.png">'),
    ('<IMG src="a.png"/>', f'<img alt="{NO_ALT}" src="a.png"/>'),
    ('<img alt="x" src="a.png">', '<img alt="x" src="a.png">'),
    ('<img src="a.png" alt = "x">', '<img src="a.png" alt = "x">'),
    ("<imgs><image>", "<imgs><image>"),
])
def test_alt_text_goes_only_where_there_is_none(html, expected):
    assert add_missing_alt(html) == expected


def test_autograde_hands_nbgrader_this_exporter():
    from traitlets.utils.importstring import import_item

    from course_utils.grading.student import FEEDBACK_EXPORTER
    assert import_item(FEEDBACK_EXPORTER) is FeedbackExporter


def test_remembered_highlighting_is_what_pygments_gives(tmp_path, monkeypatch):
    import course_utils.grading.feedback as feedback
    from nbconvert.filters.highlight import Highlight2HTML

    monkeypatch.setattr(feedback, "_HIGHLIGHTED", {})
    nb = notebook()
    nbformat.write(nb, tmp_path / "release.ipynb")
    feedback.remember([tmp_path / "release.ipynb"])
    assert len(feedback._HIGHLIGHTED) == 1  # the one code cell
    (html,) = feedback._HIGHLIGHTED.values()
    assert html == Highlight2HTML(pygments_lexer="ipython3")(nb.cells[1].source)
    # the page uses it, and a source seen for the first time is highlighted as pygments does
    feedback._HIGHLIGHTED[next(iter(feedback._HIGHLIGHTED))] = "<div>remembered</div>"
    assert "<div>remembered</div>" in export(FeedbackExporter, nb)
    other = feedback._Highlight(pygments_lexer="ipython3")
    assert other("x = 1  # new") == Highlight2HTML(pygments_lexer="ipython3")("x = 1  # new")


def test_outputs_past_a_cells_or_a_pages_share_are_left_out_with_a_note(tmp_path, monkeypatch):
    """A cell's outputs beyond scores.CELL_BYTES and a page's beyond scores.PAGE_BYTES are replaced
    by a note; an error (what nbgrader grades by) is always kept, shortened (issue 33, row 9)."""
    from course_utils.grading import scores

    monkeypatch.setattr(scores, "CELL_BYTES", 1000)
    monkeypatch.setattr(scores, "PAGE_BYTES", 2500)
    cells = [new_code_cell(f"c{i}", outputs=[new_output("stream", name="stdout", text="a" * 400) for _ in range(4)])
             for i in range(4)]
    cells[1].outputs.append(new_output("error", ename="E", evalue="v" * 5000, traceback=["t" * 5000] * 100))
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=cells), path)
    scores.clean_for_feedback(path, {}, [])
    kept = nbformat.read(path, as_version=4).cells
    texts = [[o.get("text", "") for o in c.outputs if o.output_type == "stream"] for c in kept]
    assert texts[0][:2] == ["a" * 400] * 2 and "over 1 MB per cell" in texts[0][2]  # (the note names the share)
    assert "per page" in texts[2][-1] or "per page" in texts[3][-1]
    error = next(o for o in kept[1].outputs if o.output_type == "error")
    assert len(error.evalue) == 2000 and len(error.traceback) == 50
