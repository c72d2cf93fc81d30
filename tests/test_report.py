"""What `course-lab run` shows: terminal lines, the summary, index.html (and index.html in Chromium)."""
from __future__ import annotations

import html.parser
import io
import json
import re
from pathlib import Path

import pytest

from course_utils import report
from course_utils.notebooks import NotebookRun, find_notebooks
from course_utils.report import STORIES, WIDTH, RunProgress, headline, render_index, summary_lines, write_index

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "lab4"


def recorded_name_patterns(notebook: Path) -> list[re.Pattern]:
    """The names a notebook passes to record(), as patterns (an f-string's {field} matches anything)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    names = re.findall(r'record\(\s*f?"([^"]+)"', source)
    return [re.compile("".join(".+" if part.startswith("{") else re.escape(part)
                               for part in re.split(r"(\{[^}]*\})", name)) + "$") for name in names]


def fake_runs(tmp_path: Path) -> list[NotebookRun]:
    """Two runs as run_notebooks returns them, with notebook-supplied text that needs escaping."""
    for sub in ("html", "executed"):
        (tmp_path / sub).mkdir(exist_ok=True)
    ok = NotebookRun("00_getting_started", "ok", 12.34,
                     {"digits_test_accuracy": 0.98765, "digits_train_seconds": 3.0, "odd <name>": {"a": 0.123456}},
                     None, str(tmp_path / "executed" / "00_getting_started.ipynb"),
                     str(tmp_path / "html" / "00_getting_started.html"),
                     {"digits_test_accuracy": "digits: test <b>accuracy</b> & more"})
    failed = NotebookRun("01_natural_adversarial_examples", "failed", 3.5, {"top1": 0.03}, "CellError: x < 0 & <script>",
                         str(tmp_path / "executed" / "01_natural_adversarial_examples.ipynb"), None,
                         {"top1": "top-1 accuracy"}, str(tmp_path / "logs" / "01.kernel.log"))
    for run in (ok, failed):
        Path(run.executed).write_text("{}")
    Path(ok.html).write_text("<html><body><h1>Getting started, rendered</h1></body></html>")
    return [ok, failed]


class _Page(html.parser.HTMLParser):
    """Collects the links, the summary table's rows and the text of index.html."""

    def __init__(self):
        super().__init__()
        self.links, self.summary_rows, self.sections, self.text, self.tags = [], 0, [], [], []
        self._table = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "table":
            self._table = attrs.get("id")
        if tag == "tr" and self._table == "summary" and self.tags[-2:-1] != ["thead"]:
            self.summary_rows += 1
        if tag == "section":
            self.sections.append(attrs["id"])

    def handle_data(self, data):
        self.text.append(data)


def test_every_notebook_has_a_story_naming_only_what_it_records():
    notebooks = find_notebooks(SOLUTIONS)
    assert {p.stem for p in notebooks} <= set(STORIES), "a notebook without a claim in report.STORIES"
    for path in notebooks:
        patterns, story = recorded_name_patterns(path), STORIES[path.stem]
        named = set(story.headline) | {n for claim in story.claims for n in claim.results}
        unknown = sorted(n for n in named if not any(p.match(n) for p in patterns))
        assert not unknown, f"{path.stem}: STORIES names results the notebook does not record: {unknown}"
        assert 2 <= len(story.headline) <= 3 and story.claim.endswith(".")


def test_headline_follows_the_story_and_falls_back_to_the_first_recorded():
    run = NotebookRun("02_synthetic_adversarial_examples", "ok", 1.0,
                      {"example_adversarial_confidence": 0.9, "pgd_accuracy": 0.0, "clean_accuracy": 0.98},
                      labels={"clean_accuracy": "clean accuracy"})
    assert headline(run) == [("clean accuracy", 0.98), ("pgd_accuracy", 0.0)]
    unknown = NotebookRun("99_new", "ok", 1.0, {f"n{i}": i for i in range(5)})
    assert headline(unknown) == [("n0", 0), ("n1", 1), ("n2", 2)]


def test_index_lists_every_run_escapes_notebook_text_and_links_relatively(tmp_path):
    runs = fake_runs(tmp_path)
    page = render_index(runs, profile="grade <x>", out_dir=tmp_path)
    parsed = _Page()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert parsed.summary_rows == 2 and parsed.sections == [r.name for r in runs]
    assert "html/00_getting_started.html" in parsed.links
    assert "executed/01_natural_adversarial_examples.ipynb" in parsed.links
    assert not any(link.startswith(("/", "file:")) or "html/01_" in link for link in parsed.links)
    # notebook text is shown as text, never as markup
    assert "<script>" not in page and "<b>accuracy</b>" not in page and "<x>" not in page
    assert "digits: test <b>accuracy</b> & more" in text and "CellError: x < 0 & <script>" in text
    assert "b" not in parsed.tags and "script" not in parsed.tags
    assert STORIES["00_getting_started"].claim in text and "0.9877" in text and "12.3" in text


def test_unknown_result_names_render_without_a_claim(tmp_path):
    (run, _) = fake_runs(tmp_path)
    page = render_index([run], profile="quick", out_dir=tmp_path)
    row = next(r for r in page.split("<tr>") if "odd &lt;name&gt;" in r)
    assert '<td class="none">—</td>' in row and "{a: 0.1235}" in row
    ok_row = next(r for r in page.split("<tr>") if "<code>digits_test_accuracy</code>" in r)
    assert report.STORIES["00_getting_started"].claim_for("digits_test_accuracy") in ok_row.replace("&#x27;", "'")


def test_terminal_lines_fit_100_columns_and_each_notebook_starts_and_finishes(tmp_path):
    runs = fake_runs(tmp_path)
    long = NotebookRun("06_simclr", "ok", 100.0, {"simclr_probe_accuracy": 0.5, "random_init_probe_accuracy": 0.4,
                                                  "supervised_few_labels_accuracy": 0.3},
                       labels={n: "a very long label " * 8 for n in ("simclr_probe_accuracy",
                                                                     "random_init_probe_accuracy")})
    runs.append(long)
    stream = io.StringIO()
    with RunProgress(len(runs), stream=stream) as progress:  # not a terminal: plain lines, no bar
        for i, run in enumerate(runs):
            progress.start(i, Path(f"{run.name}.ipynb"))
            progress.finish(i, run)
    out = stream.getvalue()
    lines = out.splitlines() + summary_lines(runs)
    assert "\r" not in out and "notebooks |" not in out
    assert max(len(line) for line in lines) <= WIDTH
    for i, run in enumerate(runs):
        assert f"[{i + 1}/3] start   {run.name}" in lines
        assert any(line.startswith(f"[{i + 1}/3] {'ok' if run.status == 'ok' else 'FAILED'}") and run.name in line
                   for line in lines)
    assert "CellError: x < 0 & <script>" in out and "01.kernel.log" in out
    assert "digits: test <b>accuracy</b> & more 0.9877" in out


def test_progress_bar_keeps_the_lines(tmp_path):
    runs = fake_runs(tmp_path)
    stream = io.StringIO()
    with RunProgress(len(runs), stream=stream, bar=True) as progress:
        progress.start(0, Path("00_getting_started.ipynb"))
        progress.finish(0, runs[0])
    out = stream.getvalue()
    assert "notebooks |" in out and "[1/2] start   00_getting_started\n" in out and "[1/2] ok" in out


@pytest.mark.notebook
def test_course_lab_run_talks_and_keeps_kernel_noise_off_the_terminal(tmp_path, capfd, monkeypatch):
    from course_utils.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--profile", "grade", "--notebooks", "00", "--solutions", str(SOLUTIONS),
                 "--out", "out"]) == 0
    out, err = capfd.readouterr()  # file descriptors: the kernel process writes to the same ones
    assert "without encryption" not in out + err and "IPKernelApp" not in out + err
    assert err == ""
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert "[1/1] start   00_getting_started" in lines
    assert any(re.match(r"\[1/1\] ok +00_getting_started +\d+\.\d s$", line) for line in lines)
    assert "digits: test accuracy" in out
    index = (tmp_path / "out" / "index.html").read_text()
    assert 'href="html/00_getting_started.html"' in index and (tmp_path / "out" / "html" / "00_getting_started.html").exists()


@pytest.mark.browser
def test_index_html_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM} (see tests/test_browser.py)")
    index = write_index(fake_runs(tmp_path), tmp_path, profile="grade")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(index.as_uri())
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
            rows = page.locator("#summary tbody tr")
            assert rows.count() == 2 and rows.nth(0).is_visible()
            assert rows.nth(1).locator("td.failed").inner_text() == "failed"
            assert page.locator("[id='00_getting_started'] td.none").first.is_visible()  # the unknown name's row
            page.locator("#summary a", has_text="00_getting_started").click()
            page.wait_for_url("**/html/00_getting_started.html")
            assert page.locator("h1").inner_text() == "Getting started, rendered"
        finally:
            browser.close()
    assert (tmp_path / "index.png").stat().st_size > 10_000
