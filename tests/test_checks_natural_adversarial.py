"""Notebook 01's hidden checks accept the solution and reject the usual mistakes."""
import math

import numpy as np
import pytest
import torch

from course_utils.checks.natural_adversarial import (check_adversarial_filter, check_rms_calibration_error,
                                                     check_subset_predictions)
from course_utils.metrics import calibration_error


# --------------------------------------------------------------------------- subset_predictions

def subset_solution(logits_1k, indices_in_1k):
    indices = torch.as_tensor(indices_in_1k, device=logits_1k.device)
    return indices[logits_1k[:, indices].argmax(dim=1)]


def _in_place(logits, indices):
    logits[:, [k for k in range(logits.shape[1]) if k not in set(indices)]] = -math.inf
    return logits.argmax(dim=1)


def _hard_coded_200(logits, indices):
    from course_utils.imagenet_a import imagenet_a_indices

    return subset_solution(logits, imagenet_a_indices())


WRONG_SUBSET = {
    "1000-way argmax": lambda l, i: l.argmax(dim=1),
    "column (ImageFolder) indices instead of 1k indices": lambda l, i: l[:, list(i)].argmax(dim=1),
    "argmax over the batch": lambda l, i: torch.as_tensor(i)[l[:, list(i)].argmax(dim=0)],
    "numpy instead of a tensor": lambda l, i: subset_solution(l, i).numpy(),
    "list instead of a tensor": lambda l, i: subset_solution(l, i).tolist(),
    "float indices": lambda l, i: subset_solution(l, i).float(),
    "max value instead of its index": lambda l, i: l[:, list(i)].max(dim=1).values,
    "masks the input in place": _in_place,
    "ignores its indices argument (hard-coded ImageNet-A)": _hard_coded_200,
    "sorts the indices in place": lambda l, i: (i.sort() if isinstance(i, list) else None, subset_solution(l, i))[1],
    # tampers with the fixture: pushes the classes outside the subset down, so a 1000-way argmax is right
    "tamper: lowers the logits outside the subset": lambda l, i: (
        l.sub_(1e6 * (1 - torch.zeros(l.shape[1]).index_fill_(0, torch.as_tensor(list(i)), 1.0))), l.argmax(1))[1],
}


def test_subset_solution_passes():
    check_subset_predictions(subset_solution)


def test_subset_solution_variants_pass():
    """Other correct ways to write it: a mask, a Python loop, torch.tensor of a tensor (warns)."""
    def masked(logits, indices):
        mask = torch.full_like(logits, -math.inf)
        mask[:, list(indices)] = 0
        return (logits + mask).argmax(dim=1)

    def looped(logits, indices):
        return torch.tensor([indices[int(row[list(indices)].argmax())] for row in logits])

    def rewraps(logits, indices):
        as_tensor = torch.tensor(torch.tensor(list(indices)))  # UserWarning, silenced by the check
        return as_tensor[logits[:, as_tensor].argmax(1)]

    for variant in (masked, looped, rewraps):
        check_subset_predictions(variant)


@pytest.mark.parametrize("mistake", WRONG_SUBSET)
def test_subset_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_subset_predictions(WRONG_SUBSET[mistake])


@pytest.mark.parametrize("mistake, hint", [("1000-way argmax", "argmax over all the classes"),
                                           ("column (ImageFolder) indices instead of 1k indices", "column positions")])
def test_subset_feedback_names_the_mistake(mistake, hint):
    with pytest.raises(AssertionError, match=hint):
        check_subset_predictions(WRONG_SUBSET[mistake])


# --------------------------------------------------------------------------- rms_calibration_error

def rms_solution(confidence, correct, bin_size=100):
    order = torch.argsort(confidence, stable=True)
    conf, corr = confidence[order].double(), correct[order].double()
    n = len(conf)
    n_bins = max(1, n // bin_size)
    total = 0.0
    for b in range(n_bins):
        stop = (b + 1) * bin_size if b < n_bins - 1 else n
        c, k = conf[b * bin_size:stop], corr[b * bin_size:stop]
        total += len(c) / n * (c.mean() - k.mean()) ** 2
    return math.sqrt(float(total))


def _bins(confidence, bin_size, *, remainder_alone=False, sort=True):
    order = torch.argsort(confidence, stable=True) if sort else torch.arange(len(confidence))
    n = len(order)
    if remainder_alone:
        return [order[s:s + bin_size] for s in range(0, n, bin_size)]
    n_bins = max(1, n // bin_size)
    return [order[b * bin_size:((b + 1) * bin_size if b < n_bins - 1 else n)] for b in range(n_bins)]


def _gaps(confidence, correct, bins):
    return [(len(b), float(confidence[b].double().mean() - correct[b].double().mean())) for b in bins]


def unweighted(confidence, correct, bin_size=100):
    gaps = _gaps(confidence, correct, _bins(confidence, bin_size))
    return math.sqrt(sum(g ** 2 for _, g in gaps) / len(gaps))


def drops_last_bin(confidence, correct, bin_size=100):
    return math.sqrt(sum(n_b / len(confidence) * g ** 2
                         for n_b, g in _gaps(confidence, correct, _bins(confidence, bin_size))[:-1]))


def remainder_alone(confidence, correct, bin_size=100):
    return math.sqrt(sum(n_b / len(confidence) * g ** 2
                         for n_b, g in _gaps(confidence, correct, _bins(confidence, bin_size, remainder_alone=True))))


def unsorted(confidence, correct, bin_size=100):
    return math.sqrt(sum(n_b / len(confidence) * g ** 2
                         for n_b, g in _gaps(confidence, correct, _bins(confidence, bin_size, sort=False))))


def no_sqrt(confidence, correct, bin_size=100):
    return rms_solution(confidence, correct, bin_size) ** 2


def absolute_gaps(confidence, correct, bin_size=100):
    return sum(n_b / len(confidence) * abs(g) for n_b, g in _gaps(confidence, correct, _bins(confidence, bin_size)))


def ignores_bin_size(confidence, correct, bin_size=100):
    return rms_solution(confidence, correct, 100)


def equal_width_bins(confidence, correct, bin_size=100):
    which = torch.clamp((confidence * 15).long(), max=14)
    bins = [torch.nonzero(which == k).flatten() for k in range(15) if (which == k).any()]
    return math.sqrt(sum(n_b / len(confidence) * g ** 2 for n_b, g in _gaps(confidence, correct, bins)))


def zero_below_two_bins(confidence, correct, bin_size=100):  # what the paper's code returns for N < 2 * bin_size
    return 0.0 if len(confidence) < 2 * bin_size else drops_last_bin(confidence, correct, bin_size)


def returns_tensor(confidence, correct, bin_size=100):
    return torch.tensor(rms_solution(confidence, correct, bin_size))


def calls_the_library(confidence, correct, bin_size=100):
    return calibration_error(confidence, correct, bin_size)


def sorts_in_place(confidence, correct, bin_size=100):
    order = torch.argsort(confidence, stable=True)
    confidence.copy_(confidence[order])
    correct.copy_(correct[order])
    return rms_solution(confidence, correct, bin_size)


def numpy_sort_in_place(confidence, correct, bin_size=100):
    result = rms_solution(confidence, correct, bin_size)
    confidence.numpy().sort()
    return result


def single_bin(confidence, correct, bin_size=100):
    return abs(float(confidence.double().mean() - correct.double().mean()))


def tamper_calibrates(confidence, correct, bin_size=100):
    """Tampers with the fixture: sets every confidence to the accuracy, which makes the error 0."""
    confidence.fill_(float(correct.float().mean()))
    return 0.0


WRONG_RMS = {f.__name__: f for f in [
    unweighted, drops_last_bin, remainder_alone, unsorted, no_sqrt, absolute_gaps, ignores_bin_size,
    equal_width_bins, zero_below_two_bins, returns_tensor, calls_the_library, sorts_in_place,
    numpy_sort_in_place, single_bin, tamper_calibrates,
]}


def test_rms_solution_passes_and_matches_the_library():
    check_rms_calibration_error(rms_solution)
    g = torch.Generator().manual_seed(0)
    conf, corr = torch.rand(333, generator=g), torch.rand(333, generator=g) < 0.5
    assert rms_solution(conf, corr, 100) == pytest.approx(calibration_error(conf, corr, 100), abs=1e-9)


def test_rms_numpy_solution_passes():
    def with_numpy(confidence, correct, bin_size=100):
        conf, corr = confidence.numpy(), correct.numpy()
        order = np.argsort(conf, kind="stable")
        conf, corr = conf[order].astype(np.float64), corr[order].astype(np.float64)
        n = len(conf)
        n_bins = max(1, n // bin_size)
        splits = np.split(np.arange(n), [b * bin_size for b in range(1, n_bins)])
        return float(np.sqrt(sum(len(s) / n * (conf[s].mean() - corr[s].mean()) ** 2 for s in splits)))

    check_rms_calibration_error(with_numpy)


@pytest.mark.parametrize("mistake", WRONG_RMS)
def test_rms_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_rms_calibration_error(WRONG_RMS[mistake])


@pytest.mark.parametrize("mistake, hint", [
    ("unweighted", "without weighting"), ("drops_last_bin", "last bin is left out"),
    ("remainder_alone", "remainder forms a bin of its own"), ("unsorted", "not sorted"),
    ("no_sqrt", "square root is missing"), ("ignores_bin_size", "bin_size is ignored"),
    ("returns_tensor", "Python float"), ("calls_the_library", "calibration_error"),
    ("sorts_in_place", "in place"), ("tamper_calibrates", "in place"),
])
def test_rms_feedback_names_the_mistake(mistake, hint):
    with pytest.raises(AssertionError, match=hint):
        check_rms_calibration_error(WRONG_RMS[mistake])


def test_the_check_inputs_separate_every_mistake_from_the_answer():
    """The 250-example case alone already tells the weighting and remainder mistakes apart."""
    from course_utils.checks.natural_adversarial import _calibration_case, _rms_reference

    conf, corr = _calibration_case(250, 5)
    expected = _rms_reference(conf, corr, 100)
    for f in (unweighted, drops_last_bin, remainder_alone, unsorted, no_sqrt, absolute_gaps, equal_width_bins):
        assert abs(f(conf, corr, 100) - expected) > 0.01, f.__name__


def test_checks_do_not_warn(recwarn):
    check_subset_predictions(subset_solution)
    check_rms_calibration_error(rms_solution)
    check_adversarial_filter(filter_solution)
    assert not recwarn.list


# --------------------------------------------------------------------------- adversarial_filter

def filter_solution(predict, images, labels, batch_size=256):
    kept = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = predict(images[start:start + batch_size])
            wrong = logits.argmax(dim=1).cpu() != labels[start:start + batch_size].cpu()
            kept.append(wrong.nonzero().flatten() + start)
    return torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)


def filter_variants():
    """Other correct ways: all predictions first then one comparison; torch.where; a Python loop."""
    def all_at_once(predict, images, labels, batch_size=256):
        with torch.no_grad():
            predicted = torch.cat([predict(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])
        return torch.where(predicted != labels.long())[0]

    @torch.no_grad()
    def python_loop(predict, images, labels, batch_size=256):
        out = []
        for start in range(0, len(images), batch_size):
            for k, p in enumerate(predict(images[start:start + batch_size]).argmax(1).tolist()):
                if p != int(labels[start + k]):
                    out.append(start + k)
        return torch.tensor(out, dtype=torch.long)

    return [all_at_once, python_loop]


def _batches(predict, images, batch_size):
    with torch.no_grad():
        return [(i, predict(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]


def keeps_correct(predict, images, labels, batch_size=256):
    return torch.cat([(l.argmax(1) == labels[i:i + len(l)]).nonzero().flatten() + i
                      for i, l in _batches(predict, images, batch_size)])


def returns_mask(predict, images, labels, batch_size=256):
    return torch.cat([l.argmax(1) != labels[i:i + len(l)] for i, l in _batches(predict, images, batch_size)])


def returns_images(predict, images, labels, batch_size=256):
    return images[filter_solution(predict, images, labels, batch_size)]


def argmax_dim0(predict, images, labels, batch_size=256):
    return torch.cat([(l.argmax(0) != labels[i:i + len(l)][:l.shape[1]]).nonzero().flatten() + i
                      for i, l in _batches(predict, images, batch_size)])


def ignores_batch_size(predict, images, labels, batch_size=256):
    with torch.no_grad():
        return (predict(images).argmax(1) != labels).nonzero().flatten()


def drops_last_batch(predict, images, labels, batch_size=256):
    kept = [torch.zeros(0, dtype=torch.long)]
    with torch.no_grad():
        for start in range(0, len(images) - batch_size + 1, batch_size):
            l = predict(images[start:start + batch_size])
            kept.append((l.argmax(1) != labels[start:start + batch_size]).nonzero().flatten() + start)
    return torch.cat(kept)


def batch_local(predict, images, labels, batch_size=256):
    return torch.cat([(l.argmax(1) != labels[i:i + len(l)]).nonzero().flatten()
                      for i, l in _batches(predict, images, batch_size)])


def nonzero_2d(predict, images, labels, batch_size=256):
    return torch.cat([(l.argmax(1) != labels[i:i + len(l)]).nonzero() + i for i, l in _batches(predict, images, batch_size)])


def returns_list(predict, images, labels, batch_size=256):
    return filter_solution(predict, images, labels, batch_size).tolist()


def returns_numpy(predict, images, labels, batch_size=256):
    return filter_solution(predict, images, labels, batch_size).numpy()


def returns_int32(predict, images, labels, batch_size=256):
    return filter_solution(predict, images, labels, batch_size).int()


def grouped_by_label(predict, images, labels, batch_size=256):  # unsorted: collected class by class
    kept = filter_solution(predict, images, labels, batch_size)
    return torch.cat([kept[labels[kept] == c] for c in labels.unique()]) if len(kept) else kept


def duplicated(predict, images, labels, batch_size=256):
    kept = filter_solution(predict, images, labels, batch_size)
    return torch.cat([kept, kept[:1]])


def gradients_on(predict, images, labels, batch_size=256):
    kept = []
    for start in range(0, len(images), batch_size):
        l = predict(images[start:start + batch_size])
        kept.append((l.argmax(1) != labels[start:start + batch_size]).nonzero().flatten() + start)
    return torch.cat(kept)


def normalizes_in_place(predict, images, labels, batch_size=256):
    images.mul_(0.5).add_(0.25)
    return filter_solution(predict, images, labels, batch_size)


def calls_the_library_filter(predict, images, labels, batch_size=256):
    from course_utils.digits_a import adversarial_filter

    return adversarial_filter(predict, images, labels, batch_size=batch_size)


def no_default_batch_size(predict, images, labels, batch_size=512):
    return filter_solution(predict, images, labels, batch_size)


def crashes_when_all_right(predict, images, labels, batch_size=256):
    """Keeps only non-empty batches' indices: torch.cat([]) raises when the model gets every image right
    (the exercise says: then return an empty tensor)."""
    kept = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            wrong = (predict(images[start:start + batch_size]).argmax(1) != labels[start:start + batch_size])
            if wrong.any():
                kept.append(wrong.nonzero().flatten() + start)
    return torch.cat(kept)


def stacks_scalars(predict, images, labels, batch_size=256):
    """One scalar tensor per wrong image, stacked: torch.stack([]) raises when every image is right."""
    found = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            wrong = predict(images[start:start + batch_size]).argmax(1) != labels[start:start + batch_size]
            found += [torch.tensor(start + i) for i in wrong.nonzero().flatten().tolist()]
    return torch.stack(found)


def tamper_with_predict(predict, images, labels, batch_size=256):
    """Tampers with the check's fixture: rewrites predict's table so that every prediction is the label."""
    predict.table.zero_()
    for start in range(0, len(images), batch_size):
        predict(images[start:start + batch_size])
    predict.table[torch.arange(len(labels)) % len(predict.table), labels.long()] = 1.0
    return torch.zeros(0, dtype=torch.long)


WRONG_FILTER = {f.__name__: f for f in [
    keeps_correct, returns_mask, returns_images, argmax_dim0, ignores_batch_size, drops_last_batch, batch_local,
    nonzero_2d, returns_list, returns_numpy, returns_int32, grouped_by_label, duplicated, gradients_on,
    normalizes_in_place, calls_the_library_filter, no_default_batch_size, crashes_when_all_right, stacks_scalars,
    tamper_with_predict]}


def test_filter_solution_passes():
    check_adversarial_filter(filter_solution)


@pytest.mark.parametrize("variant", filter_variants(), ids=lambda f: f.__name__)
def test_filter_other_correct_answers_pass(variant):
    check_adversarial_filter(variant)


def test_filter_solution_agrees_with_the_library():
    from course_utils.digits_a import adversarial_filter
    from course_utils.grading.recording import RecordingPredict

    logits, labels = torch.randn(50, 7, generator=torch.Generator().manual_seed(3)), torch.randint(0, 7, (50,))
    images = RecordingPredict.images(50)
    assert torch.equal(filter_solution(RecordingPredict(logits), images, labels, 8),
                       adversarial_filter(RecordingPredict(logits), images, labels, batch_size=8))


@pytest.mark.parametrize("mistake", sorted(WRONG_FILTER))
def test_filter_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_adversarial_filter(WRONG_FILTER[mistake])


@pytest.mark.parametrize("mistake, hint", [
    ("keeps_correct", "RIGHT"), ("returns_mask", "boolean mask"), ("argmax_dim0", "dim=1|shape|size"),
    ("ignores_batch_size", "at once"), ("drops_last_batch", "last, shorter batch"),
    ("batch_local", "offset"), ("nonzero_2d", "flatten"), ("returns_list", "torch tensor"),
    ("returns_int32", "torch.long"), ("grouped_by_label", "ascending"), ("duplicated", "ascending"),
    ("gradients_on", "gradients"), ("normalizes_in_place", "in place"),
    ("calls_the_library_filter", "adversarial_filter yourself"), ("no_default_batch_size", "default"),
    ("crashes_when_all_right", "every prediction right"), ("stacks_scalars", "every prediction right"),
    ("tamper_with_predict", "changed the buffers of predict"),
])
def test_filter_feedback_names_the_mistake(mistake, hint):
    with pytest.raises(AssertionError, match=hint):
        check_adversarial_filter(WRONG_FILTER[mistake])
