"""The substance of the notebooks' hidden tests.

A hidden test cell only calls `check_<exercise>(student_function)`. nbgrader shows hidden
test cells in the graded notebook and the feedback; keeping the expected values and the
catalogue of typical mistakes here keeps them out of what students get back. Each check
raises AssertionError with a message that says what was expected and what came back.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

import torch


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


def _fraction_correct(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return sum(int(row.argmax()) == int(y) for row, y in zip(logits, labels)) / len(labels)


def check_batch_accuracy(batch_accuracy: Callable) -> None:
    """Notebook 00: a float fraction, argmax over classes, inputs untouched, own code."""
    from . import metrics

    g = torch.Generator().manual_seed(4)
    logits = torch.randn(50, 7, generator=g)
    labels = torch.randint(0, 7, (50,), generator=g)
    logits_before, labels_before = logits.clone(), labels.clone()
    with forbid_calls(metrics.accuracy, metrics.topk_accuracy,
                      reason="write batch_accuracy with tensor operations, not with the library's accuracy"):
        result = batch_accuracy(logits, labels)
    expected = _fraction_correct(logits, labels)
    assert isinstance(result, float), f"expected a Python float, got {type(result).__name__}"
    assert torch.equal(logits, logits_before) and torch.equal(labels, labels_before), \
        "batch_accuracy changed its inputs in place; compute on copies or with out-of-place operations"
    assert abs(result - expected) < 1e-6, (
        f"on 50 random rows of 7 classes expected accuracy {expected:.4f}, got {result:.4f}. "
        + ("It looks like a count of correct rows instead of a fraction." if abs(result - expected * 50) < 1e-6 else
           "Is the prediction the argmax over classes (dim=1)?"))
    # a single row, and all rows right
    assert abs(batch_accuracy(torch.tensor([[0.0, 3.0]]), torch.tensor([1])) - 1.0) < 1e-6, \
        "one correct row should give accuracy 1.0"
    wide = torch.zeros(3, 10)
    wide[torch.arange(3), torch.tensor([9, 8, 7])] = 1.0
    got = batch_accuracy(wide, torch.tensor([9, 8, 0]))
    assert abs(got - 2 / 3) < 1e-6, f"predictions 9, 8, 7 for labels 9, 8, 0 should give 2/3, got {got}"
