"""The one device helper and the one seeding helper every notebook uses."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: `prefer` if given, else CUDA when present, else the CPU.

    `COURSE_DEVICE` in the environment overrides the automatic choice (e.g. to force
    the CPU on a machine with a busy GPU).
    """
    name = prefer or os.environ.get("COURSE_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) and return a CPU generator seeded alike.

    With `deterministic=True` cuDNN is also restricted to deterministic kernels, at some
    speed cost on the GPU; on the CPU the quick profile is reproducible either way.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
