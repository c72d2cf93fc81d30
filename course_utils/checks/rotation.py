"""Hidden checks of notebook 04 (rotation pretext task)."""
from __future__ import annotations

from typing import Callable

import torch

from . import Mistake, call_student, expect

DEGREES = ("0", "90", "180", "270")


def _call(rotate_batch: Callable, x: torch.Tensor):
    from .. import augment

    out = call_student(rotate_batch, x, what=f"a batch of shape {tuple(x.shape)}",
                       forbid=(augment.rotate_batch, augment.rotation_batch_transform),
                       reason="write rotate_batch yourself with torch.rot90, not with the library's rotate_batch")
    assert isinstance(out, (tuple, list)) and len(out) == 2, \
        f"rotate_batch should return a pair (x_rot, labels), got {type(out).__name__}" + \
        (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
    x_rot, labels = out
    assert isinstance(x_rot, torch.Tensor) and isinstance(labels, torch.Tensor), \
        f"x_rot and labels should be tensors, got {type(x_rot).__name__} and {type(labels).__name__}"
    n = len(x)
    assert x_rot.shape == (4 * n, *x.shape[1:]), \
        f"for {n} images of shape {tuple(x.shape[1:])} expected x_rot of shape {(4 * n, *x.shape[1:])} " \
        f"(all four rotations of every image), got {tuple(x_rot.shape)}"
    assert labels.shape == (4 * n,), f"expected {4 * n} labels, one per rotated image, got shape {tuple(labels.shape)}"
    assert labels.dtype == torch.long, \
        f"labels should be integers of dtype torch.long (what cross_entropy takes), got {labels.dtype}"
    assert x_rot.dtype == x.dtype, f"x_rot should keep the images' dtype {x.dtype}, got {x_rot.dtype}"
    return x_rot, labels


def _source(x: torch.Tensor, image: torch.Tensor) -> tuple[int, int] | None:
    """(index, k) such that image == rot90(x[index], k) exactly, or None."""
    for k in range(4):
        rotated = torch.rot90(x, k, dims=(2, 3))
        hits = (rotated == image).flatten(1).all(1).nonzero().flatten()
        if len(hits):
            return int(hits[0]), k
    return None


def _check_alignment(x: torch.Tensor, x_rot: torch.Tensor, labels: torch.Tensor) -> None:
    n = len(x)
    found = []
    for i in range(len(x_rot)):
        source = _source(x, x_rot[i])
        assert source is not None, (
            f"x_rot[{i}] is not an exact rotation of any input image. Rotate with torch.rot90(image, k, "
            f"dims=(-2, -1)): it moves pixels without interpolation; a flip or a transpose is not a rotation")
        found.append(source)
    ks = torch.tensor([k for _, k in found])
    if not torch.equal(labels.cpu(), ks):
        if torch.equal(labels.cpu(), (4 - ks) % 4) and (ks % 2 == 1).any():
            raise Mistake(
                "labels 1 and 3 swapped",
                "labels 1 and 3 are swapped: label k means a rotation by k * 90 degrees counter-clockwise, "
                "torch.rot90(image, k, dims=(-2, -1)); your images are rotated the other way")
        i = int((labels.cpu() != ks).nonzero()[0])
        raise Mistake(
            "labels not aligned with the images",
            f"labels are not aligned with the rotated images: x_rot[{i}] is image {found[i][0]} rotated by "
            f"{DEGREES[found[i][1]]} degrees, so labels[{i}] should be {found[i][1]}, got {int(labels[i])}. "
            f"Build the labels in the same order as the images")
    for j in range(n):
        ks_j = sorted(k for src, k in found if src == j)
        assert ks_j == [0, 1, 2, 3], (
            f"every image should appear once with each rotation 0, 1, 2, 3; image {j} appears with "
            f"rotations {ks_j}")


def check_rotate_batch(rotate_batch: Callable) -> None:
    """Notebook 04: 4N images, exact rot90 rotations, labels aligned, all four per image, input kept."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 3, 6, 6, generator=g)
    x_rot, labels = _call(rotate_batch, x)
    _check_alignment(x, x_rot, labels)
    # one gray image in double precision, and a batch of larger images
    one = torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64)
    _check_alignment(one, *_call(rotate_batch, one))
    big = torch.rand(3, 3, 32, 32, generator=g)
    _check_alignment(big, *_call(rotate_batch, big))


# --------------------------------------------------------------------------- the few-label linear probe

PROBE_CLASSES = 4


def probe_encoder(seed: int = 0) -> torch.nn.Module:
    """A small encoder of 3x4x4 images with BatchNorm whose running statistics differ from any batch's,
    and Dropout: features computed in train mode differ from eval mode's, and change the buffers."""
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = nn.Sequential(nn.Flatten(), nn.Linear(48, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Dropout(0.5))
    with torch.no_grad():
        encoder[2].running_mean.copy_(0.5 * torch.randn(24, generator=g))
        encoder[2].running_var.copy_(0.5 + torch.rand(24, generator=g))
    return encoder.eval()


def probe_data(seed: int = 0, *, per_class: int = 6, test_per_class: int = 40,
               shift: float = 0.3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Few labelled training images per class and many test images, whose brightness is shifted (a test
    set is never drawn from exactly the training images' distribution): statistics taken from the
    test set, or a classifier fitted on it, give a different accuracy from the protocol's."""
    g = torch.Generator().manual_seed(seed + 100)
    means = torch.rand(PROBE_CLASSES, 3, 4, 4, generator=g)

    def draw(n: int, offset: float) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(PROBE_CLASSES).repeat_interleave(n)
        return means[y] + 0.35 * torch.randn(len(y), 3, 4, 4, generator=g) + offset, y

    train_x, train_y = draw(per_class, 0.0)
    test_x, test_y = draw(test_per_class, shift)
    return train_x, train_y, test_x, test_y


def _probe_variants(encoder: torch.nn.Module, train_x, train_y, test_x, test_y) -> dict[str, float]:
    """The protocol's accuracy ("right") and what the usual mistakes give instead, each written out
    with scikit-learn (the exercise's classifier), sharing no code with the library's probe."""
    import copy

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def features(images: torch.Tensor, train_mode: bool = False) -> np.ndarray:
        net = copy.deepcopy(encoder).train(train_mode)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return net(images).flatten(1).double().numpy()

    a, b = features(train_x), features(test_x)
    ya, yb = train_y.numpy(), test_y.numpy()

    def score(fit_x, fit_y, test, C=1.0) -> float:
        return float(LogisticRegression(C=C, max_iter=1000).fit(fit_x, fit_y).score(test, yb))

    scaler = StandardScaler().fit(a)
    sa, sb = scaler.transform(a), scaler.transform(b)
    test_scaler = StandardScaler().fit(b)
    both = StandardScaler().fit(np.concatenate([a, b]))
    ta, tb = features(train_x, True), features(test_x, True)
    train_mode_scaler = StandardScaler().fit(ta)
    return {
        "right": score(sa, ya, sb),
        "features not standardized": score(a, ya, b),
        "standardized with the test set's statistics": score(test_scaler.transform(a), ya, test_scaler.transform(b)),
        "each set standardized with its own statistics": score(sa, ya, test_scaler.transform(b)),
        "standardized with train and test together": score(both.transform(a), ya, both.transform(b)),
        "fitted on the test set": score(sb, yb, sb),
        "fitted on train and test together": score(np.concatenate([sa, sb]), np.concatenate([ya, yb]), sb),
        "C chosen on the test set": max(score(sa, ya, sb, C) for C in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)),
        "features in train mode": score(train_mode_scaler.transform(ta), ya, train_mode_scaler.transform(tb)),
    }


_PROBE_HINTS = {
    "features not standardized": "standardize the features (StandardScaler fitted on the training features) "
                                 "before the logistic regression",
    "standardized with the test set's statistics": "the scaler's mean and standard deviation come from the "
                                                   "training features only; the test set is for testing",
    "each set standardized with its own statistics": "transform the test features with the scaler fitted on the "
                                                     "training features, not with one fitted on the test set",
    "standardized with train and test together": "fit the scaler on the training features alone: statistics of "
                                                 "the test set leak into the probe",
    "fitted on the test set": "fit the classifier on the labelled training features, and only score it on the test set",
    "fitted on train and test together": "the test images' labels may not be used for fitting",
    "C chosen on the test set": "use C = 1 (the default): choosing a setting by its test accuracy is selection on "
                                "the test set",
    "features in train mode": "compute the features with the encoder in eval mode (BatchNorm uses its running "
                              "statistics, Dropout is off), and put it back in its mode afterwards",
}


def check_linear_probe_accuracy(linear_probe_accuracy: Callable) -> None:
    """The few-label linear probe: features of the frozen encoder in eval mode (its mode restored, nothing
    of it changed), StandardScaler and LogisticRegression(max_iter=1000) fitted on the training features
    only, the accuracy on the test set as a float; the library's probe off limits."""
    from .. import probe, train

    name = "linear_probe_accuracy"
    for seed, mode in ((1, "eval"), (2, "train")):
        encoder = probe_encoder(seed).train(mode == "train")
        train_x, train_y, test_x, test_y = probe_data(seed)
        what = (f"an encoder with BatchNorm and Dropout (in {mode} mode), {len(train_x)} labelled training images "
                f"and {len(test_x)} test images of {PROBE_CLASSES} classes")
        result = call_student(linear_probe_accuracy, encoder, train_x, train_y, test_x, test_y, what=what,
                              forbid=(train.linear_probe, train.extract_features, probe.fit_probe, probe.probe_accuracy,
                                      probe.few_label_probe, probe.dataset_features),
                              reason="write the probe yourself; course_utils' linear_probe is the reference")
        expect(isinstance(result, float) and not isinstance(result, bool), "not a float",
               f"{name} should return the test accuracy as a Python float, got {type(result).__name__}")
        variants = _probe_variants(probe_encoder(seed), train_x, train_y, test_x, test_y)
        one = 1 / len(test_x) + 1e-9
        if abs(result - variants["right"]) > one:
            matched = [m for m, v in variants.items() if m != "right" and abs(result - v) < 1e-9]
            message = (f"{name} gave accuracy {result:.4f} on {what}; the probe's protocol gives "
                       f"{variants['right']:.4f}")
            if matched:
                raise Mistake(matched[0], f"{message}. It matches {matched[0]}: {_PROBE_HINTS[matched[0]]}")
            raise Mistake("other", f"{message}. Expected: features of the encoder in eval mode under torch.no_grad(), "
                                   "flattened; StandardScaler and LogisticRegression(max_iter=1000) fitted on the "
                                   "training features; the accuracy on the test features")
