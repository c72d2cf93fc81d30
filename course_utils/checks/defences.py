"""Hidden checks of notebook 03 (robustness and defences): one step of adversarial training.

`check_adversarial_training_step` watches the student's step from the inside: the network
records every forward pass (its input and whether it ran in train mode), and a hook on the
optimizer records the parameters' gradients at the moment of `optimizer.step()`. From those
it rebuilds what FGSM with a random start (Wong, Rice & Kolter 2020) should have done from
the random start the student drew, and names the mistake when the step differs: no random
start, a wrong step size or sign, no projection onto the eps-ball, no clamping to [0, 1],
the optimizer step taken on the clean images, the update run in eval mode, gradients not
zeroed (left over from before, or from the attack's backward pass), a wrong loss returned.
The network has no BatchNorm or dropout, so the attack may run in either mode.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import Mistake, call_student
from ..grading.recording import RecordingNet, RecordingSGD
from .synthetic_adversarial import NUM_CLASSES, _forbidden, check_batch


LR = 0.05  # the check's optimizer: plain SGD, so one step moves each parameter by -LR * its gradient


def _call(step: Callable, model: RecordingNet, optimizer: RecordingSGD, *args, what: str):
    from .. import train

    # a training step changes the model's parameters, their .grad and its mode, and the optimizer's
    # state; nothing else (not x, not the optimizer's settings)
    return call_student(step, model, optimizer, *args, what=what, forbid=(*_forbidden(), train.fit),
                        reason="write the step yourself: the FGSM perturbation with torch.autograd.grad, "
                               "then one optimizer step; course_utils.attacks and fit are the reference",
                        may_change=[(model, "parameters", "grads", "mode", "recorded"),
                                    (optimizer, "state", "recorded")])


def _input_gradient(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(F.cross_entropy(net(x), y), x)[0]


def _param_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    with torch.enable_grad():
        return list(torch.autograd.grad(F.cross_entropy(net(x), y), list(net.parameters())))


def _fgsm_from(net, x, y, start, eps, alpha, *, sign=1.0, at=None) -> torch.Tensor:
    """x_adv = clip_[0,1](x + clip_[-eps,eps](start - x + alpha * sign(grad at `at` (default: start))))."""
    grad = _input_gradient(net, start if at is None else at, y)
    delta = (start - x + sign * alpha * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and float(((a - b).abs() > atol).float().mean()) <= 0.005


def _close_outside(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> bool:
    """`a` and `b` agree wherever `mask` is False, and `mask` is where they differ."""
    return a.shape == b.shape and bool(mask.any()) and _close(a[~mask], b[~mask])


def _grads_close(got: list, want: list) -> bool:
    return all(g is not None and torch.allclose(g, w, rtol=1e-4, atol=1e-6) for g, w in zip(got, want))


def _run(step: Callable, *, eps: float, alpha: float, seed: int, model_mode: str):
    model = RecordingNet(NUM_CLASSES, seed)
    model.train(model_mode == "train")
    x, y = check_batch(16, seed=seed)
    x_before = x.clone()
    net_before = copy.deepcopy(model.net)
    optimizer = RecordingSGD(model, lr=LR)
    g = torch.Generator().manual_seed(99 + seed)
    leftover = []
    for p in model.parameters():  # as if left over from the previous training step
        p.grad = torch.randn(p.shape, generator=g)
        leftover.append(p.grad.clone())
    what = f"eps={eps}, alpha={alpha}, a batch of {len(x)} images, the model given in {model_mode} mode"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234 + seed)
        result = _call(step, model, optimizer, x, y, eps, alpha, what=what)
    return model, x, y, x_before, net_before, leftover, optimizer.steps, result, what


def check_adversarial_training_step(adversarial_training_step: Callable) -> None:
    """FGSM adversarial training with a random start (Wong et al. 2020), one step: checked from the
    forward passes it makes and the gradients it hands the optimizer."""
    for eps, alpha, seed, mode in ((0.1, 0.125, 0, "eval"), (0.05, 0.02, 1, "train")):
        _check_one(adversarial_training_step, eps=eps, alpha=alpha, seed=seed, model_mode=mode)


def _check_one(step: Callable, *, eps: float, alpha: float, seed: int, model_mode: str) -> None:
    model, x, y, x_before, net, leftover, at_step, result, what = _run(step, eps=eps, alpha=alpha, seed=seed,
                                                                       model_mode=model_mode)
    name = "adversarial_training_step"
    assert len(at_step) == 1, (
        f"{name} called optimizer.step() {len(at_step)} times ({what}); one training step calls it exactly once")
    n_calls, grads = at_step[0]
    calls = model.calls[:n_calls]
    assert n_calls >= 2, (
        f"{name} ran the model {n_calls} time(s) before optimizer.step() ({what}); it needs two forward passes: "
        "one at the random start to get the FGSM gradient, one on the adversarial images for the training loss")
    update_training, x_used = calls[-1]
    _, start = calls[-2]

    # what the model was trained on
    assert not _close(x_used, x_before, atol=1e-7), (
        f"{name} took the optimizer step on the clean images ({what}): the training loss must be computed on the "
        "adversarial images x_adv, that is the whole point of adversarial training")
    lo, hi = float(x_used.min()), float(x_used.max())
    assert lo >= 0.0 and hi <= 1.0, (
        f"the images {name} trained on have values in [{lo:.3f}, {hi:.3f}] ({what}); clamp x_adv to [0, 1]")
    dist = float((x_used - x_before).abs().max())
    assert dist <= eps + 1e-5, (
        f"the images {name} trained on are up to {dist:.4f} away from x, more than eps = {eps} ({what}): after the "
        "FGSM step of size alpha (larger than eps), project the perturbation back: delta.clamp(-eps, eps)")
    assert update_training, (
        f"the forward pass of the training loss ran with the model in eval mode ({what}); call model.train() "
        "before it (the attack may run in either mode, the update must run in train mode)")

    # the random start
    delta0 = start - x_before
    assert not _close(start, x_before, atol=1e-7), (
        f"{name} computed the FGSM gradient at x itself ({what}): there is no random start. Wong et al.'s FGSM starts "
        "at x + delta with delta drawn uniformly from [-eps, eps] per pixel; without it, FGSM training "
        "overfits catastrophically")
    inside = (x_before >= eps) & (x_before <= 1 - eps)
    mean_abs, mean = float(delta0[inside].abs().mean() / eps), float(delta0[inside].mean() / eps)
    assert float(delta0.abs().max()) <= eps + 1e-5 and 0.42 <= mean_abs <= 0.58 and abs(mean) <= 0.08, (
        f"the random start should be uniform in [-eps, eps] per pixel ({what}): expected mean |delta| about "
        f"eps/2 = {eps / 2:.3f}, mean delta about 0 and |delta| <= eps; got {mean_abs * eps:.3f}, {mean * eps:.3f} and "
        f"up to {float(delta0.abs().max()):.3f}. Use torch.empty_like(x).uniform_(-eps, eps)")

    # the FGSM step from that start
    expected = _fgsm_from(net, x_before, y, start, eps, alpha)
    if not _close(x_used, expected):
        if _close(x_used, _fgsm_from(net, x_before, y, start, eps, eps)):
            mistake, hint = "steps by eps, not alpha", (
                f"It steps by eps; the step size is alpha (= {alpha} here; Wong et al. use alpha = 1.25 * eps)")
        elif _close(x_used, _fgsm_from(net, x_before, y, start, eps, alpha, sign=-1.0)):
            mistake, hint = "steps against the gradient", (
                "It steps against the gradient, which lowers the loss: add +alpha * sign(grad)")
        elif _close(x_used, start.clamp(0, 1)):
            mistake, hint = "trains on the random start", (
                "It trains on the random start itself; take the FGSM step from it")
        elif _close(x_used, _fgsm_from(net, x_before, y, start, eps, alpha, at=x_before)):
            mistake, hint = "the gradient at the clean x", (
                "It takes the gradient at the clean x; take it at the random start x + delta")
        elif _close_outside(x_used, expected, (start <= 0) | (start >= 1)):
            mistake, hint = "steps from the unclamped start", (
                "It differs only where the start x + delta sits at 0 or 1: it steps from the uniform draw. Step "
                    "from the clamped start of step 1, delta = (x + delta).clamp(0, 1) - x")
        else:
            mistake, hint = "other", (
                "Expected x_adv = clamp(x + clamp(delta + alpha * sign(grad), -eps, eps), 0, 1), with delta = "
                    "clamp(x + uniform draw, 0, 1) - x the clamped random start and grad the gradient of the loss at "
                    "x + delta")
        wrong = int(((x_used - expected).abs() > 1e-5).sum())
        raise Mistake(mistake, f"the images {name} trained on differ from the FGSM-with-random-start images ({what}): "
                             f"{wrong} of {expected.numel()} pixel values differ. {hint}")

    # the gradients handed to the optimizer
    want = _param_gradients(net, x_used, y)
    if not _grads_close(grads, want):
        attack = _param_gradients(net, start, y)
        if any(g is None for g in grads):
            mistake, hint = "no backward pass", ("Some parameters had no gradient at the optimizer step: call "
                                                 "loss.backward() on the training loss")
        elif _grads_close(grads, [w + l for w, l in zip(want, leftover)]) or _grads_close(
                grads, [w + a + l for w, a, l in zip(want, attack, leftover)]):
            mistake, hint = "no zero_grad before backward", (
                "The gradients left over from before the step were added in: call optimizer.zero_grad() before "
                    "the training loss's backward()")
        elif _grads_close(grads, [w + a for w, a in zip(want, attack)]):
            mistake, hint = "the attack's gradient left in", (
                "The attack's backward pass left its gradient in the parameters: zero the gradients after the "
                    "attack (optimizer.zero_grad()) or take the attack's gradient with torch.autograd.grad")
        elif _grads_close(grads, [w * len(y) for w in want]):
            mistake, hint = "a summed loss", (
                "The loss is summed over the batch; use the mean cross-entropy, F.cross_entropy(logits, y)")
        else:
            mistake, hint = "other", (
                "Expected the gradient of F.cross_entropy(model(x_adv), y) alone, with the gradients zeroed first")
        raise Mistake(mistake, f"the gradients at optimizer.step() are not those of the training loss on the "
                             f"adversarial images ({what}). {hint}")

    # the step itself: the parameters moved by exactly one SGD step with those gradients (a step that
    # only records the right passes, or moves the weights elsewhere, changes the model otherwise)
    after = [p.detach() for p in model.net.parameters()]
    stepped = [p0.detach() - LR * g for p0, g in zip(net.parameters(), grads)]
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(after, stepped)), (
        f"the model's parameters after {name} are not one optimizer step from where they were ({what}): "
        "expected each parameter to move by -lr * its gradient, once (optimizer.step()), and nothing else to "
        "change them")

    with torch.no_grad():
        loss = float(F.cross_entropy(net(x_used), y))
    assert isinstance(result, float), (
        f"{name} should return the training loss as a Python float (loss.item()), got {type(result).__name__}")
    assert abs(result - loss) <= 1e-4 * max(1.0, abs(loss)), (
        f"{name} returned {result:.5f}; expected the training loss on the adversarial images before the update, "
        f"{loss:.5f} ({what})")
