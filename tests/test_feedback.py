"""The feedback exporter renders the page nbconvert's HTMLExporter renders, without its second parse."""
import base64
import os

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

import nbgrader
from course_utils.grading.feedback import NO_ALT, FeedbackExporter, add_missing_alt

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
    ours, theirs = export(FeedbackExporter, nb), export(HTMLExporter, nb)
    assert "jp-Notebook" not in ours  # the classic template: nothing but the alternative text to add
    # HTMLExporter's page is BeautifulSoup's writing of what it rendered: ours, read and written the same way
    assert str(BeautifulSoup(ours, features="html.parser")) == theirs
    assert ours.count(f'alt="{NO_ALT}"') == theirs.count(f'alt="{NO_ALT}"') >= 2
    assert "<script>alert(1)</script>" not in ours  # sanitized as before


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

    from course_utils.grading.autograde import FEEDBACK_EXPORTER
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
