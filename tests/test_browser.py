"""The student's experience in a real browser: JupyterLab driven by Playwright in Debian's Chromium.

One JupyterLab server (started by `course_utils.lab_server`, as `make lab` does) serves a
temporary copy of the lab: the release notebooks as students get them, the solution versions of
notebooks 02 and 05, and a solved copy of notebook 00. Chromium is the system one
(`apt-get install chromium chromium-driver`); nothing downloads a browser. Each step saves a
screenshot under build/screenshots/ for a person to look at.

Set LAB_SKIP_BROWSER=1 to skip these tests on a machine without Chromium; CI installs it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.lab_server import start_lab
from grading_fixtures import solved

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, RELEASE = ROOT / "solutions" / "lab4", ROOT / "labs" / "lab4"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
# Debian's Chromium on a machine without network: without the background-networking flags it
# floods refused connections; a fresh profile directory comes from launch_persistent_context.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
NB02 = "02_synthetic_adversarial_examples.ipynb"
NB05 = "05_patch_localization.ipynb"
NB00 = "00_getting_started.ipynb"
SECOND, MINUTE = 1000, 60_000  # Playwright counts milliseconds
# JupyterLab settings for the test: every cell in the DOM (no windowing), no news or update toasts
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if os.environ.get("LAB_SKIP_BROWSER"):
        pytest.skip("LAB_SKIP_BROWSER is set")
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium chromium-driver (README, setup), "
                    "or set LAB_SKIP_BROWSER=1 to skip the browser tests")
    tmp = tmp_path_factory.mktemp("browser")
    lab = tmp / "lab4"
    shutil.copytree(RELEASE, lab)  # what students get
    (lab / "solutions").mkdir()
    for name in (NB02, NB05):
        shutil.copy(SOLUTIONS / name, lab / "solutions" / name)
    (lab / "solved").mkdir()
    nbformat.write(nbformat.from_dict(solved(NB00)), lab / "solved" / NB00)
    settings = tmp / "settings"
    for rel, values in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_PROFILE", "NBGRADER_EXECUTION")}
    env.update(JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               COURSE_DATA_DIR=str(tmp / "data"), MPLBACKEND="module://matplotlib_inline.backend_inline")
    server = start_lab(lab, env=env, log=tmp / "jupyterlab.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        yield context
        context.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh tab; afterwards its kernels are shut down, and the server must have logged no error."""
    logged = len(server.log.read_text().splitlines())
    page = browser.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)  # kept by conftest's makereport hook
    if report is not None and report.failed:
        page.screenshot(path=SCREENSHOTS / f"failed-{request.node.name}.png")
    page.close()
    server.shutdown_kernels()
    errors = [line for line in server.log.read_text().splitlines()[logged:] if line.startswith("[E ")]
    assert not errors, "JupyterLab logged errors:\n" + "\n".join(errors[:20])


# --- driving JupyterLab ------------------------------------------------------------------------

def open_notebook(page, server, path: str):
    """Open `path` alone in JupyterLab ("reset": no tabs restored from the last page) once its kernel is idle."""
    page.goto(server.url(path) + "&reset")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=MINUTE)
    wait_idle(page, timeout=2 * MINUTE)
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")


def wait_idle(page, timeout: int) -> None:
    """Wait until the kernel is idle and no cell is queued or running ("[*]")."""
    page.wait_for_function(
        """() => {
            const status = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
            const busy = [...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')]
                .some(p => p.textContent.includes('*'));
            return status && status.getAttribute('data-status') === 'idle' && !busy;
        }""", timeout=timeout, polling=500)


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def run_from_menu(page, item: str, timeout: int) -> None:
    """Run cells from the Run menu and wait until they have run.

    The kernel is idle and no prompt shows "[*]" both before JupyterLab has queued the cells and after
    they ran, so waiting for idle alone can return at once (a CI run read an output that did not exist
    yet). First wait for some prompt to change, then for idle.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    before = page.locator(".jp-NotebookPanel .jp-InputPrompt").all_inner_texts()
    changed = ("old => [...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')]"
               ".some((p, i) => p.textContent !== old[i])")
    for attempt in range(3):
        # a click on a menu item that was still opening is lost now and then (a full CI run saw nothing
        # queued for three minutes): no prompt changed, so nothing ran, and clicking again is safe
        menu(page, "Run", item)
        try:
            page.wait_for_function(changed, arg=before, timeout=30 * SECOND if attempt < 2 else timeout, polling=200)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    wait_idle(page, timeout)


def select_cell(cells, index: int) -> None:
    cells.nth(index).locator(".jp-InputPrompt").click()


def run_cell(page, cells, index: int, timeout: int) -> None:
    """Run one cell in place (Ctrl+Enter) and wait for it to finish."""
    select_cell(cells, index)
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "([i]) => /\\[\\d+\\]/.test(document.querySelectorAll('.jp-NotebookPanel .jp-Cell')[i]"
        ".querySelector('.jp-InputPrompt').textContent)", arg=[index], timeout=timeout, polling=500)
    wait_idle(page, timeout)


def save_and_read(page, path: Path, executed: int) -> nbformat.NotebookNode:
    """Save the notebook from the browser, then read it from disk once it holds `executed` code cells."""
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while True:
        nb = nbformat.read(path, as_version=4)
        if sum(c.get("execution_count") is not None for c in nb.cells if c.cell_type == "code") >= executed:
            return nb
        assert time.monotonic() < deadline, f"{path.name} was not saved with its outputs"
        time.sleep(0.5)


def index_of(path: Path, marker: str) -> int:
    """Index of the first code cell of the notebook at `path` whose source contains `marker`."""
    nb = nbformat.read(path, as_version=4)
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and marker in c.source)


def shot(page, name: str, element=None) -> None:
    (element or page).screenshot(path=SCREENSHOTS / f"{name}.png")


def loaded_images(page, container, timeout: int = MINUTE) -> list[str]:
    """The sources of the images in `container` once at least one has loaded."""
    page.wait_for_function("el => [...el.querySelectorAll('img')].some(i => i.complete && i.naturalWidth > 0)",
                           arg=container.element_handle(), timeout=timeout, polling=250)
    return container.locator("img").evaluate_all(
        "els => els.filter(e => e.complete && e.naturalWidth > 0).map(e => e.src)")


# --- the checks ----------------------------------------------------------------------------------

def test_notebook_02_runs_all_and_the_eps_slider_redraws(page, server):
    path = server.notebook_dir / "solutions" / NB02
    cells = open_notebook(page, server, f"solutions/{NB02}")
    shot(page, "01_nb02_opened")
    run_from_menu(page, "Run All Cells", timeout=10 * MINUTE)
    code_cells = sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)
    nb = save_and_read(page, path, code_cells)
    errors = [(i, o.get("ename")) for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"cells ended in errors: {errors}"
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")

    example = cells.nth(index_of(path, "show_adversarial_example(x0[0], x_cand_adv[i]"))
    example.scroll_into_view_if_needed()
    assert loaded_images(page, example.locator(".jp-OutputArea")), "the adversarial example figure is no image"
    assert "adversarial:" in example.locator(".jp-OutputArea").inner_text()
    shot(page, "02_nb02_adversarial_example", example.locator(".jp-Cell-outputWrapper"))

    slider_cell = cells.nth(index_of(path, "eps_slider = widgets.FloatSlider"))
    slider_cell.scroll_into_view_if_needed()
    before = loaded_images(page, slider_cell.locator(".widget-output"))
    readout = slider_cell.locator(".widget-readout").inner_text()
    shot(page, "03_nb02_slider_before", slider_cell.locator(".jp-Cell-outputWrapper"))
    handle, track = slider_cell.locator(".noUi-handle").first, slider_cell.locator(".noUi-target").first
    h, t = handle.bounding_box(), track.bounding_box()
    page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
    page.mouse.down()
    page.mouse.move(t["x"] + t["width"] - 1, h["y"] + h["height"] / 2, steps=10)
    page.mouse.up()
    page.wait_for_function("([el, old]) => el.innerText !== old",
                           arg=[slider_cell.locator(".widget-readout").element_handle(), readout], timeout=MINUTE)
    slider_cell.page.wait_for_function(
        "([out, old]) => { const img = out.querySelector('img'); return img && img.complete && img.src !== old; }",
        arg=[slider_cell.locator(".widget-output").element_handle(), before[0]], timeout=2 * MINUTE)
    after = slider_cell.locator(".widget-readout").inner_text()
    assert float(after) > float(readout), (readout, after)
    shot(page, "04_nb02_slider_after", slider_cell.locator(".jp-Cell-outputWrapper"))


def test_notebook_05_quiz_gives_feedback(page, server):
    path = server.notebook_dir / "solutions" / NB05
    cells = open_notebook(page, server, f"solutions/{NB05}")
    quiz_index, fallback_index = index_of(path, "display(quiz.widget())"), index_of(path, "interactive_frontend()")
    select_cell(cells, fallback_index + 1)
    run_from_menu(page, "Run All Above Selected Cell", timeout=3 * MINUTE)
    # in JupyterLab the static fallback (questions and answers, for papermill's report) stays away
    fallback = cells.nth(fallback_index).locator(".jp-OutputArea")
    assert "widget above" in fallback.inner_text() and "Answers" not in fallback.inner_text(), fallback.inner_text()
    assert fallback.locator("img").count() == 0, "the answers are drawn before the student answered"

    quiz = cells.nth(quiz_index)
    quiz.scroll_into_view_if_needed()
    buttons = quiz.locator(".widget-gridbox button")
    buttons.nth(8).wait_for(timeout=MINUTE)  # eight directions and the green centre
    names = [b.strip().split(" ", 1)[-1] for b in buttons.all_inner_texts()]  # "↖ top left", ..., "green"
    directions = [n for n in names if n != "green"]
    feedback = quiz.locator(".widget-html-content").first
    widget = buttons.first.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")  # the quiz box
    shown_images = widget.locator("img:visible")
    assert "Question 1" in feedback.inner_text()
    assert not any(n in feedback.inner_text() for n in directions), "the question gives its answer away"
    assert shown_images.count() == 1, "an answer is drawn before the student answered"
    shown, natural = shown_images.first.evaluate("e => [e.clientWidth, e.naturalWidth]")
    assert shown <= natural, f"the quiz picture is stretched from {natural} to {shown} px"
    shot(page, "05_nb05_quiz_question", widget)

    def answer(name: str, expect: str = "Right!|Not quite") -> str:
        buttons.nth(names.index(name)).click()
        page.wait_for_function("([el, re]) => new RegExp(re).test(el.innerText)",
                               arg=[feedback.element_handle(), expect], timeout=MINUTE)
        page.wait_for_function("([el, n]) => [...el.querySelectorAll('img')].filter(i => i.offsetParent).length >= n",
                               arg=[widget.element_handle(), 2], timeout=MINUTE)  # the answer, drawn on the photo
        return feedback.inner_text()

    guess = directions[0]
    text = answer(guess)
    right = re.search(r"[Ii]t is ([a-z ]+?)(?:, not |\.)", text).group(1)
    if right != guess:
        assert f"it is {right}, not {guess}" in text, text
        shot(page, "06_nb05_quiz_wrong_answer", widget)
        text = answer(right, expect="Right!")
        assert "Score: 0 of 1." in text, f"a second try changed the score: {text}"
    assert f"Right! It is {right}." in text, text
    shot(page, "07_nb05_quiz_right_answer", widget)

    questions = int(re.search(r"questions=(\d+)", nbformat.read(path, as_version=4).cells[quiz_index].source).group(1))
    for question in range(2, questions + 1):
        quiz.get_by_text("Next question").click()
        page.wait_for_function("([el, q]) => el.innerText.includes(`Question ${q} `)",
                               arg=[feedback.element_handle(), question], timeout=MINUTE)
        assert shown_images.count() == 1, f"question {question}'s answer is drawn before it was given"
        text = answer(guess)
        assert f"of {question}." in text, text
        assert ("All questions answered" in text) == (question == questions), text
    page.wait_for_function("el => [...el.querySelectorAll('img')].filter(i => i.offsetParent).length === 3",
                           arg=widget.element_handle(), timeout=MINUTE)  # question, its answer, all the answers
    shot(page, "07b_nb05_quiz_all_answers", widget)


def test_release_notebook_asks_for_the_answer_and_shows_progress_widgets(page, server):
    path = server.notebook_dir / NB00
    cells = open_notebook(page, server, NB00)
    run_from_menu(page, "Run All Cells", timeout=3 * MINUTE)
    nb = nbformat.read(path, as_version=4)
    first_test = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade")
                      and c.cell_type == "code")
    failing = cells.nth(first_test)
    failing.scroll_into_view_if_needed()
    text = failing.locator(".jp-OutputArea-output").inner_text()
    assert "NotImplementedError" in text and "replace" in text.lower(), text[-600:]
    prompts = [p.strip() for p in cells.locator(".jp-InputPrompt").all_inner_texts()]
    assert prompts[first_test + 1:] and all(p in ("", "[ ]:") for p in prompts[first_test + 1:]), \
        "Run All went on past the failing cell"
    shot(page, "08_release_not_implemented", failing)

    training = index_of(path, "fit(")
    run_cell(page, cells, training, timeout=10 * MINUTE)
    output = cells.nth(training).locator(".jp-Cell-outputWrapper")
    output.scroll_into_view_if_needed()
    assert output.locator(".widget-hprogress").count() >= 1, "the progress bar is not a widget"
    text = output.inner_text()
    assert "█" not in text and "%|" not in text, f"progress bars as text: {text[:300]}"  # tqdm's text bar
    shot(page, "09_release_progress_widgets", output)


def validate(page, server, path: str, name: str):
    open_notebook(page, server, path)
    page.locator(".jp-NotebookPanel-toolbar").get_by_text("Validate", exact=True).click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator(".validation-success, .validation-failed").first.wait_for(timeout=5 * MINUTE)
    shot(page, name)
    return dialog


def test_validate_passes_a_solved_notebook(page, server):
    dialog = validate(page, server, f"solved/{NB00}", "10_validate_solved")
    assert dialog.locator(".validation-success").count() == 1, dialog.inner_text()
    assert "passes all the tests" in dialog.inner_text()


def test_validate_reports_the_failing_cells_of_a_release_notebook(page, server):
    dialog = validate(page, server, NB00, "11_validate_release")
    assert dialog.locator(".validation-failed").count() == 1, dialog.inner_text()
    text = dialog.inner_text()
    assert "NotImplementedError" in text and "batch_accuracy" in text, text[:1000]

