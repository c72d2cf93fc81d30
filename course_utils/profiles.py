"""Run profiles: one code path, three sizes (see DESIGN.md, "Three profiles").

`quick` runs each notebook in about two minutes on a 2-core CPU with data that ships
with installed packages; `full` uses the real data sets and pretrained models on one
GPU; `grade` is what nbgrader runs while autograding: the least that executes every cell.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from .runtime import get_device

PROFILE_ENV = "LAB_PROFILE"
NBGRADER_ENV = "NBGRADER_EXECUTION"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes a notebook reads instead of hard-coding them.

    `train_limit` / `test_limit` cut the data sets (None keeps all); `max_steps` caps the
    optimizer steps of one `fit` call (None: run all epochs). Notebook-specific knobs are
    chosen with `pick(quick=..., full=..., grade=...)` so every size is visible in one place.
    """

    name: str
    dataset: str  # "digits" (offline, bundled with scikit-learn) or "cifar10"
    image_size: int
    train_limit: int | None
    test_limit: int | None
    epochs: int
    lr: float  # peak learning rate of the one-cycle schedule for supervised training
    batch_size: int
    eval_batch_size: int
    max_steps: int | None
    device: torch.device
    seconds: str  # expected run time of one notebook, as the notebooks state it

    def pick(self, **by_profile: Any) -> Any:
        """The value given for this profile's name, e.g. `profile.pick(quick=6, full=30, grade=1)`."""
        if self.name not in by_profile:
            raise KeyError(f"no value given for profile {self.name!r}; pass {self.name}=...")
        return by_profile[self.name]

    def banner(self) -> str:
        return (f"Profile '{self.name}' on {self.device.type}: {_DATA[self.name]}; training {self.epochs} epoch(s) "
                f"at batch {self.batch_size}; expected {self.seconds} per notebook")

    def _repr_html_(self) -> str:  # the banner a notebook shows as its cell output
        return f"<div style='padding:4px;border-left:4px solid #2a7ae2'><b>{self.banner()}</b></div>"


_DATA = {
    "quick": "offline data that ships with the installed packages (digits, Digits-M, an ImageNet-A-layout fixture)",
    "grade": "a few dozen images and two training steps (what the autograder runs)",
    "full": "the real data sets (CIFAR-10, ImageNet-A) and pretrained weights",
}


def _make(name: str, device: torch.device) -> Profile:
    common = dict(image_size=32, eval_batch_size=512)
    if name == "quick":
        return Profile("quick", dataset="digits", train_limit=None, test_limit=None, epochs=10, lr=3e-3,
                       batch_size=64, max_steps=None, device=device, seconds="about 2 min on 2 CPU cores", **common)
    if name == "grade":
        return Profile("grade", dataset="digits", train_limit=64, test_limit=64, epochs=1, lr=3e-3,
                       batch_size=32, max_steps=2, device=torch.device("cpu"), seconds="a few seconds on a CPU",
                       **common)
    if name == "full":
        return Profile("full", dataset="cifar10", train_limit=None, test_limit=None, epochs=15, lr=2e-3,
                       batch_size=256, max_steps=None, device=device, seconds="up to 15 min on a T4-class GPU",
                       **common)
    raise ValueError(f"unknown profile {name!r}: choose 'quick', 'full' or 'grade'")


PROFILE_NAMES = ("quick", "full", "grade")


def get_profile(parameter: str = "quick", *, device: str | torch.device | None = None) -> Profile:
    """Resolve the profile in DESIGN.md's order.

    1. the `LAB_PROFILE` environment variable;
    2. `grade` while nbgrader executes the notebook (it sets `NBGRADER_EXECUTION`);
    3. `parameter`, the notebook's own papermill parameter.
    The `grade` profile always runs on the CPU: a grading machine has no GPU, and grades
    must not depend on one.
    """
    name = os.environ.get(PROFILE_ENV) or ("grade" if os.environ.get(NBGRADER_ENV) else parameter)
    name = name.strip().lower()
    return _make(name, torch.device(device) if device is not None else get_device())
