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

Nothing a student wrote runs where a TA or a student looks. nbconvert's `sanitize_html`
cleans outputs, but nbgrader's feedback template renders markdown cells (and comments)
without it. Here every piece of HTML that comes from the notebook, markdown cells and outputs
alike, goes through one allowlist (`sanitize`): text formatting, lists, tables, links to
http(s) and mailto, images from `data:` only; no scripts, event handlers, frames, forms,
`<style>`, `<meta>`, `<base>`, `style`, `class` or `id` attributes (a student's element with a
page's own class could sit over the real score). Disallowed tags are shown escaped, as text.
And every page carries a Content-Security-Policy (`csp`) that runs no script at all, loads
nothing from anywhere, and applies only the template's own `<style>` blocks (by their hashes):
should anything slip through the allowlist, the browser still runs none of it. (MathJax, a
script, does not run either: formulas show as their LaTeX source.)
"""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path
from typing import Iterable

import bleach
import nbformat
from jinja2 import pass_context

from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

NO_ALT = "No description has been provided for this image"  # nbconvert's placeholder
TAGS = ["a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4",
        "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s", "samp", "small", "span",
        "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var"]
_CLEANER = bleach.Cleaner(tags=TAGS, protocols=["http", "https", "mailto", "data"], strip=False,
                          strip_comments=True, attributes=lambda tag, name, value: _allowed(tag, name, value))


def _allowed(tag: str, name: str, value: str) -> bool:
    if tag == "a":
        return name == "title" or (name == "href" and not value.strip().lower().startswith("data:"))
    if tag == "img":
        return name in ("alt", "title", "width", "height") or (
            name == "src" and value.strip().lower().startswith("data:image/") and "svg" not in value[:30].lower())
    if tag in ("td", "th"):
        return name in ("align", "colspan", "rowspan")
    return tag in ("abbr",) and name == "title"


@functools.lru_cache(maxsize=8192)
def _clean(html: str) -> str:
    return _CLEANER.clean(html)


def sanitize(html: str) -> str:
    """`html` (from a notebook: a markdown cell rendered, an output) with only what `TAGS` and
    `_allowed` let through; the rest shown as text. Remembered: most of a class's pages show the
    release's own markdown, cleaned once per process."""
    return _clean(str(html))


def csp(page: str) -> str:
    """The Content-Security-Policy of a feedback page: nothing runs, nothing loads but `data:`
    images, and only the `<style>` blocks of the page's head (the template's) apply."""
    head = page.split("<body", 1)[0]
    hashes = sorted({"'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"
                     for block in re.findall(r"<style[^>]*>(.*?)</style>", head, re.S)})
    return (f"default-src 'none'; img-src data:; style-src {' '.join(hashes) or chr(39) + 'none' + chr(39)}; "
            "base-uri 'none'; form-action 'none'")


def with_csp(page: str) -> str:
    """`page` with its policy as the first thing in its head (a policy governs what follows it)."""
    meta = f'<meta http-equiv="Content-Security-Policy" content="{csp(page)}">'
    if re.search(r"<head[^>]*>", page):
        return re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + "\n" + meta, page, count=1)
    return meta + "\n" + page
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


_MARKDOWN: dict[tuple[int, str], str] = {}  # (exporter, markdown) -> sanitized HTML


class SanitizedHTMLExporter(HTMLExporter):
    """HTMLExporter whose markdown (cells, outputs, comments) and HTML outputs go through
    `sanitize`, and whose every page carries the policy of `csp`."""

    @pass_context
    def markdown2html(self, context, source):
        if context.get("cell", {}).get("attachments"):  # (rendered with the cell's own attachments)
            return sanitize(HTMLExporter.markdown2html(self, context, source))
        key = (id(self), source)
        if key not in _MARKDOWN:
            if len(_MARKDOWN) > 8192:
                _MARKDOWN.clear()
            _MARKDOWN[key] = sanitize(HTMLExporter.markdown2html(self, context, source))
        return _MARKDOWN[key]

    def default_filters(self):
        for name, function in super().default_filters():
            yield (name, sanitize if name == "clean_html" else function)

    def from_notebook_node(self, nb, resources=None, **kw):
        html, resources = super().from_notebook_node(nb, resources, **kw)
        return with_csp(html), resources


class FeedbackExporter(SanitizedHTMLExporter):
    """SanitizedHTMLExporter whose pages for the classic-based feedback template skip the
    BeautifulSoup pass, and the schema validation nbconvert repeats after each of its dozen
    default preprocessors, enabled or not (a third of a page's time; the notebook was validated
    when nbgrader, or `course_folder.record`, read it)."""

    def _validate_preprocessor(self, nbc, preprocessor):
        return None

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
            return SanitizedHTMLExporter.from_notebook_node(self, nb, resources, **kw)
        return with_csp(add_missing_alt(html)), resources
