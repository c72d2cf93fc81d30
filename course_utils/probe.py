"""What a representation is worth with few labels: linear probes and a supervised baseline,
each repeated over several draws of the labelled images, at one number of labels per class
or along a label-efficiency curve.

The lecture's motivation for self-supervision is a data set with "very few labeled data
points". With k labelled images per class, which k images were drawn changes the accuracy
by several points, so every number here is a mean and a spread over draws:

    draws = label_draws(train_set, per_class=10, draws=3, seed=0)   # the same draws for every method
    few_label_probe(encoder, draws, test_set)          # -> FewLabelResult, e.g. "52.1 ± 1.3%"
    few_label_supervised(make_model, draws, test_set, steps=60)

`few_label_probe` is `course_utils.train.linear_probe` (standardized frozen features,
logistic regression) for several training sets at once: the test features are extracted
only once, which keeps a probe over many draws and encoders cheap.

A label-efficiency curve repeats this at several numbers of labels per class. Every draw of
every point is a set of indices into the images any draw uses (`CurveDraws`), so each
encoder's features are computed once and every probe after that is a logistic regression:

    curve_draws = CurveDraws.draw(train_set, [1, 2, 5, 10, 20, 50], draws=3, seed=0)
    train_f, test_f = dataset_features(encoder, curve_draws.images), dataset_features(encoder, test_set)
    curve = probe_curve(train_f, test_f, curve_draws)                     # -> LabelCurve
    gain = curve.minus(random_curve)     # paired differences, draw by draw: mean ± std per point
"""
from __future__ import annotations

import dataclasses
import math
import sys
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

    def minus(self, other: "FewLabelResult") -> "FewLabelResult":
        """Paired differences `self - other`, run by run: run i of both must share its label draw
        (and seed), so that what the draw does to both cancels."""
        if len(self.accuracies) != len(other.accuracies):
            raise ValueError(f"paired runs needed: {len(self.accuracies)} and {len(other.accuracies)} runs")
        return FewLabelResult([a - b for a, b in zip(self.accuracies, other.accuracies)])

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


def label_draw_indices(dataset: ImageTensorDataset, per_class: int, draws: int = 3, seed: int = 0) -> list[torch.Tensor]:
    """The indices into `dataset` of the images in each of `label_draws(dataset, per_class, draws, seed)`.

    The draws are made by `ImageTensorDataset.subset` itself, on a data set whose images are
    the indices, so they are the same draws by construction. With one seed, the draws at
    fewer labels per class are subsets of those at more (the first k of each class in one
    shuffled order): the points of a curve differ only by the labels added.
    """
    if per_class < 1 or draws < 1:
        raise ValueError(f"per_class and draws must be >= 1, got {per_class} and {draws}")
    n = len(dataset)
    index = ImageTensorDataset(torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1), dataset.labels, dataset.classes)
    return [index.subset(per_class=per_class, seed=seed + d).images.view(-1).long() for d in range(draws)]


@dataclasses.dataclass
class CurveDraws:
    """The labelled sets of a label-efficiency curve: for each number of labels per class, `draws`
    index sets into `images`, the training images any draw uses (the same draws as `label_draws`).

    Features of `images` computed once serve every point and draw.
    """

    per_class: list[int]
    images: ImageTensorDataset
    indices: dict[int, list[torch.Tensor]]

    @classmethod
    def draw(cls, dataset: ImageTensorDataset, per_class: Sequence[int], draws: int = 3, seed: int = 0) -> "CurveDraws":
        """Draw every point of the curve from `dataset` with `label_draw_indices` (seeds seed, seed+1, ...)."""
        points = sorted(set(int(k) for k in per_class))
        if not points:
            raise ValueError("per_class must name at least one number of labels per class")
        drawn = {k: label_draw_indices(dataset, k, draws, seed) for k in points}
        pool = torch.unique(torch.cat([i for sets in drawn.values() for i in sets]))  # sorted
        images = ImageTensorDataset(dataset.images[pool], dataset.labels[pool], dataset.classes)
        indices = {k: [torch.searchsorted(pool, i) for i in sets] for k, sets in drawn.items()}
        return cls(points, images, indices)

    @property
    def draws(self) -> int:
        return len(self.indices[self.per_class[0]])

    def labelled(self, per_class: int, draw: int) -> ImageTensorDataset:
        """The labelled images of one draw at one point (as `label_draws` returns them)."""
        i = self.indices[per_class][draw]
        return ImageTensorDataset(self.images.images[i], self.images.labels[i], self.images.classes)


@dataclasses.dataclass
class LabelCurve:
    """One method's test accuracy against the number of labelled images per class.

    `results[i]` holds the runs at `per_class[i]`; run d used label draw d at every point and
    for every method, so two curves on the same draws can be compared draw by draw (`minus`).
    """

    per_class: list[int]
    results: list[FewLabelResult]

    def __post_init__(self):
        if len(self.per_class) != len(self.results) or not self.per_class:
            raise ValueError(f"one result per point: {len(self.per_class)} points, {len(self.results)} results")

    @property
    def means(self) -> list[float]:
        return [r.mean for r in self.results]

    @property
    def stds(self) -> list[float]:
        return [r.std for r in self.results]

    def at(self, per_class: int) -> FewLabelResult:
        """The runs at `per_class` labels per class."""
        return self.results[self.per_class.index(per_class)]

    def select(self, per_class: Sequence[int]) -> "LabelCurve":
        """The curve at some of its points only (e.g. to pair it with a curve measured at fewer points)."""
        return LabelCurve(sorted(per_class), [self.at(k) for k in sorted(per_class)])

    def _check_paired(self, other: "LabelCurve") -> None:
        if self.per_class != other.per_class or [len(r.accuracies) for r in self.results] != \
                [len(r.accuracies) for r in other.results]:
            raise ValueError("paired comparison needs the same points and the same draws in both curves")

    def minus(self, other: "LabelCurve") -> "LabelCurve":
        """Paired differences `self - other`, draw by draw at every point.

        Which images were drawn moves both methods' accuracy together; the difference on the
        same draw cancels that, so its spread is the spread of the gain itself.
        """
        self._check_paired(other)
        return LabelCurve(list(self.per_class), [r.minus(o) for r, o in zip(self.results, other.results)])

    @classmethod
    def average(cls, curves: Sequence["LabelCurve"]) -> "LabelCurve":
        """The draw-by-draw mean of curves on the same draws (e.g. random encoders of several seeds)."""
        first = curves[0]
        for c in curves[1:]:
            first._check_paired(c)
        means = [[sum(run) / len(curves) for run in zip(*(c.results[i].accuracies for c in curves))]
                 for i in range(len(first.per_class))]
        return cls(list(first.per_class), [FewLabelResult(m) for m in means])

    def overtakes(self, other: "LabelCurve") -> int | None:
        """The fewest labels per class from which this curve's mean stays above `other`'s at every
        larger point, or None when it is not above at the last point."""
        self._check_paired(other)
        found = None
        for k, a, b in zip(reversed(self.per_class), reversed(self.means), reversed(other.means)):
            if a <= b:
                break
            found = k
        return found


def dataset_features(encoder: nn.Module, dataset: ImageTensorDataset, *, batch_size: int | None = None,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of every image of `dataset` under the frozen `encoder`, on the CPU.

    `batch_size` defaults to 512 on an accelerator and 64 on the CPU: there, a batch of 512
    32-pixel images allocates activation buffers of over 100 MB that the allocator maps afresh
    for every batch, and the page faults took longer than the convolutions (for the small CNN,
    more than twice the time of batches of 64).
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    batch_size = batch_size or (64 if device.type == "cpu" else 512)
    encoder.to(device)
    return extract_features(encoder, make_loader(dataset, batch_size, device=device), device=device)


def fit_probe(train_x: torch.Tensor, train_y: torch.Tensor, *, C: float = 1.0,
              max_iter: int = 2000) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logistic regression on standardized features (as `linear_probe` fits it); returns `predict`,
    a function from features to predicted labels.

    The fit runs with one BLAS thread: these problems are small, and on a busy 2-core machine
    OpenBLAS threads waiting for each other made a fit on 500 images a hundred times slower.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        scaler = StandardScaler().fit(train_x.numpy())
        clf = LogisticRegression(C=C, max_iter=max_iter)
        clf.fit(scaler.transform(train_x.numpy()), train_y.numpy())

    def predict(x: torch.Tensor) -> torch.Tensor:
        with threadpool_limits(1):
            return torch.as_tensor(clf.predict(scaler.transform(x.numpy())))

    return predict


def probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                   C: float = 1.0, max_iter: int = 2000) -> float:
    """Test accuracy of logistic regression on standardized features (as `linear_probe` fits it)."""
    predict = fit_probe(train_x, train_y, C=C, max_iter=max_iter)
    return float((predict(test_x) == test_y).double().mean())


def few_label_probe(encoder: nn.Module, labelled_sets: Sequence[ImageTensorDataset], test_set: ImageTensorDataset, *,
                    batch_size: int = 512, device: torch.device | str | None = None, C: float = 1.0,
                    max_iter: int = 2000) -> FewLabelResult:
    """Linear-probe accuracy of the frozen `encoder` trained on each labelled set in turn.

    The encoder's output (not a pretext head's) is the representation; it stays frozen and
    in its mode. Test features are extracted once for all the sets.
    """
    test_x, test_y = dataset_features(encoder, test_set, batch_size=batch_size, device=device)
    accuracies = []
    for labelled in labelled_sets:
        train_x, train_y = dataset_features(encoder, labelled, batch_size=batch_size, device=device)
        accuracies.append(probe_accuracy(train_x, train_y, test_x, test_y, C=C, max_iter=max_iter))
    return FewLabelResult(accuracies)


def probe_curve(train_features: tuple[torch.Tensor, torch.Tensor], test_features: tuple[torch.Tensor, torch.Tensor],
                draws: CurveDraws, *, C: float = 1.0, max_iter: int = 2000) -> LabelCurve:
    """Linear-probe accuracy at every point and draw of `draws`, from features computed once:
    `train_features` of `draws.images` and `test_features` of the test set, as `dataset_features`
    returns them."""
    train_x, train_y = train_features
    test_x, test_y = test_features
    if len(train_x) != len(draws.images):
        raise ValueError(f"train_features must be the features of draws.images ({len(draws.images)} images), "
                         f"got {len(train_x)}")
    return LabelCurve(list(draws.per_class), [
        FewLabelResult([probe_accuracy(train_x[i], train_y[i], test_x, test_y, C=C, max_iter=max_iter)
                        for i in draws.indices[k]])
        for k in draws.per_class])


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


def supervised_curve(make_model: Callable[[], nn.Module], draws: CurveDraws, test_set: ImageTensorDataset, *,
                     steps: int, lr: float = 3e-3, batch_size: int = 32, weight_decay: float = 0.0, seed: int = 0,
                     device: torch.device | str | None = None, per_class: Sequence[int] | None = None,
                     known: dict[int, FewLabelResult] | None = None,
                     progress: bool = True) -> tuple[LabelCurve, dict[int, list[nn.Module]]]:
    """`few_label_supervised` at the points `per_class` of `draws` (default: all), with the same `steps`
    at every point and the same seeds as there, so `known` results (e.g. of models loaded from
    checkpoints) can stand in for a point. Each point costs one training run per draw.

    Returns the curve and the models trained here, by point.
    """
    from tqdm.auto import tqdm

    points = sorted(per_class) if per_class is not None else list(draws.per_class)
    if not set(points) <= set(draws.per_class):
        raise ValueError(f"per_class {points} must be points of the draws, {draws.per_class}")
    known = known or {}
    todo = [k for k in points if k not in known]
    results, models = dict(known), {}
    bar = tqdm(total=len(todo) * draws.draws, desc="supervised from scratch", disable=not progress, file=sys.stdout,
               dynamic_ncols=True)
    for k in todo:
        sets = [draws.labelled(k, d) for d in range(draws.draws)]
        results[k], models[k] = few_label_supervised(make_model, sets, test_set, steps=steps, lr=lr,
                                                     batch_size=batch_size, weight_decay=weight_decay, seed=seed,
                                                     device=device, progress=False)
        bar.update(len(sets))
        bar.set_postfix_str(f"{k} per class: {results[k]}", refresh=False)
    bar.close()
    return LabelCurve(points, [results[k] for k in points]), models
