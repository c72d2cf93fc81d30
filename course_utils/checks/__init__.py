"""The substance of the notebooks' hidden tests, one module per notebook.

A hidden test cell only calls `check_<exercise>(student_function)`, imported from the
notebook's module here (`from course_utils.checks.getting_started import check_batch_accuracy`).
nbgrader shows hidden test cells in the graded notebook and in the feedback; keeping the
expected values and the catalogue of typical mistakes here keeps them out of what students
get back. Each check raises AssertionError with a message that says what was expected and
what came back.
"""
from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Callable, Iterator


@contextlib.contextmanager
def forbid_calls(*references: Callable, reason: str) -> Iterator[None]:
    """Fail if any of `references` (Python functions) runs inside the block.

    Watches for their code objects with a profile hook, so it catches every alias a
    student might use (`from course_utils.metrics import accuracy as acc`, a wrapper, ...).
    """
    codes = {ref.__code__: f"{ref.__module__}.{ref.__qualname__}" for ref in references}
    called: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            called.append(codes[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)
    if called:
        raise AssertionError(f"your function calls {called[0]}; {reason}")


def call_student(function: Callable, *args, what: str, forbid: tuple[Callable, ...] = (), reason: str = "",
                 **kwargs):
    """`function(*args, **kwargs)` as a hidden test runs a student's function.

    Warnings are silenced (nbgrader scores a test cell that writes to stderr 0), the library's
    references in `forbid` are off limits (`reason` says what to do instead), and an exception
    becomes an AssertionError that names the function and the input (`what`).
    """
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
