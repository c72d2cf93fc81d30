"""Student-controlled text is printed as what it is: no control character reaches report.txt,
grades.csv or a terminal (issue 33, row 8)."""
import pytest

from course_utils.grading.safe_text import printable, spreadsheet_cell


@pytest.mark.parametrize("raw, shown", [
    ("jdoe", "jdoe"),
    ("line\rfake: 32 / 32", "line\\rfake: 32 / 32"),
    ("\x1b[2K\x1b[8mhidden", "\\e[2K\\e[8mhidden"),
    ("a\nb\tc", "a\\nb\\tc"),
    ("bell\x07nul\x00del\x7f", "bell\\x07nul\\x00del\\x7f"),
    ("c1\x9bcontrol", "c1\\x9bcontrol"),
    ("notes\u202egnp.ipynb", "notes\\u202egnp.ipynb"),  # a right-to-left override that reorders the name
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("line\u2028separator", "line\\u2028separator"),
    ("Zoë Ødegård 李", "Zoë Ødegård 李"),  # letters of any script stay
])
def test_control_and_format_characters_are_escaped(raw, shown):
    assert printable(raw) == shown


def test_long_text_is_cut_and_says_so():
    assert printable("x" * 50, limit=10) == "x" * 10 + "..."


@pytest.mark.parametrize("raw, cell", [("=HYPERLINK(1)", "'=HYPERLINK(1)"), ("+1", "'+1"), ("-2", "'-2"),
                                       ("@SUM(A1)", "'@SUM(A1)"), ("jdoe", "jdoe"), ("a\rb", "a\\rb")])
def test_a_spreadsheet_never_reads_a_cell_as_a_formula(raw, cell):
    assert spreadsheet_cell(raw) == cell
