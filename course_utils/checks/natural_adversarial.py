"""Hidden checks of notebook 01 (natural adversarial examples, ImageNet-A).

`check_subset_predictions` and `check_rms_calibration_error` call the student's function on
small inputs built so that the usual mistakes give a different answer, and name the
mistake when the answer matches one of them. The student's calls run with warnings
silenced: a harmless warning (e.g. `torch.tensor(tensor)`) would reach stderr, and
nbgrader scores a test cell that writes to stderr 0.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from . import Mistake, call_student



# --------------------------------------------------------------------------- subset_predictions

def _subset_reference(logits: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
    """Row by row: the 1k index of the largest of the logits at `indices`."""
    out = []
    for row in logits.tolist():
        best = max(range(len(indices)), key=lambda c: (row[indices[c]], -c))
        out.append(indices[best])
    return torch.tensor(out, dtype=torch.long)


def _subset_case(n: int, n_classes: int, indices: Sequence[int], seed: int) -> torch.Tensor:
    """Random logits (n, n_classes), no ties, in which a class outside `indices` wins the
    argmax over all classes in every row: a 1000-way argmax then never gives the answer."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, n_classes, generator=g)
    outside = torch.tensor([k for k in range(n_classes) if k not in set(indices)])
    boost = outside[torch.randint(0, len(outside), (n,), generator=g)]
    logits[torch.arange(n), boost] += 10.0  # a class outside the subset wins the 1000-way argmax
    return logits


def _as_long_vector(result, n: int, what: str) -> torch.Tensor:
    assert isinstance(result, torch.Tensor), (
        f"subset_predictions should return a torch tensor of class indices, got {type(result).__name__} ({what})")
    assert result.shape == (n,), (
        f"expected one prediction per row, shape ({n},), got shape {tuple(result.shape)} ({what}). "
        "Take the argmax along dim=1 (over classes), not over the batch.")
    assert not result.dtype.is_floating_point and result.dtype != torch.bool, (
        f"expected integer class indices (torch.long), got dtype {result.dtype} ({what})")
    return result.long().cpu()


def _explain_subset(got: torch.Tensor, logits: torch.Tensor, indices: Sequence[int], expected: torch.Tensor,
                    what: str) -> str:
    index_tensor = torch.tensor(list(indices))
    columns = logits[:, index_tensor].argmax(dim=1)
    if torch.equal(got, logits.argmax(dim=1)):
        hint = ("These are the argmax over all the classes. Restrict the argmax to the subset's columns "
                "(logits_1k[:, indices_in_1k]) first.")
    elif torch.equal(got, columns):
        hint = ("These are column positions within the subset (0..K-1, like ImageFolder indices), not "
                "ImageNet-1k indices. Map them back: indices_in_1k[column].")
    else:
        hint = "Take the argmax over the subset's columns and map each column back to its 1k index."
    return (f"{what}: expected the 1k indices {expected[:6].tolist()}..., got {got[:6].tolist()}... "
            f"({int((got != expected).sum())} of {len(expected)} rows differ). {hint}")


def check_subset_predictions(subset_predictions: Callable) -> None:
    """Notebook 01: argmax over the subset's columns only, returned as 1k indices, for any
    subset (not only ImageNet-A's 200), one prediction per row, inputs untouched."""
    from ..imagenet_a import imagenet_a_indices

    cases = [
        ("ImageNet-A's 200 classes, 40 rows of 1000 logits", 40, 1000, tuple(imagenet_a_indices()), 1),
        ("a subset of 5 of 12 classes, given as a list", 9, 12, [11, 2, 7, 4, 9], 2),
        ("a single row", 1, 1000, tuple(imagenet_a_indices()), 3),
    ]
    for what, n, n_classes, indices, seed in cases:
        logits = _subset_case(n, n_classes, indices, seed)
        result = _as_long_vector(call_student(subset_predictions, logits, indices, what=what), n, what)
        expected = _subset_reference(logits, indices)
        assert torch.equal(result, expected), _explain_subset(result, logits, indices, expected, what)


# --------------------------------------------------------------------------- rms_calibration_error

def _rms_reference(confidence, correct, bin_size: int) -> float:
    """The documented definition, one bin at a time: sort by confidence, bins of `bin_size`
    consecutive predictions, the remainder joined to the last bin, bins weighted by size."""
    pairs = sorted(zip(confidence.tolist(), correct.tolist()), key=lambda p: p[0])
    n = len(pairs)
    n_bins = max(1, n // bin_size)
    bins = [pairs[b * bin_size:(b + 1) * bin_size] for b in range(n_bins - 1)] + [pairs[(n_bins - 1) * bin_size:]]
    total = 0.0
    for members in bins:
        gap = sum(c for c, _ in members) / len(members) - sum(k for _, k in members) / len(members)
        total += len(members) / n * gap ** 2
    return math.sqrt(total)


def _gaps(confidence, correct, bins) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    sizes = np.array([len(b) for b in bins], dtype=np.float64)
    gaps = np.array([conf[b].mean() - corr[b].mean() for b in bins])
    return sizes, gaps


def _typical_mistakes(confidence: torch.Tensor, correct: torch.Tensor, bin_size: int) -> dict[str, float]:
    """What the usual wrong versions return on this input, with the feedback for each."""
    n = len(confidence)
    conf, corr = confidence.double().numpy(), correct.double().numpy()
    order = np.argsort(conf, kind="stable")
    n_bins = max(1, n // bin_size)
    bins = [order[b * bin_size:(b + 1) * bin_size] for b in range(n_bins - 1)] + [order[(n_bins - 1) * bin_size:]]
    sizes, gaps = _gaps(conf, corr, bins)
    own_remainder = [order[s:s + bin_size] for s in range(0, n, bin_size)]
    r_sizes, r_gaps = _gaps(conf, corr, own_remainder)
    unsorted = [np.arange(n)[b * bin_size:(b + 1) * bin_size] for b in range(n_bins - 1)] + \
               [np.arange(n)[(n_bins - 1) * bin_size:]]
    u_sizes, u_gaps = _gaps(conf, corr, unsorted)
    hundred = [order[b * 100:(b + 1) * 100] for b in range(max(1, n // 100) - 1)] + [order[(max(1, n // 100) - 1) * 100:]]
    h_sizes, h_gaps = _gaps(conf, corr, hundred)
    width = np.minimum((conf * 15).astype(int), 14)  # 15 equal-width bins, as in the usual ECE
    w_bins = [np.flatnonzero(width == k) for k in range(15) if (width == k).any()]
    w_sizes, w_gaps = _gaps(conf, corr, w_bins)
    return {  # the most specific first: with a single bin several of these coincide
        "bin_size is ignored (bins of 100 whatever it is)": math.sqrt(np.sum(h_sizes / n * h_gaps ** 2)),
        "the bins are averaged without weighting them by their size (sum_b n_b / N * gap_b**2)":
            math.sqrt(np.mean(gaps ** 2)),
        "the last bin is left out (the paper's code does that; this exercise keeps every example)":
            math.sqrt(np.sum(sizes[:-1] / n * gaps[:-1] ** 2)),
        f"the remainder forms a bin of its own; here it joins the last bin, so there are N // bin_size = {n_bins} bins":
            math.sqrt(np.sum(r_sizes / n * r_gaps ** 2)),
        "the predictions are not sorted by confidence before they are cut into bins":
            math.sqrt(np.sum(u_sizes / n * u_gaps ** 2)),
        "the square root is missing (that is the mean squared gap)": float(np.sum(sizes / n * gaps ** 2)),
        "the gaps are averaged as absolute values (an ECE), not squared under a square root":
            float(np.sum(sizes / n * np.abs(gaps))),
        "the bins have equal widths in confidence; here each bin holds bin_size consecutive predictions":
            math.sqrt(np.sum(w_sizes / n * w_gaps ** 2)),
        "a single bin over everything, |mean confidence - accuracy|": abs(conf.mean() - corr.mean()),
    }


def _calibration_case(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct confidences in random order; the least confident are underconfident, the
    middle overconfident, the most confident (the remainder's bin) mostly wrong. Gaps of
    both signs keep the RMS, the ECE and |mean confidence - accuracy| apart."""
    g = torch.Generator().manual_seed(seed)
    sorted_conf = torch.sort(0.05 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)).values
    rank = torch.arange(n, dtype=torch.float64) / n
    p_right = torch.where(rank < 0.4, sorted_conf + 0.15, torch.where(rank < 0.8, sorted_conf - 0.45, 0.1 * sorted_conf))
    sorted_correct = torch.rand(n, generator=g, dtype=torch.float64) < p_right.clamp(0, 1)
    perm = torch.randperm(n, generator=g)
    return sorted_conf[perm].float(), sorted_correct[perm]


def check_rms_calibration_error(rms_calibration_error: Callable) -> None:
    """Notebook 01: the RMS calibration error with adaptive bins as documented (bins of
    `bin_size` after sorting, the remainder in the last bin, bins weighted by size), a float,
    inputs untouched, written without the library's `calibration_error`."""
    from .. import metrics

    cases = [  # (what, n, bin_size, seed): a remainder that changes the answer; few examples; small bins
        ("250 predictions, bin_size=100 (bins of 100 and 150)", 250, 100, 5),
        ("40 predictions, bin_size=100 (fewer than one bin)", 40, 100, 6),
        ("61 predictions, bin_size=8 (7 bins, the last of 13)", 61, 8, 7),
    ]
    for what, n, bin_size, seed in cases:
        confidence, correct = _calibration_case(n, seed)
        result = call_student(rms_calibration_error, confidence, correct, bin_size=bin_size, what=what,
                              forbid=(metrics.calibration_error,),
                              reason="write rms_calibration_error yourself, with tensor (or NumPy) operations, "
                                     "not with course_utils.metrics.calibration_error")
        assert isinstance(result, float), \
            f"expected a Python float, got {type(result).__name__} ({what}); use .item() or float(...)"
        expected = _rms_reference(confidence, correct, bin_size)
        if abs(result - expected) <= 1e-5 + 1e-4 * expected:
            continue
        diagnosis = [why for why, value in _typical_mistakes(confidence, correct, bin_size).items()
                     if abs(result - value) <= 1e-5 + 1e-4 * abs(value) and abs(value - expected) > 1e-4]
        raise Mistake(
            diagnosis[0] if diagnosis else "other",
            f"{what}: expected RMS calibration error {expected:.5f}, got {result:.5f}. "
            + (f"It looks like {diagnosis[0]}." if diagnosis else
               "Sort by confidence, cut into bins of bin_size (the last bin takes the remainder), and "
               "weight each bin's squared gap by its share of the examples before the square root."))

    # closed forms: always sure and always wrong is 1; matching confidence and accuracy is 0
    sure_wrong = call_student(rms_calibration_error, torch.ones(30), torch.zeros(30, dtype=torch.bool), bin_size=10,
                       what="30 wrong predictions with confidence 1")
    assert isinstance(sure_wrong, float) and abs(sure_wrong - 1.0) < 1e-6, \
        f"confidence 1 on 30 wrong predictions should give 1.0, got {sure_wrong}"
    halves = torch.full((20,), 0.5)
    right = torch.arange(20) % 2 == 0
    calibrated = call_student(rms_calibration_error, halves, right, bin_size=20,
                       what="20 predictions with confidence 0.5, half of them right")
    assert abs(calibrated - 0.0) < 1e-6, \
        f"confidence 0.5 with half of the predictions right is perfectly calibrated (0.0), got {calibrated}"


# --------------------------------------------------------------------------- adversarial_filter

def _filter_case(n: int, n_classes: int, wrong: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (n, n_classes) without ties, labels, and the indices of the `wrong` rows whose
    argmax is not the label (picked at random, so no order or class pattern gives them away)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, n_classes, generator=g)
    predicted = logits.argmax(dim=1)
    misses = torch.randperm(n, generator=g)[:wrong].sort().values
    labels = predicted.clone()
    shift = torch.randint(1, n_classes, (len(misses),), generator=g)
    labels[misses] = (predicted[misses] + shift) % n_classes
    return logits, labels, misses


def _explain_filter(got: torch.Tensor, expected: torch.Tensor, n: int, batch_size: int | None, what: str) -> Mistake:
    correct = torch.tensor(sorted(set(range(n)) - set(expected.tolist())), dtype=torch.long)
    if torch.equal(got, correct):
        mistake, hint = "keeps the images the model gets right", (
            "These are the images the model gets RIGHT. Keep those whose prediction differs from the label (!=).")
    elif batch_size and len(got) and sorted(set(got.tolist())) == sorted({i % batch_size for i in expected.tolist()}):
        mistake, hint = "batch-local indices", (
            "These look like positions within a batch. Add the batch's start (its offset in `images`) to "
                "each index.")
    elif len(got) < len(expected) and set(got.tolist()) < set(expected.tolist()):
        mistake, hint = "misses images (the last batch?)", (
            "Some of the images the model gets wrong are missing, e.g. those of the last, shorter batch: "
                "range(0, len(images), batch_size) covers every image.")
    else:
        mistake, hint = "other", (
            "Keep the index of every image whose argmax prediction (over dim=1, the classes) differs from its label.")
    shown = (f"{expected[:8].tolist()}{'...' if len(expected) > 8 else ''} ({len(expected)} images), got "
             f"{got[:8].tolist()}{'...' if len(got) > 8 else ''} ({len(got)})")
    return Mistake(mistake, f"{what}: expected the indices {shown}. {hint}")


def _check_filter_result(result, expected: torch.Tensor, n: int, batch_size: int | None, what: str) -> None:
    assert isinstance(result, torch.Tensor), (
        f"adversarial_filter should return a torch tensor of indices, got {type(result).__name__} ({what}); "
        "e.g. mask.nonzero().flatten()")
    assert result.dtype != torch.bool, (
        f"got a boolean mask of shape {tuple(result.shape)} ({what}); return the indices where it is True "
        "(mask.nonzero().flatten())")
    assert result.ndim == 1, (
        f"expected a 1-D tensor of indices, got shape {tuple(result.shape)} ({what}). nonzero() returns (K, 1): "
        "flatten it (or use torch.where(mask)[0]).")
    assert result.dtype == torch.long, (
        f"expected indices of dtype torch.long (int64), got {result.dtype} ({what})")
    got = result.cpu()
    if torch.equal(got, expected):
        return
    if sorted(set(got.tolist())) == expected.tolist():
        raise Mistake("unsorted or repeated indices", f"{what}: the right images, but not in ascending order or "
                      "with repeats; return each index once, ascending (as nonzero() gives them).")
    raise _explain_filter(got, expected, n, batch_size, what)


def _check_calls(calls: list, n: int, batch_size: int, what: str) -> None:
    assert calls, f"{what}: predict was never called; run it on the images, batch by batch"
    sizes = [size for size, _, _ in calls]
    assert max(sizes) <= batch_size, (
        f"{what}: predict was called on {max(sizes)} images at once, more than batch_size={batch_size}; "
        "call it on images[start:start + batch_size] for start in range(0, len(images), batch_size)")
    seen = sorted(i for _, _, indices in calls for i in indices)
    assert seen == list(range(n)), (
        f"{what}: predict should see every image exactly once, in batches of at most {batch_size}; "
        f"it saw {len(seen)} images ({len(set(seen))} different) out of {n}")
    assert not any(grad for _, grad, _ in calls), (
        f"{what}: predict ran with gradients enabled; filtering needs none (wrap the loop in torch.no_grad(), "
        "which also saves the memory of the graph)")


def check_adversarial_filter(adversarial_filter: Callable) -> None:
    """Notebook 01: the ascending torch.long indices of the images whose argmax prediction
    differs from the label, computed in batches of at most `batch_size` that cover every
    image once, without gradients, inputs untouched, and not with the library's filter."""
    from .. import digits_a
    from ..grading.recording import RecordingPredict

    forbid = (digits_a.adversarial_filter, digits_a.adversarial_filter_all, digits_a.predict_logits)
    reason = "write adversarial_filter yourself: a loop over the batches, the argmax, and nonzero"
    cases = [  # (what, n, classes, wrong, batch_size, label dtype, seed)
        ("23 images, 12 classes, batch_size=5 (a last batch of 3)", 23, 12, 9, 5, torch.long, 11),
        ("10 images of 13 classes, int32 labels, batch_size=64 (one batch)", 10, 13, 4, 64, torch.int32, 12),
        ("17 images, batch_size=4, every prediction right", 17, 10, 0, 4, torch.long, 13),
        ("9 images, batch_size=1, every prediction wrong", 9, 10, 9, 1, torch.long, 14),
    ]
    for what, n, n_classes, wrong, batch_size, dtype, seed in cases:
        logits, labels, expected = _filter_case(n, n_classes, wrong, seed)
        labels = labels.to(dtype)
        images = RecordingPredict.images(n, seed)
        predict = RecordingPredict(logits)
        result = call_student(adversarial_filter, predict, images, labels, batch_size=batch_size, what=what,
                              forbid=forbid, reason=reason, may_change=[(predict, "recorded")])
        _check_filter_result(result, expected, n, batch_size, what)
        _check_calls(predict.calls, n, batch_size, what)

    # the default batch size is the documented 256: 600 images take three calls
    what = "600 images with the default batch_size"
    logits, labels, expected = _filter_case(600, 10, 57, 15)
    predict = RecordingPredict(logits)
    result = call_student(adversarial_filter, predict, RecordingPredict.images(600, 15), labels, what=what,
                          forbid=forbid, reason=reason, may_change=[(predict, "recorded")])
    _check_filter_result(result, expected, 600, 256, what)
    _check_calls(predict.calls, 600, 256, what)
    assert len(predict.calls) == 3, (
        f"{what}: expected 3 calls of predict (256, 256 and 88 images: batch_size=256 by default), "
        f"got {len(predict.calls)} of {[size for size, _, _ in predict.calls]}")
