"""Metrics on model outputs. Each has a brute-force reference test in tests/test_metrics.py."""
from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of `logits` (N, classes) whose argmax equals the label `y` (N,)."""
    return topk_accuracy(logits, y, 1)


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the `k` highest scores (ties broken by index)."""
    if logits.ndim != 2 or y.ndim != 1 or len(logits) != len(y):
        raise ValueError(f"expected logits (N, classes) and labels (N,), got {tuple(logits.shape)} and {tuple(y.shape)}")
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k must be between 1 and the number of classes ({logits.shape[1]}), got {k}")
    if len(y) == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    top = logits.topk(k, dim=1).indices
    return (top == y.to(top.device)[:, None]).any(dim=1).float().mean().item()
