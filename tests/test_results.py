import json

import nbformat
import numpy as np
import pytest
import torch

from course_utils.notebooks import NotebookRun, find_notebooks, summary_table
from course_utils.results import RESULT_MIME, Result, _plain, read_records, read_results, record


def test_record_displays_text_and_machine_readable_json(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    record("clean_accuracy", torch.tensor(0.98765, dtype=torch.float64), label="clean accuracy")
    bundle = shown[0]
    assert bundle["text/plain"] == "clean accuracy: 0.9877"
    assert bundle[RESULT_MIME] == {"name": "clean_accuracy", "value": pytest.approx(0.98765), "label": "clean accuracy"}


def test_plain_converts_numbers_and_rejects_objects():
    assert _plain({"a": np.float32(0.5), "b": [np.int64(3), torch.tensor([1, 2])]}) == {"a": 0.5, "b": [3, [1, 2]]}
    with pytest.raises(TypeError, match="record"):
        _plain(object())


def test_read_results_from_an_executed_notebook():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data={RESULT_MIME: {"name": "x", "value": 1.5},
                                                                    "text/plain": "x: 1.5"}),
                    nbformat.v4.new_output("display_data", data={RESULT_MIME: json.dumps({"name": "y", "value": 2})})]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("no outputs")]
    assert read_results(nb) == {"x": 1.5, "y": 2}


def test_read_records_keeps_labels_and_reads_notebooks_from_before_labels(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    record("top1", 0.03, label="top-1 accuracy")
    record("n_images", 7500)
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle) for bundle in shown]
    old = {"name": "aurra", "value": 0.5}  # what record() wrote before it recorded labels
    cell.outputs.append(nbformat.v4.new_output("display_data", data={RESULT_MIME: json.dumps(old)}))
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert read_records(nb) == {"top1": Result("top1", 0.03, "top-1 accuracy"),
                                "n_images": Result("n_images", 7500, "n_images"),
                                "aurra": Result("aurra", 0.5, "aurra")}


def test_summary_table_lists_every_notebook():
    runs = [NotebookRun("00_a", "ok", 12.3, {"acc": 0.99}, labels={"acc": "test accuracy"}),
            NotebookRun("01_b", "failed", 1.0, {}, "Error: boom")]
    table = summary_table(runs)
    assert "00_a" in table and "test accuracy 0.99" in table and "failed" in table and "Error: boom" in table


def test_find_notebooks(tmp_path):
    (tmp_path / "01_x.ipynb").write_text("{}")
    (tmp_path / "00_y.ipynb").write_text("{}")
    assert [p.name for p in find_notebooks(tmp_path)] == ["00_y.ipynb", "01_x.ipynb"]
    assert [p.name for p in find_notebooks(tmp_path, ["01"])] == ["01_x.ipynb"]
    with pytest.raises(FileNotFoundError, match="repository root"):
        find_notebooks(tmp_path / "missing")
