"""The substance of the notebooks' hidden tests, one module per notebook.

A hidden test cell only calls `check_<exercise>(student_function)`, imported from the
notebook's module here (`from course_utils.checks.getting_started import check_batch_accuracy`).
nbgrader shows hidden test cells in the graded notebook and in the feedback; keeping the
expected values and the catalogue of typical mistakes here keeps them out of what students
get back. Each check raises AssertionError with a message that says what was expected and
what came back.

At grading time the checks run in the trusted checker, outside the student's sandboxed
kernel, and the student's function is a `RemoteFunction` proxy (`course_utils.grading`).
Every call goes through `call_student`, whose rule holds for every check: the function may
change only what its exercise allows (`may_change`); any other change to an argument fails
the check, and never reaches the objects the check computes its references from
(`_side_effects.py`).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterable

from ..grading import protocol
from ..grading.check_client import forbid_calls
from ..grading.checker import RemoteFunction
from . import _side_effects


class Mistake(AssertionError):
    """A failed check that names the typical mistake it caught ("a count, not a fraction"): the
    checker records the name as data, and the class report counts each name over the class."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def expect(condition: bool, mistake: str, message: str) -> None:
    """`assert condition, message`, naming the mistake when it fails (`Mistake`)."""
    if not condition:
        raise Mistake(mistake, message)


def call_student(function: Callable, *args, what: str, forbid: tuple[Callable, ...] = (), reason: str = "",
                 may_change: Iterable[tuple] = (), **kwargs):
    """`function(*args, **kwargs)` as a hidden test runs a student's function.

    Warnings are silenced (nbgrader scores a test cell that writes to stderr 0), the library's
    references in `forbid` are off limits (`reason` says what to do instead), and an exception
    becomes an AssertionError that names the function and the input (`what`).

    `may_change` lists (argument, aspect, ...) for what the exercise lets the function change
    (aspects in `_side_effects.ASPECTS`, e.g. ``(model, "parameters", "grads")`` for a training
    step); every other change of any argument fails with a message that says what changed.
    """
    objects = protocol.stateful((args, kwargs))
    allowed = {id(entry[0]): tuple(entry[1:]) for entry in may_change}
    names = _side_effects.argument_names(function, args, kwargs, objects)
    before = _side_effects.snapshot(objects)
    name = getattr(function, "__name__", "your function")

    def judge(after: list) -> None:
        _side_effects.judge(name, objects, names, before, after, allowed, what)

    if isinstance(function, RemoteFunction):  # graded: the function runs in the sandboxed kernel
        return function.invoke(args, kwargs, what=what, forbid=forbid, reason=reason, judge=judge)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        error = None
        try:
            with forbid_calls(*forbid, reason=reason) if forbid else contextlib.nullcontext():
                result = function(*args, **kwargs)
        except AssertionError:
            raise
        except Exception as err:
            error = err
        judge(_side_effects.snapshot(objects))
        if error is not None:
            raise AssertionError(f"{name} raised {type(error).__name__} on {what}: {error}") from error
        return result
