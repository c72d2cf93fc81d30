"""Robustness beyond the threat a model was trained against (notebook 03).

Adversarial training makes a model robust inside the ball it was trained on (Madry et al.
2017). Whether that robustness reaches other threats (a larger radius, another norm, a
rotation, another background, a sticker) has to be measured threat by threat, on the same
images: `accuracy_under` does that in one pass over a loader. `success_rate` scores a
targeted attack (the lecture's face-recognition example: glasses that make a system see a
chosen person). `nearest_other_class_distance` asks whether a radius is too large for the
data itself: when two images of different classes are within 2 eps of each other, one image
lies within eps of both, and no classifier can be right about it under attack (Yang, Rashtchian,
Zhang, Salakhutdinov & Chaudhuri, "A Closer Look at Accuracy vs. Robustness", NeurIPS 2020:
a classifier both accurate and robust at radius eps exists when the classes are more than
2 eps apart).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from .attacks import _accuracies, _model_device, _model_mode

__all__ = ["accuracy_under", "adversarial_examples", "success_rate", "nearest_other_class_distance"]

Perturbation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def accuracy_under(model: nn.Module, loader: Iterable, perturbations: dict[str, Perturbation | None]) -> dict[str, float]:
    """{name: accuracy of `model` (eval mode) on perturb(x, y)} for every (name, perturb) in
    `perturbations`, in one pass over `loader`'s (x, y) batches; None is the clean images.

    A perturbation is any function of the batch that returns images: an attack on this model
    (`lambda x, y: pgd(model, x, y, ...)`), a transfer attack crafted on another model
    (`lambda x, y: pgd(source, x, y, ...)`), or a natural shift (`lambda x, y: rotate(x, 30)`).
    Every threat sees the same images, so the numbers compare. Batches are moved to the
    model's device; the model's mode is restored afterwards.
    """
    if not perturbations:
        raise ValueError("perturbations is empty; pass e.g. {'clean': None, 'rotated': lambda x, y: rotate(x, 30)}")
    with _model_mode(model):  # one pass, as robust_accuracy and accuracy_vs_eps make theirs
        return _accuracies(model, loader, perturbations)


def adversarial_examples(model: nn.Module, loader: Iterable, attack: Callable[..., torch.Tensor],
                         **attack_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """`attack(model, x, y, **attack_kwargs)` on every (x, y) batch of `loader`, kept: (adversarial
    images, labels), concatenated on the CPU. Crafted once, they can be shown to other models:
    a transfer attack (Papernot, McDaniel & Goodfellow 2016), the check for gradient masking."""
    device = _model_device(model)
    images, labels = [], []
    for x, y in loader:
        images.append(attack(model, x.to(device), torch.as_tensor(y).to(device), **attack_kwargs).cpu())
        labels.append(torch.as_tensor(y).cpu())
    if not images:
        raise ValueError("the loader yielded no images")
    return torch.cat(images), torch.cat(labels)


def success_rate(model: nn.Module, x_adv: torch.Tensor, target: torch.Tensor) -> float:
    """The fraction of the images `x_adv` that `model` (eval mode) assigns to their `target`
    class: the success rate of a targeted attack."""
    if len(x_adv) != len(target):
        raise ValueError(f"one target per image: got {len(x_adv)} images and {len(target)} targets")
    with torch.no_grad(), _model_mode(model):
        device = _model_device(model)
        return float((model(x_adv.to(device)).argmax(1) == target.to(device)).float().mean())


def nearest_other_class_distance(x: torch.Tensor, y: torch.Tensor, reference: torch.Tensor,
                                 reference_labels: torch.Tensor, *, p: float = float("inf"),
                                 chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image x[i], the distance (in the L-p norm, L-inf by default) to the nearest
    image of `reference` whose label differs from y[i], and that image's index: (distances
    (N,), indices (N,)).

    A distance of at most 2 eps means that the eps-balls around the two images overlap: the
    image halfway between them is within eps of both, so an eps-perturbation can make one
    digit into an image that is just as much the other, and no classifier is robust and right
    on both at radius eps (Yang et al. 2020). Computed in chunks of `chunk` queries.
    """
    if len(x) != len(y) or len(reference) != len(reference_labels):
        raise ValueError("one label per image: x with y, reference with reference_labels")
    ref = reference.flatten(1).float()
    ref_labels = reference_labels.to(ref.device)
    distances, indices = [], []
    for start in range(0, len(x), chunk):
        q = x[start:start + chunk].flatten(1).float().to(ref.device)
        d = torch.cdist(q, ref, p=p)
        same = y[start:start + chunk].to(ref.device)[:, None] == ref_labels[None, :]
        d = d.masked_fill(same, float("inf"))
        best, where = d.min(dim=1)
        distances.append(best)
        indices.append(where)
    return torch.cat(distances), torch.cat(indices)
