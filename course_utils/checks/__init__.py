"""The substance of the notebooks' hidden tests, one module per notebook.

A hidden test cell only calls `check_<exercise>(student_function)`, imported from the
notebook's module here (`from course_utils.checks.getting_started import check_batch_accuracy`).
nbgrader shows hidden test cells in the graded notebook and in the feedback; keeping the
expected values and the catalogue of typical mistakes here keeps them out of what students
get back. Each check raises AssertionError with a message that says what was expected and
what came back.

At grading time the checks run in the trusted checker, outside the student's sandboxed
kernel, and the student's function is a `RemoteFunction` proxy (`course_utils.grading`).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable

from ..grading.check_client import forbid_calls
from ..grading.checker import RemoteFunction


def call_student(function: Callable, *args, what: str, forbid: tuple[Callable, ...] = (), reason: str = "",
                 **kwargs):
    """`function(*args, **kwargs)` as a hidden test runs a student's function.

    Warnings are silenced (nbgrader scores a test cell that writes to stderr 0), the library's
    references in `forbid` are off limits (`reason` says what to do instead), and an exception
    becomes an AssertionError that names the function and the input (`what`).
    """
    if isinstance(function, RemoteFunction):  # graded: the function runs in the sandboxed kernel
        return function.invoke(args, kwargs, what=what, forbid=forbid, reason=reason)
    name = getattr(function, "__name__", "your function")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with forbid_calls(*forbid, reason=reason) if forbid else contextlib.nullcontext():
                return function(*args, **kwargs)
        except AssertionError:
            raise
        except Exception as err:
            raise AssertionError(f"{name} raised {type(err).__name__} on {what}: {err}") from err
