"""Hidden checks of notebook 02 (synthetic adversarial examples): FGSM, PGD, targeted PGD, and the
attack confined to a mask (sticker / eyeglasses).

Each check runs the student's attack on a small fixed network and batch, built so that the
usual mistakes give a different answer: the network has BatchNorm with non-trivial running
statistics (an attack run in train mode takes a different gradient), smooth activations and
average pooling (every pixel has a non-zero gradient, so every pixel moves), and the images
have pixels at exactly 0 and 1 (an attack that does not clamp leaves [0, 1]). The expected
images come from a reference written here, independently of `course_utils.attacks`, which
the student's function may not call. When the answer is wrong, the check names the mistake
it matches (wrong gradient sign, no projection, ...).
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import Mistake, call_student

NUM_CLASSES = 5


# --------------------------------------------------------------------------- fixtures

def check_model(seed: int = 0) -> nn.Module:
    """A small CNN on 3x8x8 images, in eval mode, whose BatchNorm running statistics differ from
    any batch's (so train mode and eval mode give different gradients)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(6 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, NUM_CLASSES),
        )
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.copy_(0.3 * torch.randn(6, generator=g))
        bn.running_var.copy_(0.3 + torch.rand(6, generator=g))
        bn.weight.copy_(1 + 0.5 * torch.rand(6, generator=g))
        bn.bias.copy_(0.2 * torch.randn(6, generator=g))
    return model.eval()


def check_batch(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n images 3x8x8 in [0, 1], about a quarter of the pixels exactly 0 and a sixth exactly 1
    (like a digit's background and strokes), and labels in 0..NUM_CLASSES-1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g)
    u = torch.rand(n, 3, 8, 8, generator=g)
    x[u < 0.25] = 0.0
    x[u > 5 / 6] = 1.0
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return x, y


def _forbidden() -> list:
    """The library's attacks and their internals, and torchattacks' (as "module:qualname": they
    count only if the student imported torchattacks; never imported here, it can warn)."""
    from .. import attacks

    return [attacks.fgsm, attacks.pgd, attacks._pgd, attacks.masked_attack, attacks._loss_gradient, attacks._LinfBall.direction,
            attacks._LinfBall.project, attacks._LinfBall.sample, attacks.AdversarialTransform.__call__,
            *(f"torchattacks:{cls}.forward" for cls in ("FGSM", "PGD", "PGDL2", "FFGSM", "BIM"))]


REASON = ("write the attack yourself with torch.autograd.grad; course_utils.attacks (and torchattacks) "
          "are the reference your function is compared with, not part of the answer")


def _call(function: Callable, *args, what: str, **kwargs):
    """`call_student` with the library's attacks off limits."""
    return call_student(function, *args, what=what, forbid=tuple(_forbidden()), reason=REASON, **kwargs)


# --------------------------------------------------------------------------- references

def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, train_mode: bool = False) -> torch.Tensor:
    """d CE(model(x), y) / dx, in eval mode (or train mode, to recognise that mistake), without
    touching the parameters' .grad or the model's mode and BatchNorm statistics."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [(m, m.training) for m in model.modules()]
    model.train(train_mode)
    try:
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    finally:
        for m, training in modes:
            m.training = training
        model.load_state_dict(state)
    return grad


def reference_pgd(model, x, y, eps, alpha, steps, *, start=None, sign=1.0, project="each", clamp=True,
                  train_mode=False, use_sign=True) -> torch.Tensor:
    """L-inf PGD from `start` (default x), written out; the keyword arguments produce the usual
    mistakes: sign=-1 (descend instead of ascend; for a targeted attack, the right sign),
    project="each" | "end" | "none" | "previous", clamp=False, train_mode=True, use_sign=False."""
    x = x.detach()
    x_adv = (x if start is None else start).detach().clone()
    for _ in range(steps):
        grad = _input_gradient(model, x_adv, y, train_mode=train_mode)
        previous = x_adv
        x_adv = x_adv + sign * alpha * (grad.sign() if use_sign else grad)
        if project == "each":
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        elif project == "previous":
            x_adv = torch.min(torch.max(x_adv, previous - eps), previous + eps)
        if clamp:
            x_adv = x_adv.clamp(0, 1)
    if project == "end":
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


def _close(a: torch.Tensor, b: torch.Tensor, *, atol: float = 1e-5, fraction: float = 0.005) -> bool:
    """Equal up to float rounding: at most `fraction` of the entries differ by more than `atol`
    (a rounding difference can flip the sign of a near-zero gradient entry in a later step)."""
    if a.shape != b.shape:
        return False
    return float(((a - b).abs() > atol).float().mean()) <= fraction


# --------------------------------------------------------------------------- shared contract

def _grad_sentinels(model: nn.Module) -> None:
    """Give every parameter a known .grad (as if left over from a training step)."""
    g = torch.Generator().manual_seed(123)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def _check_contract(name: str, result, x_before: torch.Tensor, eps: float, what: str) -> torch.Tensor:
    # (that the attack left x, the model's weights, mode, buffers and .grad as they were is the rule of
    # every check: call_student fails any change an attack makes to its arguments)
    assert isinstance(result, torch.Tensor), f"{name} should return a tensor of images, got {type(result).__name__}"
    assert result.shape == x_before.shape, (
        f"{name} should return images of the input's shape {tuple(x_before.shape)}, got {tuple(result.shape)} ({what})")
    assert not result.requires_grad, (
        f"{name} returned a tensor that requires grad ({what}); return x_adv.detach()")
    result = result.detach().float()
    lo, hi = float(result.min()), float(result.max())
    assert lo >= 0.0 and hi <= 1.0, (
        f"{name} returned values in [{lo:.3f}, {hi:.3f}] ({what}); images must stay in [0, 1]: clamp with "
        "x_adv.clamp(0, 1) after every step (pixels at 0 or 1 would otherwise be pushed outside)")
    dist = float((result - x_before).abs().max())
    if name == "fgsm_attack":
        hint = "FGSM moves each pixel by eps * sign(grad): use the eps you are given"
    else:
        hint = ("Project onto the eps-ball around the ORIGINAL image after every step: "
                "x_adv = torch.min(torch.max(x_adv, x - eps), x + eps) (clipping around the previous iterate, "
                "or not at all, lets the perturbation grow with every step)")
    assert dist <= eps + 1e-5, f"{name} moved a pixel by {dist:.4f}, more than eps = {eps} ({what}). {hint}"
    return result


def _setup(seed: int = 0):
    model = check_model(seed)
    x, y = check_batch(seed=seed)
    _grad_sentinels(model)  # as if left over from a training step: an attack must leave them as they are
    return model, x, y, x.clone()


def _differ_message(name: str, expected: torch.Tensor, got: torch.Tensor, what: str) -> str:
    wrong = int(((expected - got).abs() > 1e-5).sum())
    return (f"{name} returned different images than expected ({what}): {wrong} of {expected.numel()} pixel values "
            f"differ, by up to {float((expected - got).abs().max()):.4f}; e.g. expected "
            f"{[round(v, 4) for v in expected.flatten()[:4].tolist()]}, got {[round(v, 4) for v in got.flatten()[:4].tolist()]}")


# --------------------------------------------------------------------------- FGSM

def check_fgsm_attack(fgsm_attack: Callable) -> None:
    """FGSM: x + eps * sign(grad of the loss w.r.t. x), clamped to [0, 1]; own code, eval mode kept,
    parameter grads and x untouched, eps honoured (including eps = 0)."""
    for eps in (0.1, 0.03):
        model, x, y, x_before = _setup()
        what = f"eps={eps}, a batch of {len(x)} images"
        result = _check_contract("fgsm_attack", _call(fgsm_attack, model, x, y, eps, what=what), x_before, eps,
                                 what)
        expected = reference_pgd(model, x_before, y, eps, eps, 1)
        if _close(result, expected):
            continue
        if _close(result, reference_pgd(model, x_before, y, eps, eps, 1, sign=-1.0)):
            mistake, hint = "steps against the gradient", (
                "It moved each pixel AGAINST the gradient, which lowers the loss: FGSM adds "
                "+eps * sign(grad) to increase the loss of the true class")
        elif _close(result, reference_pgd(model, x_before, y, eps, eps, 1, use_sign=False)):
            mistake, hint = "the gradient, not its sign", (
                "It adds eps * grad; FGSM adds eps * grad.sign(), the steepest step in the L-inf ball")
        elif _close(result, reference_pgd(model, x_before, y, eps, eps, 1, train_mode=True)):
            mistake, hint = "the gradient in train mode", (
                "It took the gradient in train mode (BatchNorm used the batch's statistics); keep the model "
                "in the mode it was given (eval)")
        elif _close(result, x_before):
            mistake, hint = "the images unchanged", "It returned the images unchanged"
        else:
            mistake, hint = "other", (
                "Expected clamp(x + eps * sign(d loss / dx), 0, 1) with the cross-entropy loss of the labels y")
        raise Mistake(mistake, _differ_message("fgsm_attack", expected, result, what) + ". " + hint)
    model, x, y, x_before = _setup(seed=1)
    result = _call(fgsm_attack, model, x, y, 0.0, what="eps=0")
    assert torch.allclose(result.detach().float(), x_before), "with eps=0 fgsm_attack should return the images unchanged"


# --------------------------------------------------------------------------- PGD

def _pgd_hint(model, x, y, eps, alpha, steps, result, *, targeted: bool) -> tuple[str, str]:
    """(the mistake's name, what to tell the student) for a PGD answer that differs."""
    right, wrong = (-1.0, 1.0) if targeted else (1.0, -1.0)
    if _close(result, reference_pgd(model, x, y, eps, alpha, steps, sign=wrong)):
        return ("ascends the target's loss", "It ascends the target class's loss: a targeted attack DESCENDS the loss "
                "of the target, x_adv = x_adv - alpha * sign(grad)") if targeted else (
            "steps against the gradient", "It moved against the gradient, which lowers the loss: each PGD step adds "
            "+alpha * sign(grad)")
    if _close(result, reference_pgd(model, x, y, eps, alpha, steps, sign=right, project="end")):
        return "projects only at the end", (
            "It projects only once, after the last step; project onto the eps-ball after EVERY step")
    if _close(result, reference_pgd(model, x, y, eps, alpha, steps, sign=right, train_mode=True)):
        return "the gradient in train mode", (
            "It took the gradients in train mode; keep the model in the mode it was given (eval)")
    if _close(result, reference_pgd(model, x, y, eps, alpha, steps, sign=right, use_sign=False)):
        return "the gradient, not its sign", "It steps along alpha * grad; PGD (L-inf) steps along alpha * grad.sign()"
    if _close(result, reference_pgd(model, x, y, eps, eps, 1, sign=right)):
        return "one step of eps (FGSM)", (
            "It takes a single step of size eps (that is FGSM); PGD takes `steps` steps of size alpha")
    if _close(result, reference_pgd(model, x, y, eps, alpha, 1, sign=right)):
        return "one step", "It takes only one step of size alpha; take `steps` steps"
    return "other", (
        "Expected `steps` steps of x_adv = clamp(Proj_eps(x_adv + alpha * sign(grad)), 0, 1), starting at x "
                     + ("and descending the target class's cross-entropy" if targeted else "when random_start=False"))


def _check_deterministic_pgd(attack: Callable, name: str, *, targeted: bool, seed: int, eps: float, alpha: float,
                             steps: int, **kwargs) -> None:
    model, x, y, x_before = _setup(seed)
    labels = (y + 1) % NUM_CLASSES if targeted else y
    what = f"eps={eps}, alpha={alpha}, steps={steps}" + (", random_start=False" if not targeted else "")
    result = _check_contract(name, _call(attack, model, x, labels, eps, alpha, steps, what=what, **kwargs),
                             x_before, eps, what)
    expected = reference_pgd(model, x_before, labels, eps, alpha, steps, sign=-1.0 if targeted else 1.0)
    if not _close(result, expected):
        mistake, hint = _pgd_hint(model, x_before, labels, eps, alpha, steps, result, targeted=targeted)
        raise Mistake(mistake, _differ_message(name, expected, result, what) + ". " + hint)


def _start_statistics(result: torch.Tensor, x: torch.Tensor, eps: float) -> tuple[float, float, int]:
    """Mean |delta| / eps and mean delta / eps over the pixels at least eps away from 0 and 1
    (where clamping to [0, 1] cannot bias the perturbation), and their number."""
    inside = (x >= eps) & (x <= 1 - eps)
    delta = (result - x)[inside]
    return float(delta.abs().mean() / eps), float(delta.mean() / eps), int(inside.sum())


def check_pgd_attack(pgd_attack: Callable) -> None:
    """L-inf PGD: without random start, exactly `steps` projected sign steps from x; with it (the
    default), a start drawn uniformly from the eps-ball; own code, contract as for FGSM."""
    _check_deterministic_pgd(pgd_attack, "pgd_attack", targeted=False, seed=0, eps=0.1, alpha=0.03, steps=7,
                             random_start=False)
    _check_deterministic_pgd(pgd_attack, "pgd_attack", targeted=False, seed=2, eps=0.05, alpha=0.02, steps=4,
                             random_start=False)

    # Random start: with a tiny step, the result is the start itself (projected): uniform in [-eps, eps].
    eps, alpha = 0.2, 1e-4
    results = []
    for seed in (0, 1):
        model, x, y, x_before = _setup()
        what = f"eps={eps}, alpha={alpha}, steps=1, random_start=True"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1000 + seed)
            result = _call(pgd_attack, model, x, y, eps, alpha, 1, random_start=True, what=what)
        results.append(_check_contract("pgd_attack", result, x_before, eps, what))
    mean_abs, mean, n = _start_statistics(results[0], x_before, eps)
    assert mean_abs > 0.01, (
        f"with random_start=True and a tiny step (alpha={alpha}), pgd_attack stayed within {mean_abs * eps:.5f} of x "
        "on average: the random start is missing (or the steps start from x instead of from it). Start at "
        "x + a perturbation drawn uniformly from [-eps, eps] per pixel (torch.empty_like(x).uniform_(-eps, eps))")
    assert 0.42 <= mean_abs <= 0.58 and abs(mean) <= 0.08, (
        f"with random_start=True the start should be uniform in the eps-ball, [-eps, eps] per pixel: on {n} pixels "
        f"away from 0 and 1, expected mean |delta| of about eps/2 = {eps / 2:.3f} and mean delta about 0, got "
        f"{mean_abs * eps:.3f} and {mean * eps:.3f}. Use torch.empty_like(x).uniform_(-eps, eps) "
        "(torch.rand gives [0, 1), torch.randn a Gaussian)")
    assert not torch.equal(results[0], results[1]), (
        "pgd_attack with random_start=True returned the same images for two different random seeds; draw the "
        "start from torch's random number generator")
    default = inspect.signature(pgd_attack).parameters.get("random_start")
    assert default is not None and default.default is True, (
        "pgd_attack should take random_start=True as its default (Madry et al. start at a random point)")


def check_targeted_pgd_attack(targeted_pgd_attack: Callable) -> None:
    """Targeted L-inf PGD from x (no random start): descend the cross-entropy of the target class."""
    _check_deterministic_pgd(targeted_pgd_attack, "targeted_pgd_attack", targeted=True, seed=0, eps=0.1, alpha=0.03,
                             steps=7)
    _check_deterministic_pgd(targeted_pgd_attack, "targeted_pgd_attack", targeted=True, seed=3, eps=0.2, alpha=0.05,
                             steps=5)
    model, x, y, x_before = _setup(seed=4)
    target = (y + 2) % NUM_CLASSES
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        first = _call(targeted_pgd_attack, model, x, target, 0.1, 0.03, 3, what="a repeated call")
        torch.manual_seed(6)
        second = _call(targeted_pgd_attack, model, x, target, 0.1, 0.03, 3, what="a repeated call")
    assert torch.equal(first, second), (
        "targeted_pgd_attack gave different images for the same input: it should start at x itself (no random "
        "start), so that it is deterministic")
    _check_every_step(targeted_pgd_attack, "targeted_pgd_attack", seed=7, alpha=0.03, steps=4, eps=0.1)


def _check_every_step(attack: Callable, name: str, *, seed: int, alpha: float, steps: int, eps: float | None = None,
                      mask: torch.Tensor | None = None) -> None:
    """Targets the model already predicts: the attack still takes each of its `steps` steps (one that
    stops as soon as every image is classified as its target returns x, or x after one step)."""
    model, x, _, x_before = _setup(seed)
    with torch.no_grad():
        target = model(x).argmax(1)
    what = f"targets the model already predicts, alpha={alpha}, steps={steps}"
    if mask is None:
        result = _check_contract(name, _call(attack, model, x, target, eps, alpha, steps, what=what), x_before, eps,
                                 what)
        expected, one = (reference_pgd(model, x_before, target, eps, alpha, n, sign=-1.0) for n in (steps, 1))
    else:
        result = _check_contract(name, _call(attack, model, x, target, mask, alpha, steps, what=what), x_before, 1.0,
                                 what)
        expected, one = (reference_masked(model, x_before, target, mask, alpha, n) for n in (steps, 1))
    if _close(result, expected):
        return
    if _close(result, x_before) or _close(result, one):
        mistake, hint = "stops early", (
            "It stopped early, once every image was classified as its target; take each of the `steps` steps "
            "(the exercise's attack does not look at the predictions)")
    else:
        mistake, hint = "other", f"Expected {steps} steps descending the target class's cross-entropy"
    raise Mistake(mistake, _differ_message(name, expected, result, what) + ". " + hint)


# --------------------------------------------------------------------------- masked attack

def check_masks(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two masks for 8x8 images: one (1, 1, 8, 8) region (a 3x4 block and a stray pixel) shared by
    every image, and a (n, 1, 8, 8) mask that differs per image (each image's own sticker)."""
    shared = torch.zeros(1, 1, 8, 8)
    shared[..., 1:4, 2:6] = 1
    shared[..., 6, 1] = 1
    g = torch.Generator().manual_seed(seed)
    per_image = torch.zeros(n, 1, 8, 8)
    for i, (top, left) in enumerate(torch.randint(0, 5, (n, 2), generator=g).tolist()):
        per_image[i, :, top:top + 4, left:left + 4] = 1
    return {"(1, 1, 8, 8)": shared, f"({n}, 1, 8, 8)": per_image}


def reference_masked(model, x, target, mask, alpha, steps, *, sign=-1.0, mask_at="each", clamp_at="each",
                     train_mode=False, use_sign=True) -> torch.Tensor:
    """The masked targeted attack from x, written out; the keyword arguments produce the usual
    mistakes: sign=+1 (ascend the target's loss), mask_at="end" (unmasked steps, the mask applied
    once at the end) or "inverted" (1 - mask), clamp_at="end" | "none", train_mode=True, use_sign=False."""
    x = x.detach()
    region = 1 - mask if mask_at == "inverted" else mask
    x_adv = x.clone()
    for _ in range(steps):
        grad = _input_gradient(model, x_adv, target, train_mode=train_mode)
        step = sign * alpha * (grad.sign() if use_sign else grad)
        x_adv = x_adv + (step if mask_at == "end" else region * step)
        if clamp_at == "each":
            x_adv = x_adv.clamp(0, 1)
    if mask_at == "end":
        x_adv = x + region * (x_adv - x)
    if clamp_at == "end":
        x_adv = x_adv.clamp(0, 1)
    return x_adv


def _masked_hint(model, x, target, mask, alpha, steps, result) -> tuple[str, str]:
    """(the mistake's name, what to tell the student) for a masked attack that differs."""
    args = (model, x, target, mask, alpha, steps)
    mistakes = [
        (dict(sign=1.0), "ascends the target's loss",
         "It ascends the target class's loss: like targeted PGD, the masked attack DESCENDS the "
                         "loss of the target, x_adv - alpha * mask * sign(grad)"),
        (dict(mask_at="end"), "the mask only at the end",
         "It takes unmasked steps and applies the mask only at the end; multiply every step by "
                              "the mask, so that the gradient is always taken at an image that differs from x only "
                              "inside the mask"),
        (dict(mask_at="inverted"), "the mask inverted",
         "It changes the pixels where the mask is 0; the attack may change only the pixels "
                                   "where the mask is 1"),
        (dict(clamp_at="end"), "clamps only at the end",
         "It clamps to [0, 1] only once, at the end; clamp after every step"),
        (dict(train_mode=True), "the gradient in train mode",
         "It took the gradients in train mode; keep the model in the mode it was given (eval)"),
        (dict(use_sign=False), "the gradient, not its sign",
         "It steps along alpha * mask * grad; step along alpha * mask * grad.sign()"),
    ]
    for kwargs, mistake, hint in mistakes:
        if _close(result, reference_masked(*args, **kwargs)):
            return mistake, hint
    if _close(result, reference_masked(model, x, target, mask, alpha, 1)):
        return "one step", "It takes only one step of size alpha; take `steps` steps"
    return "other", (
        "Expected `steps` steps of x_adv = clamp(x_adv - alpha * mask * sign(grad), 0, 1) from x, with grad the "
            "gradient of the cross-entropy of the target labels; no eps-ball")


def check_masked_attack(masked_attack: Callable) -> None:
    """The targeted attack confined to a mask: `steps` descending sign steps of size alpha on the
    pixels where the mask is 1, each clamped to [0, 1], from x; no eps-ball; pixels outside the
    mask exactly as in x; masks shared by the batch and per image; contract as for FGSM."""
    name = "masked_attack"
    model, x, y, _ = _setup(seed=6)
    mask = check_masks(len(x))["(1, 1, 8, 8)"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        first = _call(masked_attack, model, x, y, mask, 0.05, 3, what="a repeated call")
        torch.manual_seed(6)
        second = _call(masked_attack, model, x, y, mask, 0.05, 3, what="a repeated call")
    for result in (first, second):
        assert isinstance(result, torch.Tensor), f"{name} should return a tensor of images, got {type(result).__name__}"
    assert torch.equal(first, second), (
        f"{name} gave different images for the same input: it should start at x itself (no random start)")
    for seed, alpha, steps in ((0, 0.1, 6), (5, 0.04, 4)):
        model, x, y, x_before = _setup(seed)
        target = (y + 1) % NUM_CLASSES
        for shape, mask in check_masks(len(x), seed).items():
            mask_before = mask.clone()
            what = f"a mask of shape {shape}, alpha={alpha}, steps={steps}"
            result = _check_contract(name, _call(masked_attack, model, x, target, mask, alpha, steps, what=what),
                                     x_before, eps=1.0, what=what)
            assert torch.equal(mask, mask_before), f"{name} changed the mask in place ({what})"
            outside = (mask.expand_as(x) == 0)
            moved = int((result != x_before)[outside].sum())
            assert moved == 0, (
                f"{name} changed {moved} pixel values outside the mask ({what}); only the pixels where the mask is 1 "
                "may change: multiply each step by the mask, x_adv - alpha * mask * grad.sign()")
            expected = reference_masked(model, x_before, target, mask, alpha, steps)
            largest = float((result - x_before).abs().max())
            assert largest > alpha * 1.5 or _close(result, expected), (
                f"{name} moved no pixel by more than {largest:.4f} ({what}): inside the mask the change is not "
                f"bounded by an eps-ball; {steps} steps of {alpha} may move a pixel by up to {steps * alpha:.2f}")
            if not _close(result, expected):
                mistake, hint = _masked_hint(model, x_before, target, mask, alpha, steps, result)
                raise Mistake(mistake, _differ_message(name, expected, result, what) + ". " + hint)
    _check_every_step(masked_attack, name, seed=7, alpha=0.05, steps=4, mask=check_masks(12)["(1, 1, 8, 8)"])


# --------------------------------------------------------------------------- a linear model's worst case

def _worst_case_variants(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                         eps: float) -> dict[str, torch.Tensor]:
    """The right margins ("right") and what the usual mistakes compute instead, written pair by pair
    (a loop over the rival classes, no broadcasting) so that the reference shares no code with the
    vectorized answer the exercise asks for."""
    flat = x.double().flatten(1)
    w, b = weight.double(), bias.double()
    n, k = len(flat), len(w)
    out = {name: torch.full((n,), float("inf"), dtype=torch.float64) for name in (
        "right", "the norm of w_y alone", "the L2 norm", "the perturbation helps", "bias left out",
        "the mean over pixels, not the sum", "eps ignored")}
    own = torch.full((n,), float("inf"), dtype=torch.float64)
    largest = torch.full((n,), -float("inf"), dtype=torch.float64)
    for i in range(n):
        for j in range(k):
            v = w[y[i]] - w[j]
            clean = float(v @ flat[i] + b[y[i]] - b[j])
            own[i] = min(own[i], clean - eps * float(v.abs().sum()))
            if j == int(y[i]):
                continue
            values = {"right": clean - eps * float(v.abs().sum()),
                      "the norm of w_y alone": clean - eps * float(w[y[i]].abs().sum()),
                      "the L2 norm": clean - eps * float(v.norm()),
                      "the perturbation helps": clean + eps * float(v.abs().sum()),
                      "bias left out": float(v @ flat[i]) - eps * float(v.abs().sum()),
                      "the mean over pixels, not the sum": clean - eps * float(v.abs().mean()),
                      "eps ignored": clean}
            for name, value in values.items():
                out[name][i] = min(out[name][i], value)
            largest[i] = max(largest[i], values["right"])
    out["the true class counted as a rival"] = own
    out["the largest margin, not the smallest"] = largest
    return out


def worst_case_fixture(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear classifier of 3x4x4 images with NUM_CLASSES classes and non-zero biases, and 16 images
    in [0, 1] with labels, some right with a wide margin, some wrong."""
    g = torch.Generator().manual_seed(100 + seed)
    weight = torch.randn(NUM_CLASSES, 48, generator=g) / 4
    bias = torch.randn(NUM_CLASSES, generator=g)
    x = torch.rand(16, 3, 4, 4, generator=g)
    with torch.no_grad():
        y = (x.flatten(1) @ weight.T + bias).argmax(1)
    y[::5] = (y[::5] + 1) % NUM_CLASSES  # a few images the model gets wrong: their margin is negative already
    return weight, bias, x, y


def check_linear_worst_case_margin(linear_worst_case_margin: Callable) -> None:
    """The smallest margin over the rival classes after the worst L-inf perturbation of radius eps,
    without the [0, 1] box: min_{j != y} (w_y - w_j)ᵀx + b_y - b_j - eps * ||w_y - w_j||_1, for every
    image; a float tensor of shape (N,); inputs untouched; own code."""
    from .. import linearity

    name = "linear_worst_case_margin"
    for seed, eps in ((0, 0.05), (1, 0.2)):
        weight, bias, x, y = worst_case_fixture(seed)
        what = f"a linear model of {NUM_CLASSES} classes on 16 images of 3x4x4, eps={eps}"
        result = call_student(linear_worst_case_margin, weight, bias, x, y, eps, what=what,
                              forbid=(linearity.linear_worst_case_accuracy,),
                              reason="compute the margins yourself; linear_worst_case_accuracy is the reference")
        assert isinstance(result, torch.Tensor), f"{name} should return a tensor of margins, got {type(result).__name__}"
        assert tuple(result.shape) == (len(x),), \
            f"expected one margin per image, shape ({len(x)},), got {tuple(result.shape)} ({what})"
        assert result.is_floating_point(), f"the margins should be floats, got {result.dtype}"
        variants = _worst_case_variants(weight, bias, x, y, eps)
        got = result.detach().double()
        if not torch.allclose(got, variants["right"], atol=1e-4, rtol=1e-4):
            matched = [m for m, v in variants.items() if m != "right" and torch.allclose(got, v, atol=1e-4, rtol=1e-4)]
            hints = {
                "the norm of w_y alone": "the margin against class j moves with w_y - w_j, so its worst case is "
                                         "eps * ||w_y - w_j||_1, not eps * ||w_y||_1",
                "the L2 norm": "an L-inf budget lets every pixel move by eps: the worst change of vᵀx is eps * ||v||_1 "
                               "(the sum of |v_i|); eps * ||v||_2 is what a random corner does, roughly",
                "the perturbation helps": "the attacker lowers the margin: subtract eps * ||w_y - w_j||_1",
                "bias left out": "the margin is z_y - z_j with the biases: (w_y - w_j)ᵀx + b_y - b_j",
                "the mean over pixels, not the sum": "eps * ||v||_1 is a sum over every pixel, not a mean",
                "eps ignored": "the margins are the clean ones; subtract what the eps-ball can take away",
                "the true class counted as a rival": "leave out j = y: its margin z_y - z_y is 0 whatever eps is",
                "the largest margin, not the smallest": "an image is safe only if it beats EVERY rival class: take "
                                                        "the smallest margin over j != y",
            }
            expected = ", ".join(f"{v:.4f}" for v in variants["right"][:4].tolist())
            came = ", ".join(f"{v:.4f}" for v in got[:4].tolist())
            message = f"{name} gave the wrong margins on {what}: expected [{expected}, ...], got [{came}, ...]"
            if matched:
                raise Mistake(matched[0], f"{message}. {hints[matched[0]]}")
            raise Mistake("other", f"{message}. Expected min over j != y of (w_y - w_j)ᵀx + b_y - b_j "
                                   "- eps * ||w_y - w_j||_1, with x flattened")
