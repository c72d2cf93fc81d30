"""Figures the notebooks share: image grids and training curves."""
from __future__ import annotations

from typing import Sequence

import torch


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, *, ncols: int = 8, scale: float = 1.4,
                suptitle: str | None = None):
    """A grid of images (N, C, H, W) in [0, 1], one optional title each; returns the figure."""
    import matplotlib.pyplot as plt

    images = images.detach().float().cpu().clamp(0, 1)
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + (0.3 if titles else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = images[i].permute(1, 2, 0).numpy()
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


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
