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
"""
from __future__ import annotations

import re

from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

NO_ALT = "No description has been provided for this image"  # nbconvert's placeholder
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt\s*=)", re.IGNORECASE)


def add_missing_alt(html: str) -> str:
    """`html` with nbconvert's placeholder alternative text on every `<img>` that has none."""
    return _IMG_WITHOUT_ALT.sub(f'<img alt="{NO_ALT}"', html)


class FeedbackExporter(HTMLExporter):
    """HTMLExporter whose pages for the classic-based feedback template skip the BeautifulSoup pass."""

    def from_notebook_node(self, nb, resources=None, **kw):
        # HTMLExporter.from_notebook_node (nbconvert 7.17) up to its BeautifulSoup pass
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self,
                                                 resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        if "jp-Notebook" in html:  # a JupyterLab template after all: HTMLExporter's own pass
            return HTMLExporter.from_notebook_node(self, nb, resources, **kw)
        return add_missing_alt(html), resources
