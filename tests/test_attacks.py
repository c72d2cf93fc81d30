"""Tests of course_utils.attacks: the attack contract, agreement with torchattacks 3.3.0,
closed-form cases on a linear model, attacks that hurt a trained model, argument checking,
robust accuracy and the eps sweep against a hand loop, and the training-time transforms."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.attacks import (AdversarialTransform, GaussianNoiseTransform, accuracy_vs_eps, eyeglasses_mask,
                                  fgsm, masked_attack, pgd, robust_accuracy, square_mask)
from course_utils.data import load_digits, make_loader
from course_utils.models import SmallCNN
from course_utils.train import fit

EPS, ALPHA, STEPS = 0.03, 0.01, 5
EPS_L2, ALPHA_L2 = 0.5, 0.1
FLOAT_TOL = 1e-6

# name -> (attack(model, x, y) -> x_adv, norm of its ball, radius)
ATTACKS = {
    "fgsm": (lambda m, x, y: fgsm(m, x, y, EPS), "linf", EPS),
    "fgsm-targeted": (lambda m, x, y: fgsm(m, x, (y + 1) % 10, EPS, targeted=True), "linf", EPS),
    "pgd-linf": (lambda m, x, y: pgd(m, x, y, EPS, ALPHA, STEPS, random_start=False), "linf", EPS),
    "pgd-linf-random-start": (
        lambda m, x, y: pgd(m, x, y, EPS, ALPHA, STEPS, generator=torch.Generator().manual_seed(1)), "linf", EPS),
    "pgd-linf-targeted": (
        lambda m, x, y: pgd(m, x, (y + 1) % 10, EPS, ALPHA, STEPS, random_start=False, targeted=True), "linf", EPS),
    "pgd-l2": (lambda m, x, y: pgd(m, x, y, EPS_L2, ALPHA_L2, STEPS, norm="l2", random_start=False), "l2", EPS_L2),
    "pgd-l2-random-start": (
        lambda m, x, y: pgd(m, x, y, EPS_L2, ALPHA_L2, STEPS, norm="l2", generator=torch.Generator().manual_seed(1)),
        "l2", EPS_L2),
    "pgd-l2-targeted": (
        lambda m, x, y: pgd(m, x, (y + 1) % 10, EPS_L2, ALPHA_L2, STEPS, norm="l2", random_start=False,
                            targeted=True), "l2", EPS_L2),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest, and fair to a shared 2-core CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(width=8, hidden=32).eval()


@pytest.fixture
def model() -> SmallCNN:
    return small_model()


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """16 test digits, 3x32x32 in [0, 1] (many pixels exactly 0 or near 1, so clamping matters)."""
    return load_digits("test")[:16]


def ball_distance(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


def assert_in_ball(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert x_adv.min() >= 0 and x_adv.max() <= 1, "adversarial images left [0, 1]"
    dist = ball_distance(x_adv, x, norm)
    assert (dist <= eps * (1 + 1e-5) + FLOAT_TOL).all(), f"outside the {norm} ball of radius {eps}: {dist.max()}"


# ---------------------------------------------------------------------------------------------
# The contract
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ATTACKS)
def test_attack_returns_detached_images_in_range_and_ball_and_leaves_x_alone(name, model, digits):
    attack, norm, eps = ATTACKS[name]
    x, y = digits
    x_before = x.clone()
    x_adv = attack(model, x, y)
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert torch.equal(x, x_before), "the attack changed its input x"
    assert_in_ball(x_adv, x, norm, eps)
    assert (x_adv != x).any(), "the attack did not move the images at all"


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_accepts_an_input_that_requires_grad(name, model, digits):
    attack, norm, eps = ATTACKS[name]
    x = digits[0].clone().requires_grad_(True)
    x_adv = attack(model, x, digits[1])
    assert not x_adv.requires_grad and x.grad is None
    assert_in_ball(x_adv, x.detach(), norm, eps)


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_attack_restores_every_module_mode(name, mode, model, digits):
    model.train(mode == "train")
    if mode == "mixed":  # e.g. a frozen encoder under a training head
        model.encoder.eval()
        model.classifier.train()
    before = [m.training for m in model.modules()]
    seen = []
    model.encoder[0][0][1].register_forward_pre_hook(lambda module, args: seen.append(module.training))
    ATTACKS[name][0](model, *digits)
    assert [m.training for m in model.modules()] == before
    assert seen and not any(seen), "the attack must run the model in eval mode (BatchNorm on running statistics)"


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_leaves_parameter_grads_and_buffers_untouched(name, model, digits):
    model.train()
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = None if i % 3 == 0 else torch.randn_like(p)
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    buffers = [b.clone() for b in model.buffers()]
    ATTACKS[name][0](model, *digits)
    for p, g in zip(params, grads):
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers)), "BatchNorm statistics changed"


@pytest.mark.parametrize("name", ["fgsm", "pgd-linf", "pgd-l2"])
def test_attack_works_under_no_grad(name, model, digits):
    expected = ATTACKS[name][0](model, *digits)
    with torch.no_grad():
        assert torch.equal(ATTACKS[name][0](model, *digits), expected)


def test_attack_accepts_inference_tensors_but_not_inference_mode(model, digits):
    with torch.inference_mode():
        x = digits[0].clone()
    expected = fgsm(model, digits[0], digits[1], EPS)
    assert torch.equal(fgsm(model, x, digits[1], EPS), expected)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside the inference_mode"):
        fgsm(model, *digits, EPS)


@pytest.mark.parametrize("norm,eps,alpha", [("linf", EPS, ALPHA), ("l2", EPS_L2, ALPHA_L2)])
def test_random_start_is_reproducible_with_a_generator(norm, eps, alpha, model, digits):
    def run(seed):
        return pgd(model, *digits, eps, alpha, 2, norm=norm, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    torch.manual_seed(3)
    first = pgd(model, *digits, eps, alpha, 2, norm=norm)
    torch.manual_seed(3)
    assert torch.equal(pgd(model, *digits, eps, alpha, 2, norm=norm), first), "generator=None uses the global RNG"


def test_random_start_alone_is_uniform_in_the_ball():
    x = torch.full((4000, 3), 0.5)  # interior points: no clamping
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.zero_()  # zero gradient: PGD steps stay at the start
        model.bias.zero_()
    x_adv = pgd(model, x, torch.zeros(4000, dtype=torch.long), 0.1, 0.05, 1, generator=torch.Generator().manual_seed(0))
    delta = x_adv - x
    assert delta.abs().max() <= 0.1
    assert abs(delta.mean()) < 0.005 and abs(delta.std() - 0.1 / 3 ** 0.5) < 0.005  # U(-eps, eps)
    l2 = pgd(model, x, torch.zeros(4000, dtype=torch.long), 0.1, 0.05, 1, norm="l2",
             generator=torch.Generator().manual_seed(0)) - x
    radius = l2.norm(dim=1)
    assert radius.max() <= 0.1 + FLOAT_TOL
    assert abs(radius.mean() - 0.075) < 0.002 and l2.mean(0).abs().max() < 0.003  # uniform in the 3-d ball


# ---------------------------------------------------------------------------------------------
# Agreement with torchattacks 3.3.0 (same model, same batch, random_start=False)
# ---------------------------------------------------------------------------------------------
# torchattacks runs the model in eval mode, ascends nn.CrossEntropyLoss() (mean over the batch)
# and, when targeted, descends the loss of the labels its target map returns; so do we, in the
# same floating-point operations. Definitional details we share with it: PGD without a random
# start begins at x; PGDL2's step is alpha * g / (||g|| + 1e-10) (the 1e-10 is torchattacks'
# `eps_for_division`; with the batch-mean loss, gradient norms are ~1e-5 here, so dividing by
# ||g|| alone would already differ by ~1e-5 relative, and PGD amplifies that over its steps);
# its projection rescales delta by min(eps / ||delta||, 1) and then clips to [0, 1].
# Random starts differ (PGDL2 draws the radius uniformly, we draw uniformly in the ball's volume),
# so agreement is only defined with random_start=False.

try:
    import torchattacks
except ImportError:  # the agreement tests need the test extra (torchattacks==3.3.0)
    torchattacks = None


def _targeted(atk):
    atk.set_mode_targeted_by_function(lambda images, labels: labels)  # the labels passed are the targets
    return atk


# ours, theirs (built when the test runs, so a missing torchattacks only skips these tests)
TORCHATTACKS_PAIRS = {
    "fgsm": (lambda m, x, y: fgsm(m, x, y, EPS), lambda m: torchattacks.FGSM(m, eps=EPS)),
    "fgsm-targeted": (lambda m, x, y: fgsm(m, x, y, EPS, targeted=True),
                      lambda m: _targeted(torchattacks.FGSM(m, eps=EPS))),
    "pgd-linf": (lambda m, x, y: pgd(m, x, y, EPS, ALPHA, STEPS, random_start=False),
                 lambda m: torchattacks.PGD(m, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)),
    "pgd-linf-targeted": (lambda m, x, y: pgd(m, x, y, EPS, ALPHA, STEPS, random_start=False, targeted=True),
                          lambda m: _targeted(torchattacks.PGD(m, eps=EPS, alpha=ALPHA, steps=STEPS,
                                                               random_start=False))),
    "pgd-l2": (lambda m, x, y: pgd(m, x, y, EPS_L2, ALPHA_L2, STEPS, norm="l2", random_start=False),
               lambda m: torchattacks.PGDL2(m, eps=EPS_L2, alpha=ALPHA_L2, steps=STEPS, random_start=False)),
    "pgd-l2-targeted": (lambda m, x, y: pgd(m, x, y, EPS_L2, ALPHA_L2, STEPS, norm="l2", random_start=False,
                                            targeted=True),
                        lambda m: _targeted(torchattacks.PGDL2(m, eps=EPS_L2, alpha=ALPHA_L2, steps=STEPS,
                                                               random_start=False))),
}


@pytest.mark.skipif(torchattacks is None, reason="needs torchattacks 3.3.0")
@pytest.mark.parametrize("name", TORCHATTACKS_PAIRS)
@pytest.mark.parametrize("data", ["digits", "random"])
def test_attack_agrees_with_torchattacks(name, data, model, digits):
    ours, theirs = TORCHATTACKS_PAIRS[name]
    if data == "digits":
        x, y = digits
    else:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(128, 3, 16, 16, generator=g), torch.randint(10, (128,), generator=g)
    if name.endswith("targeted"):
        y = (y + 3) % 10
    model.train()  # both run the attack in eval mode and restore train mode
    expected = theirs(model)(x, y)
    assert model.training
    torch.testing.assert_close(ours(model, x, y), expected, atol=FLOAT_TOL, rtol=0)


# ---------------------------------------------------------------------------------------------
# Closed form: a linear model, where the worst case in the ball is known exactly
# ---------------------------------------------------------------------------------------------

class LinearScore(nn.Module):
    """Two classes with logits (0, w.x + b): the cross-entropy gradient of label y with respect
    to x is -(1 - p_y) * s_y * w, with s_1 = +1 and s_0 = -1, so the loss grows fastest along
    -s_y * sign(w) (L-inf) and -s_y * w / ||w|| (L2)."""

    def __init__(self, w: torch.Tensor, b: float = 0.0):
        super().__init__()
        self.w, self.b = nn.Parameter(w.clone()), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        score = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(score), score], 1)


@pytest.fixture
def linear_case():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3 * 4 * 4, generator=g)
    x = 0.3 + 0.4 * torch.rand(32, 3, 4, 4, generator=g)  # interior: no clamping at eps <= 0.25
    model = LinearScore(w, b=-float((x.flatten(1) @ w).quantile(0.5)))  # no score exactly 0
    y = (model(x).argmax(1) == 1).long()  # every image correctly classified...
    y[::4] = 1 - y[::4]  # ...but a quarter
    sign = (2 * y - 1).float().view(-1, 1, 1, 1)  # s_y
    return model, x, y, sign, w.view(1, 3, 4, 4)


def test_fgsm_on_a_linear_model_is_the_closed_form_worst_case(linear_case):
    model, x, y, s, w = linear_case
    expected = x - 0.1 * s * w.sign()
    torch.testing.assert_close(fgsm(model, x, y, 0.1), expected, atol=FLOAT_TOL, rtol=0)
    # the targeted attack toward the other class takes the same step
    torch.testing.assert_close(fgsm(model, x, 1 - y, 0.1, targeted=True), expected, atol=FLOAT_TOL, rtol=0)


def test_pgd_on_a_linear_model_reaches_the_closed_form_worst_case(linear_case):
    model, x, y, s, w = linear_case
    linf = pgd(model, x, y, 0.1, 0.04, 5, random_start=False)
    torch.testing.assert_close(linf, x - 0.1 * s * w.sign(), atol=FLOAT_TOL, rtol=0)
    l2 = pgd(model, x, y, 0.2, 0.15, 3, norm="l2", random_start=False)
    torch.testing.assert_close(l2, x - 0.2 * s * w / w.norm(), atol=FLOAT_TOL, rtol=0)


def test_robust_accuracy_of_a_linear_model_matches_the_closed_form(linear_case):
    model, x, y, s, w = linear_case
    loader = list(zip(x.split(8), y.split(8)))
    margin = s.flatten() * model(x)[:, 1].detach()  # > 0 where correct
    for eps in (0.0, 0.005, 0.01, 0.02):
        expected = (margin - eps * w.abs().sum() > 0).float().mean().item()  # the L-inf worst case costs eps*||w||_1
        assert robust_accuracy(model, loader, fgsm, eps=eps) == pytest.approx(expected)
        got = robust_accuracy(model, loader, pgd, eps=eps, alpha=0.02, steps=2, random_start=False)
        assert got == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# Attacks hurt a trained model
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """SmallCNN (width 8) trained for two quick epochs on 16x16 digits: ~90% test accuracy."""
    torch.manual_seed(0)
    model = SmallCNN(width=8, hidden=32)
    fit(model, make_loader(load_digits("train", size=16), 64, shuffle=True), epochs=2, lr=1e-2, progress=False,
        device="cpu")
    x, y = load_digits("test", size=16).subset(96).tensors
    return model.eval(), list(zip(x.split(48), y.split(48)))


def test_attacks_lower_the_accuracy_of_a_trained_model(trained):
    model, loader = trained
    gen = torch.Generator().manual_seed(0)
    acc = accuracy_vs_eps(model, loader, fgsm, [0, 0.1])
    pgd_acc = robust_accuracy(model, loader, pgd, eps=0.1, alpha=0.025, steps=10, generator=gen)
    l2_acc = robust_accuracy(model, loader, pgd, eps=1.0, alpha=0.25, steps=10, norm="l2", generator=gen)
    assert acc[0] > 0.8, f"the model did not train: clean accuracy {acc[0]}"
    assert acc[0.1] < acc[0] - 0.2, f"FGSM barely hurt: {acc}"
    assert pgd_acc <= acc[0.1] and pgd_acc < 0.2, f"PGD ({pgd_acc}) should beat FGSM ({acc[0.1]})"
    assert l2_acc < acc[0] - 0.2


def test_targeted_pgd_reaches_its_target(trained):
    model, loader = trained
    x, y = loader[0]
    target = (y + 1) % 10
    x_adv = pgd(model, x, target, 0.15, 0.03, 10, targeted=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hit = (model(x_adv).argmax(1) == target).float().mean().item()
        before = (model(x).argmax(1) == target).float().mean().item()
    assert hit > 0.7 and before < 0.2, f"targeted PGD hit its target on {hit:.0%} of images"


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------

BAD_CALLS = {
    "negative eps": (lambda m, x, y: fgsm(m, x, y, -0.1), "eps must be >= 0"),
    "nan eps": (lambda m, x, y: fgsm(m, x, y, float("nan")), "eps must be a finite number"),
    "pgd negative eps": (lambda m, x, y: pgd(m, x, y, -1.0, 0.1, 3), "eps must be >= 0"),
    "zero alpha": (lambda m, x, y: pgd(m, x, y, 0.1, 0.0, 3), "alpha must be > 0"),
    "negative alpha": (lambda m, x, y: pgd(m, x, y, 0.1, -0.01, 3), "alpha must be > 0"),
    "zero steps": (lambda m, x, y: pgd(m, x, y, 0.1, 0.01, 0), "steps must be an integer >= 1"),
    "float steps": (lambda m, x, y: pgd(m, x, y, 0.1, 0.01, 2.5), "steps must be an integer >= 1"),
    "unknown norm": (lambda m, x, y: pgd(m, x, y, 0.1, 0.01, 3, norm="l1"), "norm must be one of"),
    "image above 1": (lambda m, x, y: fgsm(m, x * 255, y, 0.1), r"\[0, 1\].*Normalized"),
    "normalized image": (lambda m, x, y: pgd(m, (x - 0.5) / 0.25, y, 0.1, 0.01, 3), r"\[0, 1\]"),
    "nan image": (lambda m, x, y: fgsm(m, x.masked_fill(x > 0.5, float("nan")), y, 0.1), r"\[0, 1\]"),
    "uint8 image": (lambda m, x, y: fgsm(m, (x * 255).byte(), y, 0.1), "x.float\\(\\) / 255"),
    "no batch dimension": (lambda m, x, y: fgsm(m, x[0, 0, 0], y, 0.1), "batch"),
    "labels of another batch": (lambda m, x, y: fgsm(m, x, y[:3], 0.1), "y must be an integer class tensor"),
    "float labels": (lambda m, x, y: fgsm(m, x, y.float(), 0.1), "y must be an integer class tensor"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_arguments_raise_a_value_error_that_names_the_fix(case, model, digits):
    call, message = BAD_CALLS[case]
    with pytest.raises(ValueError, match=message):
        call(model, *digits)


def test_sweep_and_transforms_reject_bad_arguments(model, digits):
    loader = [digits]
    with pytest.raises(ValueError, match="eps_values is empty"):
        accuracy_vs_eps(model, loader, fgsm, [])
    with pytest.raises(ValueError, match="must be >= 0"):
        accuracy_vs_eps(model, loader, fgsm, [0.1, -0.1])
    with pytest.raises(ValueError, match="eps_values"):
        accuracy_vs_eps(model, loader, fgsm, [0.1], eps=0.2)
    with pytest.raises(ValueError, match="no images"):
        robust_accuracy(model, [], fgsm, eps=0.1)
    with pytest.raises(ValueError, match="method must be"):
        AdversarialTransform(model, 0.1, method="bim")
    with pytest.raises(ValueError, match="exactly one step"):
        AdversarialTransform(model, 0.1, steps=3)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        AdversarialTransform(model, -0.1)
    with pytest.raises(ValueError, match="warmup_calls"):
        AdversarialTransform(model, 0.1, warmup_calls=-1)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        GaussianNoiseTransform(-0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GaussianNoiseTransform(0.1)(digits[0] * 2, digits[1])


# ---------------------------------------------------------------------------------------------
# robust_accuracy and the eps sweep, against a hand loop
# ---------------------------------------------------------------------------------------------

class CountingLoader:
    """A list of batches that counts the passes made over it."""

    def __init__(self, batches):
        self.batches, self.passes = batches, 0

    def __iter__(self):
        self.passes += 1
        return iter(self.batches)


def hand_accuracy(model, batches, make_adv) -> float:
    correct = total = 0
    for x, y in batches:
        with torch.no_grad():
            correct += (model(make_adv(x, y)).argmax(1) == y).sum().item()
        total += len(y)
    return correct / total


@pytest.fixture
def batches():
    x, y = load_digits("test")[:40]  # batches of 16, 16 and 8
    return list(zip(x.split(16), y.split(16)))


def test_robust_accuracy_matches_a_hand_loop(model, batches):
    model.train()
    got = robust_accuracy(model, batches, pgd, eps=0.05, alpha=0.02, steps=3, random_start=False)
    assert model.training, "robust_accuracy must restore the model's mode"
    model.eval()
    expected = hand_accuracy(model, batches, lambda x, y: pgd(model, x, y, 0.05, 0.02, 3, random_start=False))
    assert got == pytest.approx(expected)


def test_robust_accuracy_takes_any_attack_function(model, batches):
    def identity_attack(model, x, y):
        return x

    assert robust_accuracy(model, batches, identity_attack) == pytest.approx(
        hand_accuracy(model, batches, lambda x, y: x))


def test_accuracy_vs_eps_matches_robust_accuracy_in_one_pass(model, batches):
    loader = CountingLoader(batches)
    eps_values = [0.0, 0.02, 0.05]
    sweep = accuracy_vs_eps(model, loader, fgsm, eps_values)
    assert loader.passes == 1
    assert list(sweep) == eps_values
    assert sweep[0.0] == pytest.approx(hand_accuracy(model, batches, lambda x, y: x))
    for eps in eps_values[1:]:
        assert sweep[eps] == pytest.approx(robust_accuracy(model, batches, fgsm, eps=eps))


def test_accuracy_vs_eps_calls_keyword_functions_with_each_eps(model, batches):
    alphas = []

    def alpha(eps):
        alphas.append(eps)
        return eps / 2

    sweep = accuracy_vs_eps(model, batches, pgd, [0.02, 0.05], alpha=alpha, steps=3, random_start=False)
    assert sorted(set(alphas)) == [0.02, 0.05]
    for eps in (0.02, 0.05):
        assert sweep[eps] == pytest.approx(robust_accuracy(model, batches, pgd, eps=eps, alpha=eps / 2, steps=3,
                                                           random_start=False))


# ---------------------------------------------------------------------------------------------
# Training-time transforms
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,norm", [({}, "linf"), ({"method": "pgd", "steps": 3}, "linf"),
                                         ({"method": "pgd", "steps": 2, "norm": "l2"}, "l2")])
def test_adversarial_transform_makes_in_ball_examples_and_restores_state(kwargs, norm, model, digits):
    x, y = digits
    model.train()
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    grads = [p.grad.clone() for p in params]
    eps = 0.5 if norm == "l2" else 0.05
    transform = AdversarialTransform(model, eps, generator=torch.Generator().manual_seed(0), **kwargs)
    x_adv, y_out = transform(x, y)
    assert y_out is y and not x_adv.requires_grad
    assert_in_ball(x_adv, x, norm, eps)
    assert (x_adv != x).any()
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))


def test_fgsm_rs_is_one_pgd_step_of_one_and_a_quarter_eps_from_a_random_start(model, digits):
    """Wong et al. 2020: uniform start in the ball, one step of alpha = 1.25 eps, project, clamp."""
    model.train()
    x_adv, _ = AdversarialTransform(model, 0.05, generator=torch.Generator().manual_seed(7))(*digits)
    expected = pgd(model, *digits, 0.05, 1.25 * 0.05, 1, generator=torch.Generator().manual_seed(7))
    assert torch.equal(x_adv, expected)


@pytest.mark.parametrize("eval_mode", [True, False])
def test_adversarial_transform_attacks_in_the_documented_mode(eval_mode, model, digits):
    model.train()
    seen = []
    model.encoder[0][0][1].register_forward_pre_hook(lambda module, args: seen.append(module.training))
    bn_mean = model.encoder[0][0][1].running_mean.clone()
    AdversarialTransform(model, 0.05, method="pgd", steps=2, eval_mode=eval_mode)(*digits)
    assert seen == [not eval_mode] * 2
    assert model.training
    # in train mode the attack's forward passes update BatchNorm's running statistics, as in
    # Madry's and Wong's reference code; in eval mode they do not
    assert torch.equal(model.encoder[0][0][1].running_mean, bn_mean) == eval_mode


def test_warmup_ramps_eps_over_training_calls_only(digits):
    # linear model, interior images: every FGSM-RS step ends on the surface of the L-inf ball
    model = LinearScore(0.01 * torch.randn(3 * 32 * 32, generator=torch.Generator().manual_seed(0)))
    x, y = 0.25 + 0.5 * digits[0], digits[1] % 2
    transform = AdversarialTransform(model, 0.08, warmup_calls=4, generator=torch.Generator().manual_seed(0))
    model.train()
    radii = []
    for _ in range(6):
        assert transform.current_eps == pytest.approx(0.08 * min(1, (transform.calls + 1) / 4))
        radii.append((transform(x, y)[0] - x).abs().amax().item())
    assert radii == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.08, 0.08], abs=1e-6)
    assert transform.calls == 6
    fresh = AdversarialTransform(model, 0.08, warmup_calls=4)
    model.eval()  # fit's validation pass: full eps, not counted
    assert (fresh(x, y)[0] - x).abs().amax().item() == pytest.approx(0.08, abs=1e-6)
    assert fresh.calls == 0 and fresh.current_eps == pytest.approx(0.02)


def test_adversarial_transform_plugs_into_fit(digits):
    model = small_model()
    x, y = digits
    loader = list(zip(x.split(8), y.split(8)))
    transform = AdversarialTransform(model, 0.05, warmup_calls=2, generator=torch.Generator().manual_seed(0))
    history = fit(model, loader, epochs=2, max_steps=3, batch_transform=transform, val_loader=loader[:1],
                  progress=False, device="cpu")
    assert transform.calls == 3 and len(history.step_loss) == 3
    assert not model.training  # fit leaves the model in eval mode; the transform did not get in its way


def test_gaussian_noise_transform(digits):
    x, y = digits
    x_before = x.clone()
    noisy, y_out = GaussianNoiseTransform(0.1, generator=torch.Generator().manual_seed(0))(x, y)
    assert y_out is y and torch.equal(x, x_before)
    assert noisy.min() >= 0 and noisy.max() <= 1
    interior = (x > 0.4) & (x < 0.6)
    assert interior.sum() > 100
    assert (noisy - x)[interior].std().item() == pytest.approx(0.1, rel=0.2)
    again, _ = GaussianNoiseTransform(0.1, generator=torch.Generator().manual_seed(0))(x, y)
    assert torch.equal(noisy, again)
    assert torch.equal(GaussianNoiseTransform(0.0)(x, y)[0], x)


# ---------------------------------------------------------------------------------------------
# CUDA (skipped on machines without a GPU)
# ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ATTACKS)
def test_attack_contract_on_cuda(name, digits):
    model = small_model().cuda()
    x, y = (t.cuda() for t in digits)
    x_adv = ATTACKS[name][0](model, x, y)
    assert x_adv.device == x.device
    assert_in_ball(x_adv, x, ATTACKS[name][1], ATTACKS[name][2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_gives_the_same_random_start_on_cuda():
    model = nn.Linear(3, 2).cuda()
    with torch.no_grad():
        model.weight.zero_()
    x = torch.full((64, 3), 0.5)
    y = torch.zeros(64, dtype=torch.long)
    cpu = pgd(model.cpu(), x, y, 0.1, 0.05, 1, generator=torch.Generator().manual_seed(0))
    gpu = pgd(model.cuda(), x.cuda(), y.cuda(), 0.1, 0.05, 1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gpu.cpu(), cpu)


# ---------------------------------------------------------------------------------------------
# The masked (sticker / eyeglasses) attack and its masks
# ---------------------------------------------------------------------------------------------

def _hand_masked(model, x, target, mask, alpha, steps):
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x_adv), target), x_adv)
        x_adv = (x_adv.detach() - alpha * mask * grad.sign()).clamp(0, 1)
    return x_adv


def test_masked_attack_changes_only_the_mask_and_matches_the_update_rule(model, digits):
    x, y = digits
    x_before, target = x.clone(), (y + 1) % 10
    mask = square_mask(32, 10, top=2, left=3)
    out = masked_attack(model, x, target, mask, 0.05, 6)
    assert torch.equal(x, x_before) and not out.requires_grad
    assert torch.equal(out * (1 - mask), x * (1 - mask)), "pixels outside the mask changed"
    assert (out - x).abs().amax() > 0.2, "inside the mask the change is unbounded: 6 steps of 0.05 reach 0.3"
    assert torch.allclose(out, _hand_masked(model, x, target, mask, 0.05, 6), atol=FLOAT_TOL)
    assert out.min() >= 0 and out.max() <= 1


def test_masked_attack_leaves_mode_and_grads_alone(model, digits):
    x, y = digits
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    masked_attack(model, x, y, eyeglasses_mask(32), 0.1, 2)
    assert model.training and all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_masked_attack_reaches_its_target_with_a_large_sticker(trained):
    model, loader = trained
    x, y = loader[0]
    target = (y + 1) % 10
    out = masked_attack(model, x, target, square_mask(16, 8), 0.1, 20)
    with torch.no_grad():
        hit = (model(out).argmax(1) == target).float().mean().item()
    assert hit > 0.5, f"a masked attack on a quarter of the image hit its target on {hit:.0%} of images"
    assert torch.equal(out * (1 - square_mask(16, 8)), x * (1 - square_mask(16, 8)))


@pytest.mark.parametrize("mask,match", [
    ([[1.0]], "tensor of 0s and 1s"),
    (torch.full((1, 1, 32, 32), 0.5), "only 0s and 1s"),
    (torch.ones(1, 1, 16, 16), "does not broadcast"),
])
def test_masked_attack_rejects_bad_masks(model, digits, mask, match):
    x, y = digits
    with pytest.raises(ValueError, match=match):
        masked_attack(model, x, y, mask, 0.1, 1)


def test_masks_have_the_shape_and_area_asked_for():
    assert square_mask(32, 8).sum() == 64 and square_mask(32, 8)[0, 0, 12:20, 12:20].all()
    assert square_mask(32, 4, top=0, left=28)[0, 0, 0:4, 28:32].all()
    with pytest.raises(ValueError, match="does not fit"):
        square_mask(32, 8, top=30)
    glasses = eyeglasses_mask(32)
    assert glasses.shape == (1, 1, 32, 32) and set(glasses.unique().tolist()) == {0.0, 1.0}
    assert glasses[..., 16:, :].sum() == 0, "the frames sit in the upper half"
    assert torch.equal(glasses, glasses.flip(-1)), "two rims, left and right, symmetric"
    assert 0.05 < float(glasses.mean()) < 0.25
