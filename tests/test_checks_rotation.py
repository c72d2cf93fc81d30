"""Notebook 04's hidden checks accept the solution and reject the usual mistakes."""
import pytest
import torch

from course_utils.augment import rotate_batch as library_rotate_batch
from course_utils.checks.rotation import check_rotate_batch


def solution(x):
    x_rot = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4).repeat_interleave(len(x))
    return x_rot, labels


def interleaved(x):
    x_rot = torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], 1).flatten(0, 1)
    labels = torch.arange(4).repeat(len(x))
    return x_rot, labels


def one_random_rotation(x):
    k = torch.randint(0, 4, (len(x),))
    return torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)]), k


def rotates_in_place(x):
    outs = []
    for k in range(4):
        outs.append(x.clone())
        x.copy_(torch.rot90(x, 1, dims=(2, 3)))  # x ends where it started only after 4 steps
    x.mul_(1.0001)
    return torch.cat(outs), torch.arange(4).repeat_interleave(len(x))


WRONG = {
    "labels interleaved, images in blocks": lambda x: (solution(x)[0], torch.arange(4).repeat(len(x))),
    "images interleaved, labels in blocks": lambda x: (interleaved(x)[0], torch.arange(4).repeat_interleave(len(x))),
    "clockwise": lambda x: (torch.cat([torch.rot90(x, k, dims=(3, 2)) for k in range(4)]),
                            torch.arange(4).repeat_interleave(len(x))),
    "transpose instead of 90 degrees": lambda x: (
        torch.cat([x, x.transpose(2, 3), x.flip(2, 3), x.transpose(2, 3).flip(2, 3)]),
        torch.arange(4).repeat_interleave(len(x))),
    "flip instead of 180 degrees": lambda x: (
        torch.cat([x, torch.rot90(x, 1, (2, 3)), x.flip(2), torch.rot90(x, 3, (2, 3))]),
        torch.arange(4).repeat_interleave(len(x))),
    "rotates the channel axis": lambda x: (torch.cat([torch.rot90(x, k, dims=(1, 2)) for k in range(4)]),
                                           torch.arange(4).repeat_interleave(len(x))),
    "one random rotation per image": one_random_rotation,
    "same rotation four times": lambda x: (torch.cat([x] * 4), torch.arange(4).repeat_interleave(len(x))),
    "float labels": lambda x: (solution(x)[0], solution(x)[1].float()),
    "labels as a list": lambda x: (solution(x)[0], solution(x)[1].tolist()),
    "modifies the input": rotates_in_place,
    # tampers with the fixture: makes x a constant image, whose rotations all look alike
    "tamper: blanks the input": lambda x: (x.fill_(0.5), solution(x))[1],
    "calls the library": library_rotate_batch,
}


def test_solution_passes():
    check_rotate_batch(solution)


def test_interleaved_order_with_aligned_labels_passes():
    check_rotate_batch(interleaved)


@pytest.mark.parametrize("mistake", WRONG)
def test_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_rotate_batch(WRONG[mistake])


def test_messages_name_the_mistake():
    with pytest.raises(AssertionError, match="not aligned"):
        check_rotate_batch(WRONG["labels interleaved, images in blocks"])
    with pytest.raises(AssertionError, match="swapped"):
        check_rotate_batch(WRONG["clockwise"])
    with pytest.raises(AssertionError, match="not an exact rotation"):
        check_rotate_batch(WRONG["transpose instead of 90 degrees"])
    with pytest.raises(AssertionError, match="in place"):
        check_rotate_batch(rotates_in_place)
    with pytest.raises(AssertionError, match="library"):
        check_rotate_batch(library_rotate_batch)


# --- the few-label linear probe ------------------------------------------------------------------

def _probe(*, mode="eval", scale="train", fit="train", C=1.0, restore=True, grad=False):
    def linear_probe_accuracy(encoder, train_images, train_labels, test_images, test_labels):
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        was_training = encoder.training
        encoder.train(mode == "train")
        if grad:
            train_f = encoder(train_images).flatten(1).detach().numpy()
            test_f = encoder(test_images).flatten(1).detach().numpy()
        else:
            with torch.no_grad():
                train_f, test_f = encoder(train_images).flatten(1).numpy(), encoder(test_images).flatten(1).numpy()
        if restore:
            encoder.train(was_training)
        scalers = {"train": StandardScaler().fit(train_f), "test": StandardScaler().fit(test_f),
                   "all": StandardScaler().fit(np.concatenate([train_f, test_f]))}
        if scale == "none":
            a, b = train_f, test_f
        else:
            a, b = scalers[scale].transform(train_f), scalers[scale].transform(test_f)
        clf = LogisticRegression(C=C, max_iter=1000)
        if fit == "train":
            clf.fit(a, train_labels.numpy())
        else:
            clf.fit(b, test_labels.numpy())
        return float(clf.score(b, test_labels.numpy()))
    return linear_probe_accuracy


def probe_with_the_library(encoder, train_images, train_labels, test_images, test_labels):
    from course_utils.data import ImageTensorDataset, make_loader
    from course_utils.train import linear_probe

    def loader(x, y):
        return make_loader(ImageTensorDataset(x, y, [str(c) for c in range(4)]), 256)
    return linear_probe(encoder, loader(train_images, train_labels), loader(test_images, test_labels))


def probe_best_c(encoder, train_images, train_labels, test_images, test_labels):
    return max(_probe(C=c)(encoder, train_images, train_labels, test_images, test_labels)
               for c in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0))


probe_solution = _probe()
PROBE_WRONG = {
    "features not standardized": _probe(scale="none"),
    "standardized with the test set's statistics": _probe(scale="test"),
    "standardized with train and test together": _probe(scale="all"),
    "fitted on the test set": _probe(fit="test"),
    "C chosen on the test set": probe_best_c,
    "train mode, restored": _probe(mode="train"),       # BatchNorm's running statistics changed
    "train mode, not restored": _probe(mode="train", restore=False),
    "eval mode left on": _probe(restore=False),          # the second case hands in an encoder in train mode
    "the library": probe_with_the_library,
}


def test_probe_solution_passes_and_so_does_one_with_gradients_detached_late():
    from course_utils.checks.rotation import check_linear_probe_accuracy

    check_linear_probe_accuracy(probe_solution)
    check_linear_probe_accuracy(_probe(grad=True))


@pytest.mark.parametrize("mistake", PROBE_WRONG)
def test_probe_mistakes_fail(mistake):
    from course_utils.checks import Mistake
    from course_utils.checks.rotation import check_linear_probe_accuracy

    with pytest.raises(AssertionError) as caught:
        check_linear_probe_accuracy(PROBE_WRONG[mistake])
    if isinstance(caught.value, Mistake):
        assert caught.value.name == mistake, (caught.value.name, str(caught.value))
    else:
        assert "mode" in str(caught.value) or "buffers" in str(caught.value) or "linear_probe" in str(caught.value), \
            str(caught.value)
