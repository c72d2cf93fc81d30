"""What a representation is worth with few labels: linear probes and a supervised baseline,
each repeated over several draws of the labelled images.

The lecture's motivation for self-supervision is a data set with "very few labeled data
points". With k labelled images per class, which k images were drawn changes the accuracy
by several points, so every number here is a mean and a spread over draws:

    draws = label_draws(train_set, per_class=10, draws=3, seed=0)   # the same draws for every method
    few_label_probe(encoder, draws, test_set)          # -> FewLabelResult, e.g. "52.1 ± 1.3%"
    few_label_supervised(make_model, draws, test_set, steps=60)

`few_label_probe` is `course_utils.train.linear_probe` (standardized frozen features,
logistic regression) for several training sets at once: the test features are extracted
only once, which keeps a probe over many draws and encoders cheap.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .data import ImageTensorDataset, make_loader
from .train import evaluate, extract_features, fit


@dataclasses.dataclass
class FewLabelResult:
    """Test accuracies of one method, one per (label draw, seed) pair, and their summary."""

    accuracies: list[float]

    @property
    def mean(self) -> float:
        return float(sum(self.accuracies) / len(self.accuracies))

    @property
    def std(self) -> float:
        """Standard deviation over the runs (ddof=1; 0 for a single run)."""
        n = len(self.accuracies)
        if n < 2:
            return 0.0
        return math.sqrt(sum((a - self.mean) ** 2 for a in self.accuracies) / (n - 1))

    @classmethod
    def pool(cls, results: Iterable["FewLabelResult"]) -> "FewLabelResult":
        """All runs of several results as one (e.g. random-init encoders of several seeds)."""
        return cls([a for r in results for a in r.accuracies])

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}%"


def label_draws(dataset: ImageTensorDataset, per_class: int, draws: int = 3, seed: int = 0) -> list[ImageTensorDataset]:
    """`draws` labelled training sets of `per_class` images per class, drawn with seeds seed, seed+1, ...

    Every method is evaluated on these same sets, so differences between methods are not
    differences between the labelled images they were given.
    """
    if per_class < 1 or draws < 1:
        raise ValueError(f"per_class and draws must be >= 1, got {per_class} and {draws}")
    return [dataset.subset(per_class=per_class, seed=seed + d) for d in range(draws)]


def _features(encoder: nn.Module, dataset: ImageTensorDataset, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    return extract_features(encoder, make_loader(dataset, batch_size, device=device), device=device)


def probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                   C: float = 1.0, max_iter: int = 2000) -> float:
    """Test accuracy of logistic regression on standardized features (as `linear_probe` fits it)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x.numpy())
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(scaler.transform(train_x.numpy()), train_y.numpy())
    return float(clf.score(scaler.transform(test_x.numpy()), test_y.numpy()))


def few_label_probe(encoder: nn.Module, labelled_sets: Sequence[ImageTensorDataset], test_set: ImageTensorDataset, *,
                    batch_size: int = 512, device: torch.device | str | None = None, C: float = 1.0,
                    max_iter: int = 2000) -> FewLabelResult:
    """Linear-probe accuracy of the frozen `encoder` trained on each labelled set in turn.

    The encoder's output (not a pretext head's) is the representation; it stays frozen and
    in its mode. Test features are extracted once for all the sets.
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    encoder.to(device)
    test_x, test_y = _features(encoder, test_set, batch_size, device)
    accuracies = []
    for labelled in labelled_sets:
        train_x, train_y = _features(encoder, labelled, batch_size, device)
        accuracies.append(probe_accuracy(train_x, train_y, test_x, test_y, C=C, max_iter=max_iter))
    return FewLabelResult(accuracies)


def few_label_supervised(make_model: Callable[[], nn.Module], labelled_sets: Sequence[ImageTensorDataset],
                         test_set: ImageTensorDataset, *, steps: int, lr: float = 3e-3, batch_size: int = 32,
                         weight_decay: float = 0.0, seed: int = 0, device: torch.device | str | None = None,
                         progress: bool = True, batch_transform=None) -> tuple[FewLabelResult, list[nn.Module]]:
    """The baseline a pretext task must beat: a network trained from scratch on the few labels.

    For each labelled set: seed, `make_model()`, `fit` for `steps` optimizer steps (as many
    epochs as that takes), test accuracy. Returns the result and the trained models.
    """
    from .runtime import seed_everything

    accuracies, models = [], []
    test_loader = make_loader(test_set, 512, device=device)
    for d, labelled in enumerate(labelled_sets):
        seed_everything(seed + d)
        model = make_model()
        loader = make_loader(labelled, min(batch_size, len(labelled)), shuffle=True, device=device, seed=seed + d)
        epochs = max(1, math.ceil(steps / len(loader)))
        fit(model, loader, epochs=epochs, max_steps=steps, lr=lr, weight_decay=weight_decay, device=device,
            progress=progress, desc=f"supervised, draw {d + 1}", batch_transform=batch_transform)
        accuracies.append(evaluate(model, test_loader, device=device)["accuracy"])
        models.append(model)
    return FewLabelResult(accuracies), models
