"""Metrics on model outputs. Each has a brute-force reference test in tests/test_metrics.py."""
from __future__ import annotations

import numpy as np
import torch


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of `logits` (N, classes) whose argmax equals the label `y` (N,)."""
    return topk_accuracy(logits, y, 1)


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the `k` highest scores (ties broken by index)."""
    if logits.ndim != 2 or y.ndim != 1 or len(logits) != len(y):
        raise ValueError(f"expected logits (N, classes) and labels (N,), got {tuple(logits.shape)} and {tuple(y.shape)}")
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k must be between 1 and the number of classes ({logits.shape[1]}), got {k}")
    if len(y) == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    top = logits.topk(k, dim=1).indices
    return (top == y.to(top.device)[:, None]).any(dim=1).float().mean().item()


def _as_numpy_1d(values, name: str):
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one value per example (1-D), got shape {array.shape}")
    return array


def _confidence_and_correct(confidence, correct):
    confidence = _as_numpy_1d(confidence, "confidence").astype(np.float64)
    correct = _as_numpy_1d(correct, "correct")
    if len(confidence) != len(correct):
        raise ValueError(f"confidence and correct must have the same length, got {len(confidence)} and {len(correct)}")
    if len(confidence) == 0:
        raise ValueError("calibration of an empty set of predictions is undefined")
    if not np.all((confidence >= 0) & (confidence <= 1)):
        raise ValueError("confidence must be probabilities in [0, 1] (e.g. softmax(logits).max(dim=1).values), "
                         f"got values from {confidence.min():.3g} to {confidence.max():.3g}")
    if not np.all((correct == 0) | (correct == 1)):
        raise ValueError("correct must be booleans or 0/1 (prediction == label)")
    return confidence, correct.astype(np.float64)


def calibration_error(confidence, correct, bin_size: int = 100, *, drop_last_bin: bool = False) -> float:
    """RMS calibration error with adaptive bins, as reported for ImageNet-A (Hendrycks et al.,
    "Natural Adversarial Examples", CVPR 2021; Nguyen & O'Connor 2015 for the adaptive bins).

    Predictions are sorted by confidence (stable sort, so ties keep their order) and cut
    into consecutive bins of `bin_size`; the last bin also takes the remainder, so there are
    max(1, N // bin_size) bins. With `n_b` examples, mean confidence `conf_b` and accuracy
    `acc_b` in bin b:

        error = sqrt( sum_b  n_b / N * (conf_b - acc_b) ** 2 )

    A perfectly calibrated model scores 0; one that is always sure (confidence 1) and
    always wrong scores 1.

    The paper's code (`calib_err` in hendrycks/natural-adv-examples) loops over all bins
    but the last, while still dividing by N: it leaves out the most confident 100-199
    examples, which is exactly where an overconfident model fails, and returns 0 for fewer
    than 200 examples. This function includes every example by default;
    `drop_last_bin=True` reproduces the paper's code exactly, for comparing with its numbers.

    `confidence`: the probability of the predicted class, (N,); `correct`: prediction ==
    label, (N,); torch tensors, NumPy arrays or lists. Returns a float.
    """
    if isinstance(bin_size, bool) or not isinstance(bin_size, (int, np.integer)) or bin_size < 1:
        raise ValueError(f"bin_size must be a positive integer, got {bin_size!r}")
    confidence, correct = _confidence_and_correct(confidence, correct)
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    n = len(confidence)
    n_bins = max(1, n // bin_size)
    bin_of = np.minimum(np.arange(n) // bin_size, n_bins - 1)
    counts = np.bincount(bin_of, minlength=n_bins)
    gap = (np.bincount(bin_of, confidence, n_bins) - np.bincount(bin_of, correct, n_bins)) / counts
    weighted = counts / n * gap ** 2
    if drop_last_bin:
        weighted = weighted[:-1]
    return float(np.sqrt(weighted.sum()))


def response_rate_accuracy(confidence, correct):
    """The response-rate accuracy curve: answer only the fraction r of examples the model is
    most confident about, and measure the accuracy on those. Returns (rates, accuracies),
    NumPy arrays of length N, rates k/N for k = 1..N. Ties in confidence keep their order."""
    confidence, correct = _confidence_and_correct(confidence, correct)
    order = np.argsort(-confidence, kind="stable")
    answered = np.arange(1, len(order) + 1)
    return answered / len(order), np.cumsum(correct[order]) / answered


def aurra(confidence, correct) -> float:
    """Area under the response-rate accuracy curve (Hendrycks et al. 2021): the mean of
    `response_rate_accuracy`'s accuracies. 1 when every answer is right; for a given
    accuracy, higher when the model is more confident on the examples it gets right."""
    return float(response_rate_accuracy(confidence, correct)[1].mean())
