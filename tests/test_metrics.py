"""Metrics against brute-force references and closed-form cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_utils.metrics import accuracy, aurra, calibration_error, response_rate_accuracy, topk_accuracy


def test_accuracy_and_topk():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    y = torch.tensor([1, 2, 1])
    assert accuracy(logits, y) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, y, 2) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- calibration error

def brute_force_rms(confidence, correct, bin_size, drop_last_bin=False):
    """Straight from the definition, one bin at a time in Python."""
    pairs = sorted(zip(confidence, correct), key=lambda p: p[0])  # sorted() is stable, like the library
    n = len(pairs)
    n_bins = max(1, n // bin_size)
    bins = [pairs[b * bin_size:(b + 1) * bin_size] for b in range(n_bins - 1)] + [pairs[(n_bins - 1) * bin_size:]]
    if drop_last_bin:
        bins = bins[:-1]
    total = 0.0
    for members in bins:
        conf = sum(c for c, _ in members) / len(members)
        acc = sum(k for _, k in members) / len(members)
        total += len(members) / n * (conf - acc) ** 2
    return math.sqrt(total)


def paper_calib_err(confidence, correct, beta=100):
    """The computation of `calib_err(p='2')` in hendrycks/natural-adv-examples, restated:
    bins of `beta` after sorting, the remainder joined to the last bin, and the last bin left
    out of the sum (which is still divided by the total count)."""
    order = np.argsort(confidence, kind="stable")
    confidence, correct = np.asarray(confidence)[order], np.asarray(correct)[order]
    starts = list(range(0, (len(confidence) // beta) * beta, beta))
    total = 0.0
    for start in starts[:-1]:
        conf, corr = confidence[start:start + beta], correct[start:start + beta]
        total += len(conf) / len(confidence) * (conf.mean() - corr.mean()) ** 2
    return math.sqrt(total)


@pytest.mark.parametrize("n, bin_size", [(1, 100), (99, 100), (250, 100), (1000, 100), (37, 5), (64, 16)])
def test_calibration_error_matches_brute_force(n, bin_size):
    rng = np.random.default_rng(n)
    confidence = rng.uniform(0, 1, n)
    correct = rng.uniform(0, 1, n) < confidence ** 2  # overconfident
    expected = brute_force_rms(confidence.tolist(), correct.tolist(), bin_size)
    assert calibration_error(confidence, correct, bin_size) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_drop_last_bin_reproduces_the_papers_code():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0, 1, 750)
    correct = rng.uniform(0, 1, 750) < confidence
    ours = calibration_error(confidence, correct, 100, drop_last_bin=True)
    assert ours == pytest.approx(paper_calib_err(confidence, correct.astype(float)), rel=1e-12)
    assert ours == pytest.approx(brute_force_rms(confidence, correct, 100, drop_last_bin=True), rel=1e-12)


def test_perfectly_calibrated_scores_zero():
    # five bins of 100 at confidence p, each with exactly 100 * p correct
    levels = [0.2, 0.4, 0.5, 0.8, 1.0]
    confidence = np.repeat(levels, 100)
    correct = np.concatenate([np.arange(100) < round(p * 100) for p in levels])
    assert calibration_error(confidence, correct) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n", [1, 150, 1000])
def test_always_sure_and_always_wrong_scores_one(n):
    assert calibration_error(np.ones(n), np.zeros(n, dtype=bool)) == pytest.approx(1.0)


def test_the_papers_skipped_bin_hides_the_most_confident_predictions():
    # 100 well calibrated predictions at confidence 0.5, then 199 sure-but-wrong ones: with
    # bins of 100 the sure ones form the last bin, which the paper's code leaves out
    confidence = np.concatenate([np.full(100, 0.5), np.ones(199)])
    correct = np.concatenate([np.arange(100) % 2 == 0, np.zeros(199, dtype=bool)])
    assert calibration_error(confidence, correct) == pytest.approx(math.sqrt(199 / 299))
    assert calibration_error(confidence, correct, drop_last_bin=True) == pytest.approx(0.0, abs=1e-12)


def test_calibration_error_takes_tensors_arrays_and_lists_and_returns_float():
    confidence, correct = [0.9, 0.8, 0.3, 0.6], [True, False, False, True]
    as_tensor = calibration_error(torch.tensor(confidence), torch.tensor(correct), bin_size=2)
    as_array = calibration_error(np.array(confidence), np.array(correct), bin_size=2)
    assert type(as_tensor) is float and as_tensor == pytest.approx(as_array)
    assert calibration_error(confidence, [1, 0, 0, 1], bin_size=2) == pytest.approx(as_array)


@pytest.mark.parametrize("confidence, correct, bin_size, match", [
    ([0.5, 1.2], [1, 0], 100, r"\[0, 1\]"),
    ([0.5, 0.6], [1], 100, "same length"),
    ([], [], 100, "empty"),
    ([0.5], [2], 100, "0/1"),
    ([0.5], [1], 0, "bin_size"),
    ([[0.5]], [[1]], 100, "1-D"),
])
def test_calibration_error_rejects_bad_input(confidence, correct, bin_size, match):
    with pytest.raises(ValueError, match=match):
        calibration_error(confidence, correct, bin_size)


# --------------------------------------------------------------------------- AURRA

def brute_force_aurra(confidence, correct):
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])  # stable on ties
    accuracies = [sum(correct[j] for j in order[:k]) / k for k in range(1, len(order) + 1)]
    return sum(accuracies) / len(accuracies)


def test_aurra_matches_brute_force():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0, 1, 200).round(2)  # with ties
    correct = rng.uniform(0, 1, 200) < confidence
    assert aurra(confidence, correct) == pytest.approx(brute_force_aurra(confidence.tolist(), correct.tolist()))


def test_aurra_closed_forms():
    n, k = 10, 4
    confidence = np.linspace(1, 0.1, n)
    ranked_right = np.arange(n) < k  # the k most confident are the right ones
    expected = (k + sum(k / j for j in range(k + 1, n + 1))) / n
    assert aurra(confidence, ranked_right) == pytest.approx(expected)
    assert aurra(confidence, np.ones(n)) == 1.0 and aurra(confidence, np.zeros(n)) == 0.0
    assert aurra(confidence, ranked_right) > aurra(confidence, ranked_right[::-1])


def test_response_rate_curve():
    rates, accuracies = response_rate_accuracy(torch.tensor([0.2, 0.9, 0.5]), torch.tensor([0, 1, 1]))
    np.testing.assert_allclose(rates, [1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(accuracies, [1, 1, 2 / 3])
