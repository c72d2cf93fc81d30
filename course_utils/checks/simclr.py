"""Hidden checks of notebook 06 (SimCLR's NT-Xent loss)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from . import Mistake, call_student

REASON = "write nt_xent_loss yourself with tensor operations, not with the library's nt_xent"


def reference_nt_xent(z1: np.ndarray, z2: np.ndarray, temperature: float) -> float:
    """NT-Xent by its definition, one anchor at a time (Chen et al. 2020, Eq. 1), in float64."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for a in range(n2):
        positive = a + n if a < n else a - n
        sims = [float(z[a] @ z[b]) / temperature for b in range(n2) if b != a]
        total += -(float(z[a] @ z[positive]) / temperature - math.log(sum(math.exp(s) for s in sims)))
    return total / n2


def _value(nt_xent_loss: Callable, z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    loss = call_student(nt_xent_loss, z1, z2, temperature, what=f"z1, z2 of shape {tuple(z1.shape)}, "
                        f"temperature={temperature}", forbid=tuple(_library()), reason=REASON)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0, (
        f"nt_xent_loss should return a scalar tensor (the mean over the 2N anchors), got "
        f"{type(loss).__name__}" + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
    return float(loss)


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= 1e-4 * max(1.0, abs(want))


def check_nt_xent_loss(nt_xent_loss: Callable) -> None:
    """Notebook 06: self-similarity masked, positives at i <-> i + N, L2-normalized, temperature, 2N anchors."""
    n, d = 6, 5
    # 1. collinear embeddings: every anchor sees 2N - 1 equal similarities -> log(2N - 1)
    ones = torch.ones(n, d)
    got = _value(nt_xent_loss, ones, ones.clone(), 0.5)
    if _close(got, math.log(2 * n)):
        raise AssertionError(
            f"when all 2N = {2 * n} embeddings are equal the loss is log(2N - 1) = {math.log(2 * n - 1):.4f}, got "
            f"{got:.4f} = log(2N): an anchor's similarity with itself is still in the denominator. Mask the "
            f"diagonal of the similarity matrix (e.g. fill it with -inf) before the softmax")
    assert _close(got, math.log(2 * n - 1)), (
        f"when all 2N = {2 * n} embeddings are equal every anchor has 2N - 1 equal similarities, so the loss should "
        f"be log(2N - 1) = {math.log(2 * n - 1):.4f}; got {got:.4f}")

    g = torch.Generator().manual_seed(6)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    # 2. L2 normalization: similarities are cosines, so the scale of z does not matter
    base = _value(nt_xent_loss, z1, z2, 0.5)
    scaled = _value(nt_xent_loss, 3.0 * z1, 0.25 * z2, 0.5)
    assert _close(scaled, base), (
        f"scaling z1 by 3 and z2 by 0.25 changed the loss from {base:.4f} to {scaled:.4f}: normalize every embedding "
        f"to unit length (F.normalize(z, dim=1)) so that similarities are cosines")

    # 3. the value, at two temperatures (against a brute-force reference)
    for t in (0.5, 0.1):
        want = reference_nt_xent(z1.numpy(), z2.numpy(), t)
        got = _value(nt_xent_loss, z1, z2, t)
        if _close(got, want):
            continue
        other = reference_nt_xent(z1.numpy(), z2.numpy(), 0.5 if t != 0.5 else 0.1)
        mistake, hint = "other", ""
        if _close(got, other):
            mistake, hint = "the temperature not used", (
                " It looks like the temperature argument is not used: divide the cosine similarities by it.")
        elif _close(got, 2 * want):
            mistake, hint = "two means summed", (
                " It is twice the expected value: average over the 2N anchors instead of summing two means.")
        elif _close(got, want * 2 * n):
            mistake, hint = "a sum over the anchors", (
                " It looks like a sum over the anchors: return the mean over the 2N anchors.")
        raise Mistake(mistake,
            f"for random z1, z2 of shape {(n, d)} and temperature {t} expected NT-Xent {want:.4f}, got {got:.4f}."
            f"{hint} The positive of anchor i is i + N (and of i + N it is i) in torch.cat([z1, z2]); all other "
            f"2N - 2 embeddings are negatives")

    # 4. symmetry, and a batch of one pair (no negatives: the loss is 0)
    swapped = _value(nt_xent_loss, z2, z1, 0.5)
    assert _close(swapped, base), f"loss(z1, z2) = {base:.4f} but loss(z2, z1) = {swapped:.4f}; both views are anchors"
    single = _value(nt_xent_loss, z1[:1], z2[:1], 0.5)
    assert _close(single, 0.0), f"with one image (N = 1) the only other embedding is the positive: loss 0, got {single}"

    # 5. gradients flow to both views (training calls loss.backward())
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    loss = call_student(nt_xent_loss, a, b, 0.5, what="z1, z2 that require gradients", forbid=tuple(_library()),
                        reason=REASON)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad, \
        "the loss has no gradient: compute it with torch operations only (no .item(), .numpy() or .detach())"
    loss.backward()
    assert a.grad is not None and b.grad is not None and a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0, \
        "the gradient does not reach both z1 and z2"


def _library():
    from .. import losses

    return losses.nt_xent, losses.NTXentLoss.forward
