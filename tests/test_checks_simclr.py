"""Notebook 06's hidden checks accept the solution and reject the usual mistakes."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils.checks.simclr import check_nt_xent_loss, reference_nt_xent
from course_utils.losses import nt_xent


def solution(z1, z2, temperature):
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, positives)


def make_wrong(normalize=True, mask=True, positives="right", temperature=None, reduction="mean", scale=1.0):
    def nt_xent_loss(z1, z2, t):
        n = len(z1)
        z = torch.cat([z1, z2])
        if normalize:
            z = F.normalize(z, dim=1)
        sim = z @ z.T / (t if temperature is None else temperature(t))
        if mask:
            sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        if positives == "right":
            target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        elif positives == "first half only":
            target = torch.cat([torch.arange(n, 2 * n), torch.arange(n, 2 * n)]) % (2 * n)
        elif positives == "shifted":
            target = (torch.arange(2 * n) + n + 1) % (2 * n)
        return scale * F.cross_entropy(sim, target, reduction=reduction)

    return nt_xent_loss


def one_direction(z1, z2, t):
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = len(z1)
    sim = torch.cat([z1 @ z2.T, (z1 @ z1.T).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))], 1) / t
    return F.cross_entropy(sim, torch.arange(n))


def normalizes_in_place(z1, z2, t):
    z1.div_(z1.norm(dim=1, keepdim=True))
    z2.div_(z2.norm(dim=1, keepdim=True))
    return solution(z1, z2, t)


def detached(z1, z2, t):
    return solution(z1.detach(), z2.detach(), t)


WRONG = {
    "self-similarity not masked": make_wrong(mask=False),
    "no L2 normalization": make_wrong(normalize=False),
    "temperature ignored": make_wrong(temperature=lambda t: 0.5),
    "temperature multiplied": make_wrong(temperature=lambda t: 1 / t),
    "positive is the same view": make_wrong(positives="shifted"),
    "wrong positives for the second view": make_wrong(positives="first half only"),
    "sum instead of mean": make_wrong(reduction="sum"),
    "per-anchor losses, not their mean": make_wrong(reduction="none"),
    "sum of two directional means": make_wrong(scale=2.0),
    "only the first view as anchors": one_direction,
    "normalizes the input in place": normalizes_in_place,
    # tampers with the fixture: makes the two views equal, then answers for that case
    "tamper: copies z1 into z2": lambda z1, z2, t: (z2.copy_(z1), solution(z1, z2, t))[1],
    "detached": detached,
    "returns a float": lambda z1, z2, t: float(solution(z1, z2, t)),
    "calls the library": lambda z1, z2, t: nt_xent(z1, z2, t),
}


def test_reference_is_the_library_loss():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    for t in (0.1, 0.5, 1.0):
        assert math.isclose(reference_nt_xent(z1.numpy(), z2.numpy(), t), float(nt_xent(z1, z2, t)), rel_tol=1e-5)
    assert math.isclose(reference_nt_xent(np.ones((4, 2)), np.ones((4, 2)), 0.3), math.log(7), rel_tol=1e-9)


def test_solution_passes():
    check_nt_xent_loss(solution)


@pytest.mark.parametrize("mistake", WRONG)
def test_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_nt_xent_loss(WRONG[mistake])


@pytest.mark.parametrize("mistake, message", [
    ("self-similarity not masked", "Mask the diagonal"), ("no L2 normalization", "normalize"),
    ("temperature ignored", "temperature argument"), ("calls the library", "library"),
    ("normalizes the input in place", "in place"), ("detached", "no gradient"),
])
def test_messages_name_the_mistake(mistake, message):
    with pytest.raises(AssertionError, match=message):
        check_nt_xent_loss(WRONG[mistake])
