"""Tests of course_utils.robustness: accuracy under several threats in one pass against a hand
loop, the targeted success rate, and the nearest other-class distance against brute force."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.attacks import pgd
from course_utils.data import load_digits, make_loader
from course_utils.robustness import accuracy_under, adversarial_examples, nearest_other_class_distance, success_rate


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits("test", size=8)
    return data.images[:40], data.labels[:40]


def hand_accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_accuracy_under_matches_a_hand_loop_for_every_threat():
    model = linear_model()
    loader = make_loader(load_digits("test", size=8).subset(40), 16)  # three batches, the last one short
    flip = lambda xb, yb: xb.flip(-1)  # noqa: E731
    attack = lambda xb, yb: pgd(model, xb, yb, 0.1, 0.05, 3, random_start=False)  # noqa: E731
    xs, ys = loader.dataset.tensors
    got = accuracy_under(model, loader, {"clean": None, "flipped": flip, "pgd": attack})
    assert list(got) == ["clean", "flipped", "pgd"]
    assert got["clean"] == pytest.approx(hand_accuracy(model, xs, ys))
    assert got["flipped"] == pytest.approx(hand_accuracy(model, xs.flip(-1), ys))
    assert got["pgd"] == pytest.approx(hand_accuracy(model, pgd(model, xs, ys, 0.1, 0.05, 3, random_start=False), ys))
    assert got["pgd"] <= got["clean"]


def test_accuracy_under_restores_the_mode_and_checks_its_input():
    model = linear_model().train()
    loader = make_loader(load_digits("test", size=8).subset(8), 8)
    accuracy_under(model, loader, {"clean": None})
    assert model.training
    with pytest.raises(ValueError, match="empty"):
        accuracy_under(model, loader, {})


def test_success_rate_counts_the_images_classified_as_their_target(digits):
    x, y = digits
    model = linear_model()
    with torch.no_grad():
        predicted = model(x).argmax(1)
    assert success_rate(model, x, predicted) == 1.0
    assert success_rate(model, x, (predicted + 1) % 10) == 0.0
    half = torch.where(torch.arange(len(x)) % 2 == 0, predicted, (predicted + 1) % 10)
    assert success_rate(model, x, half) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one target per image"):
        success_rate(model, x, predicted[:3])


@pytest.mark.parametrize("p", [float("inf"), 2.0])
def test_nearest_other_class_distance_matches_brute_force(p):
    g = torch.Generator().manual_seed(0)
    x, ref = torch.rand(7, 1, 4, 4, generator=g), torch.rand(12, 1, 4, 4, generator=g)
    y, ref_y = torch.randint(3, (7,), generator=g), torch.randint(3, (12,), generator=g)
    distances, indices = nearest_other_class_distance(x, y, ref, ref_y, p=p, chunk=3)
    for i in range(len(x)):
        candidates = [(float(torch.linalg.vector_norm((x[i] - ref[j]).flatten(), ord=p)), j)
                      for j in range(len(ref)) if ref_y[j] != y[i]]
        best, j = min(candidates)
        assert float(distances[i]) == pytest.approx(best, abs=1e-6)
        assert ref_y[indices[i]] != y[i] and int(indices[i]) == j


def test_nearest_other_class_distance_closed_form():
    # two constant images of different classes: their L-inf distance is the gap between the constants
    x = torch.full((1, 3, 4, 4), 0.2)
    ref = torch.stack([torch.full((3, 4, 4), 0.25), torch.full((3, 4, 4), 0.7)])
    distance, index = nearest_other_class_distance(x, torch.tensor([0]), ref, torch.tensor([0, 1]))
    assert float(distance) == pytest.approx(0.5) and int(index) == 1


def test_adversarial_examples_keeps_every_batch_in_order():
    model = linear_model()
    data = load_digits("test", size=8).subset(40)
    loader = make_loader(data, 16)
    x_adv, labels = adversarial_examples(model, loader, pgd, eps=0.1, alpha=0.05, steps=3, random_start=False)
    xs, ys = data.tensors
    assert torch.equal(labels, ys)
    assert torch.allclose(x_adv, pgd(model, xs, ys, 0.1, 0.05, 3, random_start=False), atol=1e-6)
    assert float((x_adv - xs).abs().max()) <= 0.1 + 1e-6
