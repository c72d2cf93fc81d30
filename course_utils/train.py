"""Training and evaluation: one code path for the CPU, Apple's MPS and CUDA.

On CUDA, `fit` uses mixed precision (float16 autocast with a gradient scaler) and
non-blocking copies from pinned memory; on MPS and the CPU it trains in float32 with plain
copies (`course_utils.runtime` says why). An optional `batch_transform` runs on the device
(augmentation, pretext-task construction, adversarial examples), so no notebook needs a
training loop of its own.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .runtime import get_device, use_amp, use_non_blocking

BatchTransform = Callable[[Any, Any], tuple[Any, Any]]
LossFn = Callable[[Any, Any], torch.Tensor]


@dataclasses.dataclass
class History:
    """What `fit` measured: per epoch (train/val loss and accuracy, learning rate, seconds)
    and per optimizer step (loss). Accuracy is recorded for classification outputs only."""

    epoch: list[int] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    train_accuracy: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_accuracy: list[float] = dataclasses.field(default_factory=list)
    lr: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    step_loss: list[float] = dataclasses.field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))

    def plot(self, axes=None):
        """Loss and accuracy curves (see `course_utils.viz.plot_history`)."""
        from .viz import plot_history

        return plot_history(self, axes=axes)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move a tensor, or the tensors in a tuple/list, to `device` (non-blocking to CUDA only)."""
    if isinstance(obj, torch.Tensor):
        device = torch.device(device)
        return obj.to(device, non_blocking=use_non_blocking(device))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    return obj


def _split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    return batch, None


def _num_correct(outputs: Any, targets: Any) -> int | None:
    """Correct predictions on a device tensor, or None when the outputs are not class scores."""
    if (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor) and outputs.ndim == 2
            and targets.ndim == 1 and not targets.is_floating_point() and len(outputs) == len(targets)):
        return (outputs.argmax(1) == targets).sum()
    return None


def _batch_size(x: Any) -> int:
    return len(x[0]) if isinstance(x, (tuple, list)) else len(x)


def _forward(model: nn.Module, batch: Any, device: torch.device, batch_transform: BatchTransform | None,
             loss_fn: LossFn, amp: bool) -> tuple[Any, Any, Any, torch.Tensor]:
    """One batch through the model: to the device, the optional transform, outputs and loss."""
    x, y = _split_batch(to_device(batch, device))
    inputs, targets = batch_transform(x, y) if batch_transform is not None else (x, y)
    # autocast is entered only when on: older PyTorch rejects torch.autocast("mps") even when disabled
    with torch.autocast(device.type, dtype=torch.float16) if amp else contextlib.nullcontext():
        outputs = model(inputs)
        loss = loss_fn(outputs, targets)
    return inputs, targets, outputs, loss


class _Meter:
    """Running mean loss and accuracy, kept on the device so that no step waits for a sync."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen, self.classified = 0, True

    def add(self, inputs: Any, targets: Any, outputs: Any, loss: torch.Tensor) -> None:
        n = _batch_size(inputs)
        self.loss += loss.detach().float() * n
        correct = _num_correct(outputs, targets)
        if correct is None:
            self.classified = False
        else:
            self.correct += correct
        self.seen += n

    def mean_loss(self) -> float:
        return self.loss.item() / self.seen

    def accuracy(self) -> float:
        return self.correct.item() / self.seen if self.classified else float("nan")


def fit(model: nn.Module, loader, *, epochs: int, lr: float = 1e-3, weight_decay: float = 0.0,
        optimizer: torch.optim.Optimizer | None = None, schedule: str | None = "onecycle",
        loss_fn: LossFn | None = None, batch_transform: BatchTransform | None = None, val_loader=None,
        max_steps: int | None = None, device: torch.device | str | None = None, amp: bool | None = None,
        progress: bool = True, desc: str = "train") -> History:
    """Train `model` on `loader` and return its `History`; the model ends in eval mode.

    Each step: move the batch to the device, `inputs, targets = batch_transform(x, y)` if
    given, `loss = loss_fn(model(inputs), targets)` (cross-entropy by default), one optimizer
    step. The default optimizer is Adam with a one-cycle learning-rate schedule peaking at
    `lr` (Smith & Topin 2019), which trains the small models here in a few epochs.
    `max_steps` caps the number of steps (the grade profile uses it).
    `amp` (mixed precision) defaults to `runtime.use_amp(device)`: on for CUDA only.
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    amp = use_amp(device) if amp is None else amp
    loss_fn = loss_fn or F.cross_entropy
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * len(loader)
    if max_steps is not None:
        total = min(total, max_steps)
    if total < 1:
        raise ValueError(f"nothing to train: epochs={epochs}, {len(loader)} batches, max_steps={max_steps}")
    scheduler = None
    if schedule == "onecycle":
        peak = [group["lr"] for group in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=total)
    elif schedule is not None:
        raise ValueError(f"schedule must be 'onecycle' or None, got {schedule!r}")
    scaler = torch.amp.GradScaler(device.type) if amp else None
    history = History()
    bar = tqdm(total=total, desc=desc, disable=not progress, file=sys.stdout, dynamic_ncols=True)
    step = 0
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        meter, step_losses = _Meter(device), []
        for batch in loader:
            if step >= total:
                break
            inputs, targets, outputs, loss = _forward(model, batch, device, batch_transform, loss_fn, amp)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            meter.add(inputs, targets, outputs, loss)
            step_losses.append(loss.detach().float())
            step += 1
            bar.update(1)
        if meter.seen == 0:
            break
        history.epoch.append(epoch)
        history.train_loss.append(meter.mean_loss())
        history.train_accuracy.append(meter.accuracy())
        history.step_loss.extend(torch.stack(step_losses).tolist())
        history.lr.append(optimizer.param_groups[0]["lr"])
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn=loss_fn, batch_transform=batch_transform, device=device, amp=amp)
            history.val_loss.append(val["loss"])
            history.val_accuracy.append(val["accuracy"])
        history.seconds.append(time.perf_counter() - start)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", refresh=False)
        if step >= total:
            break
    bar.close()
    model.eval()
    return history


def evaluate(model: nn.Module, loader, *, loss_fn: LossFn | None = None, batch_transform: BatchTransform | None = None,
             device: torch.device | str | None = None, amp: bool | None = None) -> dict[str, float]:
    """Mean loss and accuracy of `model` over `loader`, without gradients, in eval mode.

    Returns {"loss", "accuracy", "n"}; accuracy is NaN when the outputs are not class scores.
    The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    amp = use_amp(device) if amp is None else amp
    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    model.eval()
    meter = _Meter(device)
    try:
        with torch.no_grad():
            for batch in loader:
                meter.add(*_forward(model, batch, device, batch_transform, loss_fn, amp))
    finally:
        model.train(was_training)
    if meter.seen == 0:
        raise ValueError("evaluate() got an empty loader")
    return {"loss": meter.mean_loss(), "accuracy": meter.accuracy(), "n": meter.seen}


def extract_features(encoder: nn.Module, loader, *, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encoder's features and the labels of every image in `loader`, on the CPU.

    Runs without gradients and in eval mode (BatchNorm uses its running statistics and
    does not update them); the encoder's mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = _split_batch(batch)
                features.append(encoder(to_device(x, device)).float().flatten(1).cpu())
                labels.append(torch.as_tensor(y))
    finally:
        encoder.train(was_training)
    return torch.cat(features), torch.cat(labels)


def linear_probe(encoder: nn.Module, train_loader, test_loader, *, device: torch.device | str | None = None,
                 C: float = 1.0, max_iter: int = 2000) -> float:
    """Test accuracy of a linear classifier trained on the frozen encoder's features.

    The standard measure of a self-supervised representation: the encoder is not trained;
    its features are standardized (statistics from the training set) and fed to
    scikit-learn's multinomial logistic regression (L2 penalty, inverse strength `C`).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_x, train_y = extract_features(encoder, train_loader, device=device)
    test_x, test_y = extract_features(encoder, test_loader, device=device)
    scaler = StandardScaler().fit(train_x.numpy())
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(scaler.transform(train_x.numpy()), train_y.numpy())
    return float(clf.score(scaler.transform(test_x.numpy()), test_y.numpy()))
