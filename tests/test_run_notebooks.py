"""run_notebooks' retry of a notebook whose cell timed out (nbclient can hang on an ipywidgets cell)."""
import nbformat
import papermill
import pytest
from nbclient.exceptions import CellTimeoutError

from course_utils.notebooks import run_notebooks


@pytest.fixture
def notebook(tmp_path):
    path = tmp_path / "00_tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), str(path))
    return path


def fake_papermill(monkeypatch, outcomes):
    """papermill.execute_notebook replaced: each call takes the next outcome (an exception to raise,
    or None: write the notebook to its target, as papermill does)."""
    calls = []

    def execute(source, target, **kwargs):
        calls.append(kwargs["execution_timeout"])
        outcome = outcomes[len(calls) - 1]
        nbformat.write(nbformat.read(source, as_version=4), target)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    return calls


def test_a_notebook_that_timed_out_runs_once_more_and_says_so(notebook, tmp_path, monkeypatch):
    calls = fake_papermill(monkeypatch, [CellTimeoutError("Cell execution timed out"), None])
    [run] = run_notebooks([notebook], out_dir=tmp_path / "out", html=False, cell_timeout=7)
    assert run.status == "ok" and run.error is None and calls == [7, 7]
    assert "ran longer than 7 s" in run.retried


def test_a_notebook_that_times_out_again_fails_and_other_errors_are_not_retried(notebook, tmp_path, monkeypatch):
    calls = fake_papermill(monkeypatch, [CellTimeoutError("timed out"), CellTimeoutError("timed out")])
    [run] = run_notebooks([notebook], out_dir=tmp_path / "a", html=False, cell_timeout=7)
    assert run.status == "failed" and "ran longer than 7 s" in run.error and run.retried and len(calls) == 2
    calls = fake_papermill(monkeypatch, [papermill.PapermillExecutionError(0, 1, "x", "ValueError", "boom", []), None])
    [run] = run_notebooks([notebook], out_dir=tmp_path / "b", html=False)
    assert run.status == "failed" and run.retried is None and len(calls) == 1
    calls = fake_papermill(monkeypatch, [CellTimeoutError("timed out")])
    [run] = run_notebooks([notebook], out_dir=tmp_path / "c", html=False, timeout_retries=0)
    assert run.status == "failed" and run.retried is None and len(calls) == 1
