"""The one device helper and the one seeding helper every notebook uses.

Devices, in order of preference: CUDA, then Apple's MPS, then the CPU (DESIGN.md,
"Engineering"). What each device gets is decided here, once, so that `fit`, `make_loader`
and the attacks agree:

| device | mixed precision (`use_amp`) | pinned memory (`use_pinned_memory`) | non-blocking copies (`use_non_blocking`) |
| --- | --- | --- | --- |
| CUDA | yes: float16 autocast with a gradient scaler | yes | yes |
| MPS | no | no | no |
| CPU | no | no | no |
"""
from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

DEVICE_ENV = "COURSE_DEVICE"
MPS_FALLBACK_ENV = "PYTORCH_ENABLE_MPS_FALLBACK"
_warned_no_fallback = False


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    """Whether Apple's Metal backend can run here (False on builds without it)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: `prefer` if given, else CUDA, else Apple's MPS, else the CPU.

    `COURSE_DEVICE` in the environment overrides the automatic choice (e.g. `cpu` to keep a
    busy GPU free, or `cuda:1`). A device that is not a device name, or that this machine
    does not have, is an error that says so, rather than a failure at the first tensor.
    Choosing MPS turns on PyTorch's CPU fallback for the operators MPS lacks (see
    `enable_mps_fallback`).
    """
    name = prefer or os.environ.get(DEVICE_ENV)
    if name:
        device = _requested_device(name, source="get_device(prefer=...)" if prefer else DEVICE_ENV)
    elif cuda_available():
        device = torch.device("cuda")
    elif mps_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if device.type == "mps":
        enable_mps_fallback()
    return device


def _requested_device(name: str, *, source: str) -> torch.device:
    try:
        device = torch.device(name.strip())
    except (RuntimeError, ValueError):
        raise ValueError(f"{source}={name!r} is not a device: use 'cpu', 'cuda', 'cuda:1' or 'mps' "
                         f"(or leave {DEVICE_ENV} unset to pick CUDA, then MPS, then the CPU)") from None
    if device.type == "cuda":
        if not cuda_available():
            raise ValueError(f"{source}={name!r} asks for CUDA, but PyTorch sees no CUDA GPU here; "
                             f"use 'cpu' (or 'mps' on a Mac), or unset {DEVICE_ENV}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{source}={name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0")
    if device.type == "mps" and not mps_available():
        raise ValueError(f"{source}={name!r} asks for Apple's MPS, which this machine or PyTorch build lacks; "
                         f"use 'cpu', or unset {DEVICE_ENV}")
    return device


def enable_mps_fallback() -> bool:
    """Let operators that MPS does not implement run on the CPU instead of raising; True when active.

    PyTorch reads `PYTORCH_ENABLE_MPS_FALLBACK` once, when it loads (it registers the MPS
    fallback kernel then), so setting it afterwards only reaches processes started later:
    a Jupyter kernel that `course-lab` starts, DataLoader workers, papermill. Importing
    `course_utils` before `torch` sets it in time (see `course_utils/__init__.py`). When torch
    was loaded without it, this warns once and says how to turn it on.
    """
    os.environ.setdefault(MPS_FALLBACK_ENV, "1")  # for processes started from here
    from . import _mps_fallback_at_torch_load

    global _warned_no_fallback
    active = _enabled(_mps_fallback_at_torch_load)
    if not active and not _warned_no_fallback:
        _warned_no_fallback = True
        warnings.warn(
            f"On MPS, operators that Apple's backend lacks will raise NotImplementedError instead of running on "
            f"the CPU: torch was imported before {MPS_FALLBACK_ENV}=1 was set. Start Jupyter with `course-lab lab` "
            f"or `{MPS_FALLBACK_ENV}=1 jupyter lab`, import course_utils before torch, or set {DEVICE_ENV}=cpu.",
            RuntimeWarning, stacklevel=3)
    return active


def _enabled(value: str | None) -> bool:
    try:
        return value is not None and int(value) != 0  # as PyTorch reads it (std::stoi)
    except ValueError:
        return False


def use_amp(device: torch.device | str) -> bool:
    """Whether `fit` and `evaluate` use mixed precision by default: on CUDA only.

    On CUDA, float16 autocast with a gradient scaler is mature and roughly halves the time
    of a step. On MPS, autocast and `GradScaler` arrived late and cover only part of the
    operators (older PyTorch rejects `torch.autocast("mps")` outright), so float32 is the safe
    choice there; on the CPU, float16 is slower than float32 and bfloat16 would change the
    numbers the quick profile documents.
    """
    return torch.device(device).type == "cuda"


def use_pinned_memory(device: torch.device | str) -> bool:
    """Whether a DataLoader feeding `device` pins its batches: for CUDA only, where page-locked
    memory makes host-to-GPU copies asynchronous. MPS shares memory with the CPU and the CPU
    needs no copy, so pinning would only cost time (and warns on machines without CUDA)."""
    return torch.device(device).type == "cuda" and cuda_available()


def use_non_blocking(device: torch.device | str) -> bool:
    """Whether copies to `device` may be asynchronous: to CUDA only. A non-blocking copy from
    pageable memory to MPS has returned wrong values (pytorch/pytorch#139550, #189690)."""
    return torch.device(device).type == "cuda"


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU, CUDA and MPS) and return a CPU generator seeded alike.

    With `deterministic=True` cuDNN is also restricted to deterministic kernels, at some
    speed cost on the GPU. On the CPU, training is bit-identical run to run for the same
    thread count without it; docs/reproducibility.md says what changes with the thread
    count and the CPU.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if cuda_available():
        torch.cuda.manual_seed_all(seed)
    if mps_available():
        torch.mps.manual_seed(seed)  # torch.manual_seed covers MPS only in newer PyTorch
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
