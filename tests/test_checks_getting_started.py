"""Notebook 00's hidden checks accept the solution and reject the usual mistakes."""
import pytest
import torch

from course_utils.checks import forbid_calls
from course_utils.checks.getting_started import check_batch_accuracy
from course_utils.metrics import accuracy


def solution(logits, labels):
    return (logits.argmax(dim=1) == labels).float().mean().item()


WRONG = {
    "count instead of fraction": lambda l, y: float((l.argmax(1) == y).sum()),
    "max value instead of argmax": lambda l, y: (l.max(1).values == y).float().mean().item(),
    "argmax over the batch": lambda l, y: (l.argmax(0)[: len(y)] == y).float().mean().item() if l.shape[1] >= len(y)
    else (l.argmax(1) == y).float().mean().item() * 0.5,
    "tensor instead of float": lambda l, y: (l.argmax(1) == y).float().mean(),
    "calls the library": lambda l, y: accuracy(l, y),
    "modifies the input": lambda l, y: (l.sub_(l.max(1, keepdim=True).values).argmax(1) == y).float().mean().item(),
    # tampers with the check's fixture: rewrites the logits so that every row is right, then says so
    "tamper: makes every row right": lambda l, y: (l.zero_().scatter_(1, y[:, None], 1.0), 1.0)[1],
}


def test_solution_passes():
    check_batch_accuracy(solution)


@pytest.mark.parametrize("mistake", WRONG)
def test_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_batch_accuracy(WRONG[mistake])


def test_forbid_calls_catches_aliases_and_wrappers():
    alias = accuracy

    def wrapper(l, y):
        return alias(l, y)

    with pytest.raises(AssertionError, match="course_utils.metrics.accuracy"):
        with forbid_calls(accuracy, reason="no"):
            wrapper(torch.eye(2), torch.tensor([0, 1]))
    with forbid_calls(accuracy, reason="no"):
        solution(torch.eye(2), torch.tensor([0, 1]))


def test_the_checker_records_the_name_of_the_mistake_a_check_caught():
    """A `checks.Mistake` reaches the verdict as data (the class report counts the names), and a plain
    failed assertion has no name."""
    from course_utils.grading.checker import CheckServer

    counted = lambda logits, labels: float((logits.argmax(1) == labels).sum())  # noqa: E731
    passed, message, mistake = CheckServer._run_check("getting_started.check_batch_accuracy", counted)
    assert not passed and mistake == "a count, not a fraction" and "count of correct rows" in message
    returns_int = lambda logits, labels: int((logits.argmax(1) == labels).sum())  # noqa: E731
    assert CheckServer._run_check("getting_started.check_batch_accuracy", returns_int)[2] == "not a Python float"
    assert CheckServer._run_check("getting_started.check_batch_accuracy", solution) == (True, "", None)
