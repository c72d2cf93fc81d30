"""Losses of the self-supervision notebooks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, Eq. 1).

    `z1[i]` and `z2[i]` (N, D) embed two views of image i. All 2N embeddings are
    L2-normalized, so that similarities are cosines; anchor a of the 2N has one positive
    (the other view of its image: i <-> i + N in `torch.cat([z1, z2])`) and 2N - 2
    negatives (the other images' views; its similarity with itself is masked out):

        loss_a = -log( exp(sim(a, pos) / t) / sum_{b != a} exp(sim(a, b) / t) )

    Returns the mean over the 2N anchors (a scalar). When all 2N embeddings point the same
    way every anchor sees 2N - 1 equal terms, so the loss is log(2N - 1) at any temperature.
    SimCLR used t = 0.5 for CIFAR-10 and 0.1 for ImageNet (with large batches); a lower
    temperature weighs the hardest negatives more. Computed in float32 whatever the input.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be (N, D) embeddings of the same shape, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


class NTXentLoss(nn.Module):
    """`nt_xent` as `fit`'s `loss_fn`, for a model that embeds both views in one batch.

    `loss(projections, targets)` splits the (2N, D) projections into the first and second
    view, as `SimCLRViews.batch_transform` concatenated them (`torch.cat([view1, view2])`),
    and ignores `targets` (None: the task needs no labels).
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, projections: torch.Tensor, targets=None) -> torch.Tensor:
        if len(projections) % 2:
            raise ValueError(f"expected the projections of two views, (2N, D), got an odd batch of {len(projections)}")
        z1, z2 = projections.chunk(2)
        return nt_xent(z1, z2, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
