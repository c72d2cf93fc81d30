"""Hidden checks of notebook 00 (getting started)."""
from __future__ import annotations

from typing import Callable

import torch

from . import call_student, expect


def _fraction_correct(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return sum(int(row.argmax()) == int(y) for row, y in zip(logits, labels)) / len(labels)


def check_batch_accuracy(batch_accuracy: Callable) -> None:
    """Notebook 00: a float fraction, argmax over classes, inputs untouched, own code."""
    from .. import metrics

    g = torch.Generator().manual_seed(4)
    logits = torch.randn(50, 7, generator=g)
    labels = torch.randint(0, 7, (50,), generator=g)
    result = call_student(batch_accuracy, logits, labels, what="50 random rows of 7 classes",
                          forbid=(metrics.accuracy, metrics.topk_accuracy),
                          reason="write batch_accuracy with tensor operations, not with the library's accuracy")
    expected = _fraction_correct(logits, labels)
    expect(isinstance(result, float), "not a Python float", f"expected a Python float, got {type(result).__name__}")
    counted = abs(result - expected * 50) < 1e-6
    expect(abs(result - expected) < 1e-6, "a count, not a fraction" if counted else "not the argmax over classes",
           f"on 50 random rows of 7 classes expected accuracy {expected:.4f}, got {result:.4f}. "
           + ("It looks like a count of correct rows instead of a fraction." if counted else
              "Is the prediction the argmax over classes (dim=1)?"))
    # a single row, and all rows right
    assert abs(batch_accuracy(torch.tensor([[0.0, 3.0]]), torch.tensor([1])) - 1.0) < 1e-6, \
        "one correct row should give accuracy 1.0"
    wide = torch.zeros(3, 10)
    wide[torch.arange(3), torch.tensor([9, 8, 7])] = 1.0
    got = batch_accuracy(wide, torch.tensor([9, 8, 0]))
    assert abs(got - 2 / 3) < 1e-6, f"predictions 9, 8, 7 for labels 9, 8, 0 should give 2/3, got {got}"
