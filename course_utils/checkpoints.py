"""Trained weights kept between notebooks: train once, reuse when the same settings come back.

Notebook 02 trains the standard classifier that notebook 03 defends, and notebooks 04 and 05
train encoders that 06 compares: a checkpoint under `<data dir>/checkpoints/` lets the later
notebook load what the earlier one trained. A checkpoint is named by what it is, the profile
and the seed (`checkpoint_path`), and stores the settings (`config`) that decided its
weights, so changed settings never load stale weights. As in the UvA deep-learning
notebooks: train when the checkpoint is missing, skip training when it is there.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .data import data_dir

__all__ = ["checkpoint_dir", "checkpoint_path", "save_checkpoint", "load_checkpoint", "training_config",
           "train_or_load"]


def checkpoint_dir() -> Path:
    """`<data dir>/checkpoints` (the data dir is `$COURSE_DATA_DIR`, else ~/.cache/course_utils)."""
    return data_dir() / "checkpoints"


def _profile_name(profile: Any) -> str:
    """The profile's name; a smoke run's (`LAB_SMOKE=1`) is `<name>-smoke`, so that it never
    replaces the weights of a real run in the same data directory."""
    return str(getattr(profile, "name", profile)) + ("-smoke" if getattr(profile, "smoke", False) else "")


def _plain(value: Any) -> Any:
    """`value` as plain data (numbers, strings, lists, dicts); anything else by its repr."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return repr(value)


def checkpoint_path(name: str, *, profile: Any, seed: int = 0) -> Path:
    """`<checkpoint dir>/<name>-<profile>-seed<seed>.pt`; `profile` is a `Profile` or its name."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"name must be a plain file-name stem such as 'standard', got {name!r}")
    return checkpoint_dir() / f"{name}-{_profile_name(profile)}-seed{int(seed)}.pt"


def save_checkpoint(module: nn.Module, name: str, *, profile: Any, seed: int = 0, config: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Save `module`'s weights with the `config` that made them and `extra` facts (e.g. an accuracy).

    Writes a temporary file in the same folder and renames it: a reader never sees half a
    file, and two processes saving at once leave one complete checkpoint. Returns the path.
    """
    path = checkpoint_path(name, profile=profile, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "profile": _profile_name(profile), "seed": int(seed), "config": _plain(config or {}),
               "extra": _plain(extra or {}),
               "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(module: nn.Module, name: str, *, profile: Any, seed: int = 0, config: dict | None = None,
                    verbose: bool = True) -> dict | None:
    """Load the weights saved by `save_checkpoint` into `module` and return their `extra` dict;
    None (and `module` untouched) when there is no checkpoint, it was saved with another
    `config` (key order does not matter), or it cannot be read or does not fit `module`."""
    path = checkpoint_path(name, profile=profile, seed=seed)
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or "state_dict" not in saved:
            raise ValueError("not a course_utils checkpoint")
    except Exception as err:  # a truncated or foreign file: torch raises several kinds
        print(f"The checkpoint {path} cannot be used ({type(err).__name__}: {err}); delete it. Training instead.")
        return None
    if saved.get("config", {}) != _plain(config or {}):
        if verbose:
            print(f"The checkpoint {path} was saved with other settings; training instead.")
        return None
    try:
        module.load_state_dict(saved["state_dict"])
    except RuntimeError as err:
        print(f"The checkpoint {path} cannot be used (it does not fit the model: {str(err).splitlines()[0]}); "
              "training instead.")
        return None
    return dict(saved.get("extra") or {})


def training_config(profile: Any, **recipe: Any) -> dict:
    """The fields of a `Profile` that decide a supervised training run's weights (data set,
    sizes, epochs, learning rate, batch size, step cap), plus the `recipe` (model name,
    transform, ...): the `config` a checkpoint of that run is keyed by."""
    fields = ("dataset", "image_size", "train_limit", "epochs", "lr", "batch_size", "max_steps")
    return _plain({**{f: getattr(profile, f) for f in fields}, **recipe})


def train_or_load(model: nn.Module, name: str, train: Callable[[nn.Module], Any], *, profile: Any, seed: int = 0,
                  config: dict | None = None, enabled: bool = True) -> tuple[Any, bool]:
    """Load `model`'s weights from the checkpoint (`name`, `profile`, `seed`, `config`) if there
    is one; else run `train(model)`, which returns the training `History`, and save the weights.

    Returns `(history, loaded)`: the `History` of the run that made the weights (also when
    they are loaded from a checkpoint) and whether they were loaded. The model ends in eval
    mode. `enabled=False` always trains and saves nothing (the autograder's `grade` profile:
    grades must not depend on files left by earlier runs).
    """
    from .train import History

    if enabled:
        extra = load_checkpoint(model, name, profile=profile, seed=seed, config=config)
        if extra is not None:
            path = checkpoint_path(name, profile=profile, seed=seed)
            print(f"Loaded the trained '{name}' model from {path} (delete the file to train it again).")
            model.eval()  # as after training: a fresh module is in train mode, and BatchNorm would drift
            history = extra.get("history")
            return (History(**history) if isinstance(history, dict) else None), True
    history = train(model)
    model.eval()
    if enabled:
        extra = {"history": dataclasses.asdict(history)} if dataclasses.is_dataclass(history) else {}
        path = save_checkpoint(model, name, profile=profile, seed=seed, config=config, extra=extra)
        print(f"Saved the trained '{name}' model to {path}.")
    return history, False
