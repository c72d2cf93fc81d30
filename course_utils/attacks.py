"""Adversarial examples: FGSM, PGD (L-inf and L2), robust accuracy, and training-time transforms.

Every attack takes images in [0, 1] and a model that takes [0, 1] images (wrap a model that
expects normalized input in `course_utils.models.Normalized`). Every attack returns images that
are detached, float32, in [0, 1] and inside the eps-ball around `x`; it never changes `x`,
leaves the model's train/eval mode (of every submodule) as it found it, and leaves every
parameter's `.grad` untouched: the gradient is taken with `torch.autograd.grad` with respect
to the input only, with the model in eval mode (BatchNorm uses its running statistics, so
each image's attack does not depend on the rest of the batch).

With `random_start=False`, `fgsm` and `pgd` compute exactly what torchattacks 3.3.0's `FGSM`,
`PGD` and `PGDL2` compute, in the same floating-point operations (tests/test_attacks.py checks
this): PGD amplifies any rounding difference in one step into visibly different images a few
steps later, so "the same up to rounding" is only stable when the operations are the same.

References:
    Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015 (FGSM).
    Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
        Adversarial Attacks", ICLR 2018 (arXiv 2017) (PGD, adversarial training).
    Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020
        (FGSM with a random start for adversarial training).
    Sharif, Bhagavatula, Bauer & Reiter, "Accessorize to a Crime: Real and Stealthy Attacks on
        State-of-the-Art Face Recognition", CCS 2016 (eyeglass frames: a perturbation confined to
        a mask, unbounded inside it).
    Brown, Mane, Roy, Abadi & Gilmer, "Adversarial Patch", 2017 (a sticker: a masked attack).
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .runtime import use_non_blocking

__all__ = [
    "fgsm", "pgd", "masked_attack", "square_mask", "eyeglasses_mask", "robust_accuracy", "accuracy_vs_eps",
    "AdversarialTransform", "GaussianNoiseTransform",
]

NORMS = ("linf", "l2")
Attack = Callable[..., torch.Tensor]


# --------------------------------------------------------------------------------------
# What every attack needs, written once
# --------------------------------------------------------------------------------------

@contextlib.contextmanager
def _model_mode(model: nn.Module, *, eval_mode: bool = True) -> Iterator[None]:
    """Run the block with `model` in eval mode (if `eval_mode`), then restore the train/eval
    flag of every submodule as it was (a model may mix modes, e.g. a frozen BatchNorm encoder)."""
    modes = [(m, m.training) for m in model.modules()]
    if eval_mode:
        model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _check_number(name: str, value, *, positive: bool, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}; {hint}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}; {hint}")
    return float(value)


def _check_params(eps, *, alpha=None, steps=None, norm="linf") -> None:
    _check_number("eps", eps, positive=False, hint="eps is the radius of the perturbation ball, e.g. eps=8/255")
    if alpha is not None:
        _check_number("alpha", alpha, positive=True, hint="alpha is the step size, e.g. alpha=2.5 * eps / steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}; e.g. steps=10")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}; use norm='linf' or norm='l2'")


def _check_images(x) -> torch.Tensor:
    """x as a detached float32 batch, after checking that it holds images in [0, 1]."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point image tensor with values in [0, 1], got "
                         f"{getattr(x, 'dtype', type(x).__name__)}; convert uint8 images with x.float() / 255")
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch (N, ...), e.g. (N, C, H, W), got shape {tuple(x.shape)}; "
                         "add a batch dimension with x[None]")
    lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()  # one device sync
    if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise ValueError(f"x must hold images in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; pass un-normalized "
                         "images and wrap a model that expects normalized input in "
                         "course_utils.models.Normalized(model, mean, std)")
    x = x.detach().float()
    return x.clone() if x.is_inference() else x  # an inference tensor cannot take part in autograd


def _check_attack(x, y, eps, *, alpha=None, steps=None, norm="linf") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate an attack's arguments; return x as detached float32 and y on x's device."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError("attacks need gradients, which torch.inference_mode() disables; call the attack "
                           "outside the inference_mode block (torch.no_grad() is fine)")
    _check_params(eps, alpha=alpha, steps=steps, norm=norm)
    x = _check_images(x)
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.shape != (len(x),):
        raise ValueError(f"y must be an integer class tensor of shape ({len(x)},), one label per image, got "
                         f"{getattr(y, 'dtype', type(y).__name__)} of shape {tuple(getattr(y, 'shape', ()))}; "
                         "pass torch.as_tensor(labels, dtype=torch.long)")
    return x, y.to(x.device)


def _loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """The gradient, with respect to the input only, of the objective the attack ascends:
    the cross-entropy loss of the true class y, or minus the loss of the target class y
    when `targeted`. Mean over the batch as torchattacks does: sign and direction per image
    do not depend on that scale. Parameter `.grad`s are not touched."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x).float(), y)
        (grad,) = torch.autograd.grad(-loss if targeted else loss, x)
    return grad


def _random(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None, kind: str) -> torch.Tensor:
    """Uniform [0, 1) or standard normal noise, drawn from `generator` on its own device (so a
    CPU generator gives the same start for CUDA tensors) and moved to `like`'s device."""
    device = generator.device if generator is not None else like.device
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(shape, generator=generator, device=device, dtype=torch.float32).to(like.device)


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-image value (N,) shaped to broadcast over x (N, ...)."""
    return v.view(-1, *([1] * (x.ndim - 1)))


class _LinfBall:
    """The L-inf ball: steepest ascent is the gradient's sign; projection clamps each pixel."""

    @staticmethod
    def direction(grad: torch.Tensor) -> torch.Tensor:
        return grad.sign_()  # in place: the gradient is the attack's own temporary

    @staticmethod
    def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
        delta = (x_adv - x).clamp_(min=-eps, max=eps)
        return (x + delta).clamp_(min=0, max=1)

    @staticmethod
    def sample(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        """Uniform in the cube [-eps, eps]^d."""
        return (2 * _random(x.shape, x, generator, "uniform") - 1) * eps


class _L2Ball:
    """The L2 ball: steepest ascent is the normalized gradient; projection rescales
    perturbations longer than eps back onto the sphere. The gradient and the differences
    are the attack's own temporaries, so they are updated in place."""

    @staticmethod
    def norm(v: torch.Tensor) -> torch.Tensor:
        return _per_sample(torch.linalg.vector_norm(v.flatten(1), dim=1), v)

    @staticmethod
    def direction(grad: torch.Tensor) -> torch.Tensor:
        # g / (||g|| + 1e-10), as torchattacks writes it: the 1e-10 guards against a zero gradient
        return grad.div_(_L2Ball.norm(grad) + 1e-10)

    @staticmethod
    def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
        delta = x_adv - x
        factor = (eps / _L2Ball.norm(delta).clamp_min(1e-12)).clamp_(max=1)  # torchattacks: min(eps/norm, 1)
        return (x + delta.mul_(factor)).clamp_(min=0, max=1)

    @staticmethod
    def sample(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        """Uniform in the ball (by volume): a Gaussian direction, radius eps * U^(1/d)."""
        direction = _L2Ball.direction(_random(x.shape, x, generator, "normal"))
        radius = _random((len(x),), x, generator, "uniform") ** (1 / x[0].numel()) * eps
        return direction * _per_sample(radius, x)


_BALLS = {"linf": _LinfBall, "l2": _L2Ball}


# --------------------------------------------------------------------------------------
# The attacks
# --------------------------------------------------------------------------------------

def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, targeted: bool = False) -> torch.Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015): one step of size eps along the
    sign of the loss gradient, x' = clip_[0,1](x + eps * sign(grad_x L(f(x), y))).

    With `targeted=True`, `y` holds the target classes and the step descends their loss.
    """
    x, y = _check_attack(x, y, eps)
    with _model_mode(model):
        grad = _loss_gradient(model, x, y, targeted)
        return (x + eps * grad.sign()).clamp_(min=0, max=1)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, *,
        norm: str = "linf", random_start: bool = True, targeted: bool = False,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected Gradient Descent (Madry et al. 2017): `steps` steps of size `alpha` in the
    steepest-ascent direction of the loss, each projected back onto the eps-ball around x and
    clipped to the image range [0, 1]:

        x_{t+1} = clip_[0,1](Proj_{B_eps(x)}(x_t + alpha * sign(grad)))          (norm="linf")
        x_{t+1} = clip_[0,1](Proj_{B_eps(x)}(x_t + alpha * grad / ||grad||_2))   (norm="l2")

    `random_start` starts at a point drawn uniformly from the eps-ball (from `generator`, for
    reproducibility; the global RNG when None), as Madry et al. do; without it x_0 = x, which
    is exactly torchattacks' PGD / PGDL2 with random_start=False. With `targeted=True`, `y`
    holds the target classes and the steps descend their loss.
    """
    x, y = _check_attack(x, y, eps, alpha=alpha, steps=steps, norm=norm)
    with _model_mode(model):
        return _pgd(model, x, y, eps, alpha, steps, norm, random_start, targeted, generator)


def _pgd(model, x, y, eps, alpha, steps, norm, random_start, targeted, generator) -> torch.Tensor:
    """PGD's update rule on checked arguments, in whatever mode the model is in."""
    ball = _BALLS[norm]
    x_adv = ball.project(x, x + ball.sample(x, eps, generator), eps) if random_start else x
    for _ in range(steps):
        grad = _loss_gradient(model, x_adv, y, targeted)
        x_adv = ball.project(x, x_adv + alpha * ball.direction(grad), eps)
    return x_adv


def masked_attack(model: nn.Module, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, alpha: float,
                  steps: int) -> torch.Tensor:
    """Targeted attack confined to a mask (Sharif et al. 2016's eyeglass frames, Brown et al.
    2017's patch): starting at x, `steps` steps that descend the cross-entropy of `target`,
    each moving only the pixels where `mask` is 1, by alpha * sign(grad), then clamped to
    [0, 1]. Inside the mask the change is unbounded (no eps-ball); outside it the image is
    exactly x:

        x_{t+1} = clip_[0,1](x_t - alpha * mask * sign(grad_x L(f(x_t), target)))

    `mask` holds 0s and 1s and broadcasts to x, e.g. (1, 1, H, W) from `square_mask`.
    """
    x, target = _check_attack(x, target, 0.0, alpha=alpha, steps=steps)
    mask = _check_mask(mask, x)
    with _model_mode(model):
        x_adv = x
        for _ in range(steps):
            grad = _loss_gradient(model, x_adv, target, True)
            x_adv = (x_adv + alpha * mask * grad.sign_()).clamp_(min=0, max=1)
        return x_adv


def _check_mask(mask, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a tensor of 0s and 1s, got {type(mask).__name__}; "
                         "make one with square_mask(size, side) or eyeglasses_mask(size)")
    mask = mask.detach().to(x.device, torch.float32)
    try:
        torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the images' shape "
                         f"{tuple(x.shape)}; use (1, 1, H, W) for one mask for every image") from None
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0s and 1s (1 where the attack may change the image)")
    return mask


def square_mask(size: int, side: int, *, top: int | None = None, left: int | None = None) -> torch.Tensor:
    """A (1, 1, size, size) mask with a `side` x `side` square of ones (a sticker), at (top, left),
    centred by default."""
    if not 0 < side <= size:
        raise ValueError(f"side must be in 1..{size}, got {side}")
    top = (size - side) // 2 if top is None else top
    left = (size - side) // 2 if left is None else left
    if not (0 <= top <= size - side and 0 <= left <= size - side):
        raise ValueError(f"a {side}x{side} square at ({top}, {left}) does not fit in {size}x{size}")
    mask = torch.zeros(1, 1, size, size)
    mask[..., top:top + side, left:left + side] = 1
    return mask


def eyeglasses_mask(size: int, *, thickness: int | None = None) -> torch.Tensor:
    """A (1, 1, size, size) mask shaped like a pair of eyeglass frames (Sharif et al. 2016): two
    square rims side by side in the upper half of the image, joined by a bridge, `thickness`
    pixels wide (size // 16 by default, at least 1). On a face they sit around the eyes; on a
    digit they cover part of the strokes, as glasses cover part of a face."""
    t = max(1, size // 16) if thickness is None else thickness
    lens = size * 5 // 16            # each rim's outer side
    top, gap = size * 3 // 16, size // 8
    left = (size - 2 * lens - gap) // 2
    if t < 1 or 2 * t >= lens:
        raise ValueError(f"thickness must be in 1..{(lens - 1) // 2} for size {size}, got {t}")
    mask = torch.zeros(1, 1, size, size)
    for x0 in (left, left + lens + gap):
        mask[..., top:top + lens, x0:x0 + lens] = 1
        mask[..., top + t:top + lens - t, x0 + t:x0 + lens - t] = 0
    bridge = top + lens // 3
    mask[..., bridge:bridge + t, left + lens:left + lens + gap] = 1
    return mask


# --------------------------------------------------------------------------------------
# Evaluation under attack
# --------------------------------------------------------------------------------------

def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def _batches(loader: Iterable, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for batch in loader:
        try:
            x, y = batch
        except (TypeError, ValueError):
            raise ValueError("the loader must yield (images, labels) batches") from None
        non_blocking = use_non_blocking(device)
        yield x.to(device, non_blocking=non_blocking), torch.as_tensor(y).to(device, non_blocking=non_blocking)


def _accuracies(model: nn.Module, loader: Iterable, attacks: dict) -> dict:
    """One pass over `loader`: {key: accuracy of the model (eval mode) on make_adv(x, y)} for
    each (key, make_adv) in `attacks`; make_adv None means the clean images."""
    device = _model_device(model)
    correct = {key: torch.zeros((), dtype=torch.long, device=device) for key in attacks}
    seen = 0
    for x, y in _batches(loader, device):
        clean = None
        for key, make_adv in attacks.items():
            if make_adv is None:
                clean = _num_correct(model, x, y) if clean is None else clean
                correct[key] += clean
            else:
                correct[key] += _num_correct(model, make_adv(x, y), y)
        seen += len(y)
    if seen == 0:
        raise ValueError("the loader yielded no images")
    return {key: n.item() / seen for key, n in correct.items()}


def _num_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), _model_mode(model):
        return (model(x).argmax(1) == y).sum()


def robust_accuracy(model: nn.Module, loader: Iterable, attack: Attack, **attack_kwargs) -> float:
    """Accuracy of `model` (in eval mode) on `attack(model, x, y, **attack_kwargs)` for every
    (x, y) batch of `loader`, e.g. `robust_accuracy(model, loader, pgd, eps=8/255, alpha=2/255,
    steps=10)`. `attack` may be any function with that signature (a student's, or a wrapper
    around torchattacks). Batches are moved to the model's device; wrap the loader in
    `tqdm` for a progress bar. The model's mode is restored afterwards."""
    return _accuracies(model, loader, {"adv": lambda x, y: attack(model, x, y, **attack_kwargs)})["adv"]


def accuracy_vs_eps(model: nn.Module, loader: Iterable, attack: Attack, eps_values: Iterable[float],
                    **attack_kwargs) -> dict[float, float]:
    """Robust accuracy at each eps in `eps_values`, in one pass over `loader` (every eps on each
    batch): {eps: accuracy on attack(model, x, y, eps=eps, **attack_kwargs)}, in the order given.

    eps = 0 gives the clean accuracy (no attack is run for it: every attack returns x at eps 0).
    A keyword argument given as a function of eps is called with each eps, so a step size can
    scale with the radius: `accuracy_vs_eps(model, loader, pgd, [0, 0.1, 0.2], steps=10,
    alpha=lambda eps: 2.5 * eps / 10)`.
    """
    eps_values = list(eps_values)
    if not eps_values:
        raise ValueError("eps_values is empty; pass e.g. eps_values=[0, 2/255, 4/255, 8/255]")
    if "eps" in attack_kwargs:
        raise ValueError("pass the radii as eps_values, not as eps=...")
    for eps in eps_values:
        _check_number("each of eps_values", eps, positive=False, hint="they are radii of perturbation balls")

    def attack_at(eps):
        kwargs = {k: (v(eps) if callable(v) else v) for k, v in attack_kwargs.items()}
        return lambda x, y: attack(model, x, y, eps=eps, **kwargs)

    return _accuracies(model, loader, {eps: None if eps == 0 else attack_at(eps) for eps in eps_values})


# --------------------------------------------------------------------------------------
# Training-time batch transforms for course_utils.train.fit(..., batch_transform=...)
# --------------------------------------------------------------------------------------

class AdversarialTransform:
    """A `fit(batch_transform=...)` hook that replaces each training batch by adversarial
    examples of the model being trained: adversarial training (Madry et al. 2017).

    `method="fgsm_rs"`: FGSM with a random start (Wong et al. 2020, "Fast is better than
    free"): start uniformly in the eps-ball, one step of alpha = 1.25 * eps, project, clamp;
    one extra forward/backward per batch. `method="pgd"`: PGD with a random start, `steps`
    steps (default 7) of alpha = eps / 4 (default), Madry et al.'s CIFAR-10 setting
    (eps = 8/255, 7 steps of 2/255). `alpha` is the step size at full eps.

    `warmup_calls`: eps (and alpha with it) ramps linearly from 0 to `eps` over the first
    `warmup_calls` training calls (the k-th uses eps * k / warmup_calls), which keeps a fresh
    model from being overwhelmed at the start. Only calls made while the model is in train
    mode count and ramp: `fit` also passes the transform to its validation pass (model in
    eval mode), which then measures accuracy on adversarial examples at the full eps.

    Model mode: by default the examples are generated with the model in eval mode (BatchNorm
    uses running statistics, so the examples attack the network as it is evaluated, each
    image's example does not depend on the rest of the batch, and the attack's forward
    passes do not update the running statistics), as Madry's lab's `robustness` library
    (Engstrom et al. 2019) and torchattacks do. Madry's and Wong et al.'s reference code
    instead attack in train mode (batch statistics); `eval_mode=False` does that, leaving
    the model in whatever mode `fit` put it in. Either way the mode and parameter `.grad`s
    are restored; with `eval_mode=False` the BatchNorm running statistics are updated by
    the attack's forward passes, as in that code.
    """

    METHODS = ("fgsm_rs", "pgd")

    def __init__(self, model: nn.Module, eps: float, *, method: str = "fgsm_rs", alpha: float | None = None,
                 steps: int | None = None, norm: str = "linf", warmup_calls: int = 0, eval_mode: bool = True,
                 generator: torch.Generator | None = None):
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}")
        if method == "fgsm_rs" and steps not in (None, 1):
            raise ValueError(f"fgsm_rs takes exactly one step, got steps={steps!r}; use method='pgd' for more")
        if isinstance(warmup_calls, bool) or not isinstance(warmup_calls, numbers.Integral) or warmup_calls < 0:
            raise ValueError(f"warmup_calls must be an integer >= 0 (0: no warm-up), got {warmup_calls!r}")
        _check_number("eps", eps, positive=False, hint="eps is the radius of the perturbation ball, e.g. eps=8/255")
        steps = 1 if method == "fgsm_rs" else (7 if steps is None else steps)
        if alpha is None:
            alpha = 1.25 * eps if method == "fgsm_rs" else eps / 4
        # eps = 0 (clean training through the same hook) needs no step size
        _check_params(eps, alpha=alpha if eps > 0 else None, steps=steps, norm=norm)
        self.model, self.eps, self.alpha, self.steps, self.norm = model, float(eps), float(alpha), int(steps), norm
        self.method, self.warmup_calls, self.eval_mode, self.generator = method, int(warmup_calls), eval_mode, generator
        self.calls = 0  # training calls so far

    @property
    def current_eps(self) -> float:
        """The eps the next training call uses (the warm-up's current value)."""
        if self.warmup_calls == 0:
            return self.eps
        return self.eps * min(1.0, (self.calls + 1) / self.warmup_calls)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        training = self.model.training
        eps = self.current_eps if training else self.eps
        x, y = _check_attack(x, y, eps)
        if training:
            self.calls += 1
        if eps == 0:
            return x, y
        alpha = self.alpha * eps / self.eps
        with _model_mode(self.model, eval_mode=self.eval_mode):
            x_adv = _pgd(self.model, x, y, eps, alpha, self.steps, self.norm, True, False, self.generator)
        return x_adv, y

    def __repr__(self) -> str:
        return (f"AdversarialTransform(method={self.method!r}, eps={self.eps:.4g}, alpha={self.alpha:.4g}, "
                f"steps={self.steps}, norm={self.norm!r}, warmup_calls={self.warmup_calls}, "
                f"eval_mode={self.eval_mode})")


class GaussianNoiseTransform:
    """A `fit(batch_transform=...)` hook adding Gaussian noise of standard deviation `sigma`
    (independent per pixel) to each image, clamped to [0, 1]: the data-augmentation baseline
    that adversarial training is compared with. Random noise is not a worst-case
    perturbation; notebook 03 measures what training on it buys against attacks."""

    def __init__(self, sigma: float, *, generator: torch.Generator | None = None):
        self.sigma = _check_number("sigma", sigma, positive=False, hint="sigma is the noise's standard deviation")
        self.generator = generator

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_images(x)
        return torch.clamp(x + self.sigma * _random(x.shape, x, self.generator, "normal"), min=0, max=1), y

    def __repr__(self) -> str:
        return f"GaussianNoiseTransform(sigma={self.sigma:.4g})"
