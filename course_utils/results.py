"""Headline numbers a notebook reports, and how `course-lab run` collects them.

A notebook calls `record("clean_accuracy", 0.986, label="clean test accuracy")`. The value
is displayed as plain text for the reader and, in the same output, as JSON under a MIME
type of this package's own, which `read_results` picks out of the executed notebook.
(scrapbook's `glue` does the same, but is unmaintained and pulls in pandas and pyarrow.)
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, NamedTuple

RESULT_MIME = "application/vnd.course-utils.result+json"


def _plain(value: Any) -> Any:
    """A JSON-ready copy of `value` (tensors and NumPy scalars become Python numbers)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"record() takes numbers, strings, lists and dicts of them, not {type(value).__name__}")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return json.dumps(value)


def record(name: str, value: Any, *, label: str | None = None) -> None:
    """Show `label: value` and record it under `name` for `course-lab run`'s summary and report."""
    from IPython.display import display

    value = _plain(value)
    payload = {"name": name, "value": value}
    if label:
        payload["label"] = label
    display({RESULT_MIME: payload, "text/plain": f"{label or name}: {_format(value)}"}, raw=True)


class Result(NamedTuple):
    """One recorded number: its name, its value and the label the notebook showed it with."""

    name: str
    value: Any
    label: str


def read_records(notebook) -> dict[str, Result]:
    """{name: Result} of every `record` call in an executed notebook (a nbformat node), in
    notebook order; a later call with the same name wins. Notebooks executed before labels were
    recorded have none: their label is the name."""
    found = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if RESULT_MIME in data:
                item = data[RESULT_MIME]
                if isinstance(item, str):
                    item = json.loads(item)
                found[item["name"]] = Result(item["name"], item["value"], item.get("label") or item["name"])
    return found


def read_results(notebook) -> dict[str, Any]:
    """{name: value} of every `record` call in an executed notebook (a nbformat node)."""
    return {name: result.value for name, result in read_records(notebook).items()}
