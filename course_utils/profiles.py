"""Run profiles: one code path, three sizes (see DESIGN.md, "Three profiles").

`quick` runs each notebook in about two minutes on a 2-core CPU with data that ships
with installed packages; `full` uses the real data sets and pretrained models on one
GPU; `grade` is what nbgrader runs while autograding: the least that executes every cell.

The smoke switch (`LAB_SMOKE=1`) proves a profile's code paths in seconds, e.g. `full` on
a CPU with stand-ins for its downloads: it keeps the profile's name, data sets, models
and branches, and shrinks only its sizes, each to the smaller of its own and `grade`'s
(see `Profile.pick`), the data sets to a few images per class. Its numbers mean nothing.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from .runtime import get_device

PROFILE_ENV = "LAB_PROFILE"
NBGRADER_ENV = "NBGRADER_EXECUTION"
SMOKE_ENV = "LAB_SMOKE"


def smoke_size(value: Any, grade_value: Any) -> Any:
    """What a size becomes under the smoke switch: for integers (not booleans) the smaller of
    `value` and the grade profile's `grade_value`, but never 0 where `value` is positive (a
    count that switches a step on keeps it on); anything else (names, flags, eps, lists,
    None) is `value` unchanged, so that smoke runs the same code paths."""
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if not (is_int(value) and is_int(grade_value)):
        return value
    smaller = min(value, grade_value)
    return max(smaller, 1) if value > 0 else smaller


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes a notebook reads instead of hard-coding them.

    `train_limit` / `test_limit` cut the data sets (None keeps all); `max_steps` caps the
    optimizer steps of one `fit` call (None: run all epochs). Notebook-specific knobs are
    chosen with `pick(quick=..., full=..., grade=...)` so every size is visible in one place.
    `smoke` is True when the smoke switch shrank the sizes (see `get_profile`).
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
    smoke: bool = False

    def pick(self, **by_profile: Any) -> Any:
        """The value given for this profile's name, e.g. `profile.pick(quick=6, full=30, grade=1)`.

        Under the smoke switch an integer size shrinks to the smaller of this profile's and
        the `grade=` value (`smoke_size`): `pick(quick=100, full=2000, grade=2)` gives 2 on
        `full` with smoke, while names, flags, eps and lists stay this profile's own.
        """
        if self.name not in by_profile:
            raise KeyError(f"no value given for profile {self.name!r}; pass {self.name}=...")
        value = by_profile[self.name]
        if self.smoke and "grade" in by_profile:
            return smoke_size(value, by_profile["grade"])
        return value

    def banner(self) -> str:
        text = (f"Profile '{self.name}' on {self.device.type}: {_DATA[self.name]}; training {self.epochs} epoch(s) "
                f"at batch {self.batch_size}; expected {self.seconds} per notebook")
        if self.smoke:
            text = (f"SMOKE RUN ({SMOKE_ENV}=1: every size cut to the grade profile's or less; it proves the code paths run, "
                    f"its numbers mean nothing). {text}")
        return text

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
        # 32 test images, a few per class (the smoke runs' 20 are enough for every plot and metric):
        # every evaluation still runs, 2-3 s sooner per graded lab than with 64
        return Profile("grade", dataset="digits", train_limit=64, test_limit=32, epochs=1, lr=3e-3,
                       batch_size=32, max_steps=2, device=torch.device("cpu"), seconds="a few seconds on a CPU",
                       **common)
    if name == "full":
        return Profile("full", dataset="cifar10", train_limit=None, test_limit=None, epochs=15, lr=2e-3,
                       batch_size=256, max_steps=None, device=device, seconds="up to 15 min on a T4-class GPU",
                       **common)
    raise ValueError(f"unknown profile {name!r}: choose 'quick', 'full' or 'grade'")


_SIZES = ("train_limit", "test_limit", "epochs", "batch_size", "eval_batch_size", "max_steps")
# A smoke run's data, smaller still than grade's: the full profile's ResNets cost a CPU ~50x
# grade's small CNN per image. 4 training and 2 test images of each of 10 classes are what
# every notebook's few-label draws and per-class plots need.
SMOKE_LIMITS = {"train_limit": 40, "test_limit": 20, "batch_size": 16}


def _smoke(profile: Profile) -> Profile:
    """`profile` with every size cut to the grade profile's (None, i.e. "all", counts as larger),
    and the data and batches to `SMOKE_LIMITS`."""
    grade = _make("grade", profile.device)
    sizes = {}
    for f in _SIZES:
        value = getattr(grade, f) if getattr(profile, f) is None else smoke_size(getattr(profile, f), getattr(grade, f))
        sizes[f] = smoke_size(value, SMOKE_LIMITS[f]) if f in SMOKE_LIMITS else value
    return dataclasses.replace(profile, **sizes, smoke=True, seconds="seconds to a minute")


def smoke_requested() -> bool:
    """Whether `LAB_SMOKE` asks for a smoke run ("1", "true", "yes", "on"; "0", "false", "" do not)."""
    value = os.environ.get(SMOKE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{SMOKE_ENV}={value!r}: set it to 1 for a smoke run, or 0 (or unset it) for a real one")


def digits_profile(profile: Profile) -> Profile:
    """The profile a digits-only experiment runs on inside a notebook of `profile`.

    Notebook 01's Digits-A trains small CNNs on digits on every profile: on `full` it keeps
    `quick`'s sizes, names and checkpoints (the experiment is CPU-sized; a GPU only makes it
    faster), on the same device; `quick` and `grade` are themselves. The smoke switch still
    shrinks the sizes.
    """
    if profile.name != "full":
        return profile
    quick = _make("quick", profile.device)
    return _smoke(quick) if profile.smoke else quick


PROFILE_NAMES = ("quick", "full", "grade")


def get_profile(parameter: str = "quick", *, device: str | torch.device | None = None,
                smoke: bool | None = None) -> Profile:
    """Resolve the profile in DESIGN.md's order.

    1. the `LAB_PROFILE` environment variable;
    2. `grade` while nbgrader executes the notebook (it sets `NBGRADER_EXECUTION`);
    3. `parameter`, the notebook's own papermill parameter.
    The `grade` profile always runs on the CPU: a grading machine has no GPU, and grades
    must not depend on one.

    `smoke` (default: `LAB_SMOKE` in the environment) cuts every size to the grade
    profile's and keeps everything else: `full` with smoke still loads CIFAR-10, ImageNet-A
    and the pretrained ResNet-50 and runs every full-profile branch, in seconds per
    notebook. The tests run the full profile this way on stand-ins; a maintainer can do the
    same on a GPU to check a change before a 15-minute run. nbgrader's runs ignore it.
    """
    grading = bool(os.environ.get(NBGRADER_ENV))
    name = os.environ.get(PROFILE_ENV) or ("grade" if grading else parameter)
    name = name.strip().lower()
    # grade runs on the CPU whatever the machine has: its device is not looked up, so a
    # COURSE_DEVICE meant for the student's runs cannot break (or warn during) grading
    if name == "grade":
        resolved = torch.device("cpu")
    else:
        resolved = torch.device(device) if device is not None else get_device()
    profile = _make(name, resolved)
    if (smoke_requested() if smoke is None else smoke) and not grading:
        profile = _smoke(profile)
    return profile
