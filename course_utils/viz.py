"""Figures the notebooks share: image grids and training curves."""
from __future__ import annotations

from typing import Sequence

import torch


def imshow_tensor(ax, image: torch.Tensor) -> None:
    """Draw one image (C, H, W) with values in [0, 1] on `ax`: RGB as is, one channel in gray."""
    img = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    if img.shape[-1] == 1:
        ax.imshow(img.squeeze(-1), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img)


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, *, ncols: int = 8, scale: float = 1.4,
                suptitle: str | None = None):
    """A grid of images (N, C, H, W) in [0, 1], one optional title each; returns the figure.

    The grid is one picture on one axes, each title a text above its image (`image_grid`):
    matplotlib spends ~15 ms on every axes it makes and lays out, so a grid of 48 digits took
    0.7 s of a student's notebook (and of every submission's grading) as one axes per image.
    """
    import math

    import matplotlib.pyplot as plt

    n = len(images)
    ncols = max(1, min(ncols, n))
    height, width = images.shape[-2:] if n else (1, 1)
    gap = max(1, round(0.08 * width))  # white between images, in image pixels
    inch = scale / (width + gap)  # inches per image pixel: each column is `scale` inches wide
    lines = max((len(str(t).splitlines()) for t in titles[:n]), default=0) if titles is not None else 0
    margin = 0.04 / inch  # between a title and its image
    band = math.ceil(lines * 8 * 1.25 / 72 / inch + margin) if lines else 0  # 8-point lines above each image
    grid = image_grid(images, ncols, gap=gap, top=band)
    top = 0.45 if suptitle else 0.0  # inches for the suptitle
    grid_h, grid_w = grid.shape[0] * inch, grid.shape[1] * inch
    fig = plt.figure(figsize=(grid_w, grid_h + top))
    ax = fig.add_axes((0, 0, 1, grid_h / (grid_h + top)))
    ax.set_axis_off()
    ax.imshow(grid, aspect="equal")  # antialiased when a large image is shrunk, as one axes per image was
    if titles is not None:
        for i in range(n):
            y0, x0 = _tile_origin(i, ncols, height, width, gap, band)
            x = x0 + width / 2 - 0.5  # pixel k spans k - 0.5 to k + 0.5
            y = y0 - 0.5 - margin  # above the image's top edge
            ax.text(x, y, str(titles[i]), fontsize=8, ha="center", va="bottom", linespacing=1.1)
    if suptitle:
        fig.suptitle(suptitle, y=1 - 0.1 / (grid_h + top), va="top")
    return fig


def image_grid(images: torch.Tensor, ncols: int, *, gap: int = 1, top: int = 0):
    """Images (N, C, H, W) in [0, 1] tiled row by row into one RGB array on white: `gap`
    pixels around each, and `top` more above each row (room for titles). One channel is gray."""
    import numpy as np

    n, height, width = len(images), *images.shape[-2:]
    nrows = max(1, -(-n // ncols))
    x = images.detach().float().cpu().clamp(0, 1)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    pixels = x.permute(0, 2, 3, 1).numpy()
    grid = np.ones((nrows * (top + height + gap), ncols * (width + gap), 3), dtype=np.float32)
    for i in range(n):
        y0, x0 = _tile_origin(i, ncols, height, width, gap, top)
        grid[y0:y0 + height, x0:x0 + width] = pixels[i]
    return grid


def _tile_origin(i: int, ncols: int, height: int, width: int, gap: int, top: int) -> tuple[int, int]:
    """Row and column of image `i`'s top-left pixel in `image_grid`'s array."""
    row, col = divmod(i, ncols)
    return row * (top + height + gap) + top + gap // 2, col * (width + gap) + gap // 2


def plot_history(history, axes=None):
    """Training (and validation, if any) loss and accuracy per epoch; returns the figure."""
    import math

    import matplotlib.pyplot as plt

    has_acc = any(not math.isnan(a) for a in history.train_accuracy)
    if axes is None:
        _, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(9 if has_acc else 4.5, 3), squeeze=False)
        axes = axes.flat
    axes = list(axes)
    axes[0].plot(history.epoch, history.train_loss, marker="o", label="train")
    if history.val_loss:
        axes[0].plot(history.epoch, history.val_loss, marker="o", label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    if has_acc and len(axes) > 1:
        axes[1].plot(history.epoch, history.train_accuracy, marker="o", label="train")
        if history.val_accuracy:
            axes[1].plot(history.epoch, history.val_accuracy, marker="o", label="validation")
        axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
        axes[1].legend()
    fig = axes[0].figure
    fig.tight_layout()
    return fig


# --- Adversarial examples (notebooks 02 and 03) ---------------------------------------------


def _prediction_title(probs: torch.Tensor, classes: Sequence[str], prefix: str = "") -> str:
    probs = probs.detach().float().cpu()
    k = int(probs.argmax())
    return f"{prefix}{classes[k]!s} ({100 * float(probs[k]):.1f}%)"


def show_adversarial_example(x: torch.Tensor, x_adv: torch.Tensor, clean_probs: torch.Tensor,
                             adv_probs: torch.Tensor, classes: Sequence[str], *, label: int | None = None,
                             eps: float | None = None, axes=None):
    """The lecture's first adversarial example, for one image: the original with its prediction
    and confidence, the perturbation (amplified so that it fills the display range: grey is 0),
    and the adversarial image with its prediction and confidence. Returns the figure."""
    import matplotlib.pyplot as plt

    x, x_adv = x.detach().float().cpu(), x_adv.detach().float().cpu()
    delta = x_adv - x
    size = float(delta.abs().max())
    scale = 0.5 / size if size > 0 else 1.0
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    axes = list(axes)
    panels = [
        (x, ("label " + str(classes[label]) + "\n" if label is not None else "") +
         _prediction_title(clean_probs, classes, "prediction: ")),
        (0.5 + scale * delta, f"perturbation (x{scale * 2:.0f})" + (f"\neps = {eps:.3g}" if eps is not None else "")),
        (x_adv, "adversarial\n" + _prediction_title(adv_probs, classes, "prediction: ")),
    ]
    for ax, (img, title) in zip(axes, panels):
        imshow_tensor(ax, img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig = axes[0].figure
    fig.tight_layout()
    for left, right, sign in ((axes[0], axes[1], "+"), (axes[1], axes[2], "=")):
        a, b = left.get_position(), right.get_position()  # the gap between two panels, in figure coordinates
        fig.text((a.x1 + b.x0) / 2, (a.y0 + a.y1) / 2, sign, fontsize=16, ha="center", va="center")
    return fig


def plot_accuracy_vs_eps(curves: dict, *, ax=None, title: str | None = None, chance: float | None = None):
    """Accuracy against the attack radius eps, one line per entry of `curves` ({name: {eps: accuracy}},
    e.g. the output of `course_utils.attacks.accuracy_vs_eps`). Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for name, curve in curves.items():
        eps = sorted(curve)
        ax.plot(eps, [curve[e] for e in eps], marker="o", label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set(xlabel="eps (L-inf radius)", ylabel="accuracy", ylim=(0, 1.02), title=title or "accuracy under attack")
    ax.legend()
    ax.figure.tight_layout()
    return ax


def plot_accuracy_bars(table: dict, *, ax=None, title: str | None = None):
    """Grouped bars: one group per model, one bar per evaluation ({model: {evaluation: accuracy}},
    e.g. {"standard": {"clean": 0.99, "FGSM": 0.2, "PGD": 0.0}, ...}). Returns the axes."""
    import matplotlib.pyplot as plt

    models = list(table)
    kinds = list(dict.fromkeys(k for row in table.values() for k in row))
    if ax is None:
        _, ax = plt.subplots(figsize=(1.9 * len(models) + 2, 3.2))
    width = 0.8 / max(1, len(kinds))
    for j, kind in enumerate(kinds):
        xs = [i + (j - (len(kinds) - 1) / 2) * width for i in range(len(models))]
        values = [table[m].get(kind, float("nan")) for m in models]
        bars = ax.bar(xs, values, width, label=kind)
        ax.bar_label(bars, labels=[f"{100 * v:.0f}" if v == v else "" for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(models)), models)
    ax.set(ylabel="accuracy", ylim=(0, 1.3), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0], title=title or "accuracy of each model")
    ax.legend(ncols=len(kinds), fontsize=8, loc="upper center")
    ax.figure.tight_layout()
    return ax


# --- Self-supervision (notebook 06) -----------------------------------------------------------


def plot_label_efficiency(curves: dict, *, ax=None, title: str | None = None, ylabel: str = "test accuracy",
                          reference: float | None = None, reference_label: str | None = None,
                          styles: dict | None = None):
    """Accuracy against labelled images per class on a log x axis, one line per method with error
    bars of one standard deviation over label draws.

    `curves` is {name: curve}, each curve with `per_class`, `means` and `stds` (e.g.
    `course_utils.probe.LabelCurve`, or its paired differences with a baseline). The lines are
    nudged sideways a little so that error bars at the same point do not hide each other.
    `reference` draws a dotted horizontal line (chance, or 0 for gains); `styles` gives matplotlib
    keywords per name (e.g. the same colour for a method in two panels, or `linestyle="none"` for
    a method measured at a few points only, which a line would interpolate). Returns the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    n = len(curves)
    for j, (name, curve) in enumerate(curves.items()):
        nudge = 1.05 ** (j - (n - 1) / 2)
        style = {"marker": "o", "markersize": 4, "capsize": 3, **(styles or {}).get(name, {})}
        ax.errorbar([k * nudge for k in curve.per_class], curve.means, yerr=curve.stds, label=name, **style)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle=":", label=reference_label)
    ax.set_xscale("log")
    ticks = sorted({k for curve in curves.values() for k in curve.per_class})
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set(xlabel="labelled images per class (log scale)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax
