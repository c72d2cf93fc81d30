"""The exporter of the students' feedback pages: nbconvert's HTMLExporter without its second parse.

nbgrader's `generate_feedback` renders each autograded notebook with `HTMLExporter` and its
`feedback` template. Since nbconvert 7, `HTMLExporter.from_notebook_node` then parses the whole
page again with BeautifulSoup's pure-Python parser and writes it out again, to give images
without alternative text a placeholder one and to make JupyterLab-template cells focusable.
On a graded lab that second pass took 2 of a student's 4.4 s of feedback. The feedback
template is the classic one (no JupyterLab cells), so the only change left to make is the
alternative text, which one regular expression adds to each `<img` tag. Everything else,
the template, the filters and `sanitize_html`, is HTMLExporter's own.

nbgrader takes the class through `GenerateFeedback.exporter_class`; the `HTMLExporter.*`
settings (template, sanitizing) apply to it as to its base class.

Highlighting the code took another 0.6 s per student, most of it cells every student hands
in alike (given code, test cells). `remember` highlights the release's cells once in the
grading worker, and each nbgrader run forked from it reuses that HTML (`_Highlight`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import nbformat

from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

NO_ALT = "No description has been provided for this image"  # nbconvert's placeholder
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt\s*=)", re.IGNORECASE)


def add_missing_alt(html: str) -> str:
    """`html` with nbconvert's placeholder alternative text on every `<img>` that has none."""
    return _IMG_WITHOUT_ALT.sub(f'<img alt="{NO_ALT}"', html)


_HIGHLIGHTED: dict[tuple, str] = {}  # (source, lexer, cell magic's language, options) -> HTML


class _Highlight(Highlight2HTML):
    """Highlight2HTML that gives a source it has highlighted before (in this process, or in the
    worker this process was forked from) the same HTML again."""

    def __call__(self, source, language=None, metadata=None):
        key = (source, language or self.pygments_lexer, (metadata or {}).get("magics_language"),
               repr(sorted(self.extra_formatter_options.items())))
        if key not in _HIGHLIGHTED:
            _HIGHLIGHTED[key] = super().__call__(source, language, metadata)
        return _HIGHLIGHTED[key]


def remember(notebooks: Iterable[Path], lexer: str = "ipython3") -> None:
    """Highlight the code cells of `notebooks` (the release: trusted text) now, in this process."""
    highlight = _Highlight(pygments_lexer=lexer)
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                highlight(cell.source, metadata=cell.metadata)


class FeedbackExporter(HTMLExporter):
    """HTMLExporter whose pages for the classic-based feedback template skip the BeautifulSoup pass."""

    def from_notebook_node(self, nb, resources=None, **kw):
        # HTMLExporter.from_notebook_node (nbconvert 7.17) up to its BeautifulSoup pass
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", _Highlight(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self,
                                                 resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        if "jp-Notebook" in html:  # a JupyterLab template after all: HTMLExporter's own pass
            return HTMLExporter.from_notebook_node(self, nb, resources, **kw)
        return add_missing_alt(html), resources
