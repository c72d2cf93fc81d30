"""Measurements behind the lecture's two explanations of adversarial examples.

"Too linear" (Goodfellow, Shlens & Szegedy 2015): along the FGSM direction a network's logits
change almost linearly with the step size, and for a linear classifier the worst case over
the L-inf ball is known in closed form: moving every pixel by eps against the weights changes
the score wᵀx by eps * ||w||_1, which grows with the number of pixels.

"High dimension" (Goodfellow et al. 2015; Gilmer et al., "Adversarial Spheres", 2018): a random
corner of the eps-ball changes wᵀx by about eps * ||w||_2 (a sum of d terms of random sign),
the worst corner by eps * ||w||_1; the ratio ||w||_1 / ||w||_2 grows like sqrt(d).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["logits_along", "straight_line_r2", "linear_worst_case_accuracy", "random_sign_noise"]


def logits_along(model: nn.Module, x: torch.Tensor, direction: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """The logits of model(x + t * direction) for each t in `steps` (no clamping to [0, 1]: the
    network is a function of any input, and the question is how it behaves along one line).
    x: (N, C, H, W), direction: same shape, steps: (T,). Returns (T, N, classes)."""
    with torch.no_grad():
        return torch.stack([model(x + float(t) * direction) for t in steps])


def straight_line_r2(t: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
    """R² of the least-squares straight line through each curve: curves (T, ...) sampled at t (T,);
    1 means exactly linear. A flat curve (no variance) counts as linear (R² = 1)."""
    t = t.to(curves.dtype).reshape(-1, *([1] * (curves.ndim - 1)))
    tc, yc = t - t.mean(0), curves - curves.mean(0)
    slope = (tc * yc).sum(0) / (tc ** 2).sum(0)
    residual = ((yc - slope * tc) ** 2).sum(0)
    total = (yc ** 2).sum(0)
    return torch.where(total > 0, 1 - residual / total.clamp_min(1e-30), torch.ones_like(total))


def linear_worst_case_accuracy(linear: nn.Linear, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                               box: bool = True) -> float:
    """The exact accuracy of the linear classifier z = W flatten(x) + b under the strongest L-inf
    attack of radius eps: an image survives iff for every other class j the margin
    (w_y - w_j)ᵀx + b_y - b_j exceeds the largest decrease the ball allows, which is
    eps * ||w_y - w_j||_1 without the image range (box=False) and, within [0, 1] (box=True), the
    sum over pixels of -min(v_i * lo_i, v_i * hi_i) with v = w_y - w_j and the allowed change
    [lo_i, hi_i] = [max(-eps, -x_i), min(eps, 1 - x_i)]. No attack can do better; FGSM on a
    linear model comes close."""
    flat = x.flatten(1)
    w, b = linear.weight.detach(), (linear.bias.detach() if linear.bias is not None else 0)
    with torch.no_grad():
        z = flat @ w.T + b                                   # (N, K)
        v = w[y][:, None, :] - w[None, :, :]                 # (N, K, D): w_y - w_j
        margin = z.gather(1, y[:, None]) - z                 # (N, K)
        if box:
            lo, hi = (-flat).clamp(min=-eps)[:, None, :], (1 - flat).clamp(max=eps)[:, None, :]
            drop = -torch.minimum(v * lo, v * hi).sum(-1)  # the change vᵀδ that lowers the margin most
        else:
            drop = eps * v.abs().sum(-1)
        survives = margin - drop > 0
        survives.scatter_(1, y[:, None], True)               # no margin against its own class
    return float(survives.all(1).float().mean())


def random_sign_noise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """A random corner of the L-inf ball, clamped to [0, 1]: every pixel moves by +eps or -eps at
    random. The baseline against which FGSM's chosen corner is compared (same norm, no
    gradient). Takes `model` and `y` only to share the attacks' signature."""
    signs = torch.randint(0, 2, x.shape, generator=generator, device=generator.device if generator else x.device)
    return (x.detach() + eps * (2 * signs.to(x.device, x.dtype) - 1)).clamp(0, 1)
