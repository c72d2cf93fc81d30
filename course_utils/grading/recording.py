"""Fixtures that record what a student's function does with them, for the hidden checks.

They live outside `course_utils.checks` because at grading time they are unpickled in the
student's sandboxed kernel, where the checks are not; the attributes named in `proxy_state`
travel back to the checker after each call (`course_utils.grading.protocol`).
"""
from __future__ import annotations

import torch
from torch import nn


class RecordingNet(nn.Module):
    """A small CNN on 3x8x8 images that keeps (training flag, input) of every forward pass."""

    proxy_state = ("calls",)

    def __init__(self, num_classes: int, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                nn.Linear(6 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, num_classes),
            )
        self.calls: list[tuple[bool, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, x.detach().clone()))
        return self.net(x)


class RecordingSGD(torch.optim.SGD):
    """SGD that keeps, at every step(), how many forward passes `model` had made and the
    parameters' gradients it was handed."""

    proxy_state = ("steps",)

    def __init__(self, model: RecordingNet, lr: float):
        super().__init__(model.parameters(), lr=lr)
        self.model = model
        self.steps: list[tuple[int, list]] = []

    def __getstate__(self):  # Optimizer pickles only its own fields
        return {**super().__getstate__(), "model": self.model, "steps": self.steps}

    def step(self, closure=None):
        self.steps.append((len(self.model.calls),
                           [None if p.grad is None else p.grad.detach().clone() for p in self.model.parameters()]))
        return super().step(closure)


class RecordingPredict(nn.Module):
    """A "model" for the adversarial-filtering check: image i carries i in its first pixel
    (i / `SCALE`) and gets row i of `table` as its logits. Keeps (batch length, whether
    gradients were enabled, the indices seen) of every call."""

    proxy_state = ("calls",)
    SCALE = 1024  # i / 1024 is exact in float32 for every index a check uses

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table.detach().clone().float())
        self.calls: list[tuple[int, bool, list[int]]] = []

    @classmethod
    def images(cls, n: int, seed: int = 0, size: int = 8) -> torch.Tensor:
        """n random images (n, 3, size, size) in [0, 1], image i marked with its index."""
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, 3, size, size, generator=g)
        x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32) / cls.SCALE
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = (x.detach()[:, 0, 0, 0].double().cpu() * self.SCALE).round().long()
        if len(index) and (index.min() < 0 or index.max() >= len(self.table)):
            raise ValueError("predict got images whose pixels were changed (in place or in a copy); pass "
                             "predict the images as they are")
        self.calls.append((len(x), torch.is_grad_enabled(), index.tolist()))
        return self.table[index].clone().to(x.device)
