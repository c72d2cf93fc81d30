"""Notebook 02's hidden checks accept the solution and reject the usual mistakes."""
import re

import pytest
import torch
import torch.nn.functional as F

from course_utils import attacks
from course_utils.checks.synthetic_adversarial import (check_fgsm_attack, check_linear_worst_case_margin,
                                                       check_masked_attack, check_pgd_attack,
                                                       check_targeted_pgd_attack)


def _grad(model, x_adv, y):
    x_adv = x_adv.detach().clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)[0]


# --- the notebook's solutions -----------------------------------------------------------------

def fgsm_attack(model, x, y, eps):
    x_adv = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y)
    (grad,) = torch.autograd.grad(loss, x_adv)
    return (x_adv + eps * grad.sign()).clamp(0, 1).detach()


def pgd_attack(model, x, y, eps, alpha, steps, random_start=True):
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        x_adv = (x_adv + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.clamp(x_adv, x - eps, x + eps).clamp(0, 1)
    return x_adv.detach()


def targeted_pgd_attack(model, x, target, eps, alpha, steps):
    x = x.detach()
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), target)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() - alpha * grad.sign()
        x_adv = torch.clamp(x_adv, x - eps, x + eps).clamp(0, 1)
    return x_adv.detach()


def masked_attack(model, x, target, mask, alpha, steps):
    x_adv = x.clone().detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), target)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = (x_adv.detach() - alpha * mask * grad.sign()).clamp(0, 1)
    return x_adv.detach()


# --- variants: the solution with one thing changed --------------------------------------------

def make_pgd(*, sign=1.0, project="each", clamp=True, random_start_used=True, start="uniform", backward=False,
             train=False, inplace=False, detach=True, step_from_x=False):
    """The solution's PGD with one mistake switched on."""
    def attack(model, x, y, eps, alpha, steps, random_start=True):
        if train:
            model.train()
        orig = x.detach().clone()
        x_adv = orig.clone()
        if random_start and random_start_used:
            noise = {"uniform": torch.empty_like(x).uniform_(-eps, eps), "rand": torch.rand_like(x) * eps,
                     "randn": torch.randn_like(x) * eps}[start]
            x_adv = (x_adv + noise).clamp(0, 1)
        for _ in range(steps):
            point = orig if step_from_x else x_adv
            if backward:
                point = point.detach().clone().requires_grad_(True)
                F.cross_entropy(model(point), y).backward()
                grad = point.grad
            else:
                grad = _grad(model, point, y)
            previous = x_adv
            x_adv = x_adv + sign * alpha * grad.sign()
            if project == "each":
                x_adv = torch.clamp(x_adv, orig - eps, orig + eps)
            elif project == "previous":
                x_adv = torch.clamp(x_adv, previous - eps, previous + eps)
            if clamp:
                x_adv = x_adv.clamp(0, 1)
        if inplace:
            x.copy_(x_adv)
            x_adv = x.clone()
        return x_adv.detach() if detach else x_adv.clone().requires_grad_(True) * 1
    return attack


def fgsm_variant(**kw):
    pgd = make_pgd(random_start_used=False, **kw)
    return lambda model, x, y, eps: pgd(model, x, y, eps, eps, 1)


def fgsm_gradient_not_sign(model, x, y, eps):
    return (x + eps * _grad(model, x, y)).clamp(0, 1)


def fgsm_zero_grad_after(model, x, y, eps):
    x_adv = x.detach().clone().requires_grad_(True)
    F.cross_entropy(model(x_adv), y).backward()
    model.zero_grad()
    return (x_adv + eps * x_adv.grad.sign()).clamp(0, 1).detach()


def fgsm_eval_then_train(model, x, y, eps):
    model.eval()
    out = fgsm_attack(model, x, y, eps)
    model.train()
    return out


def fgsm_hardcoded_eps(model, x, y, eps):
    return fgsm_attack(model, x, y, 0.1)


def fgsm_in_train_mode_restored(model, x, y, eps):
    was = model.training
    model.train()
    out = fgsm_attack(model, x, y, eps)
    model.train(was)
    return out


def fgsm_library(model, x, y, eps):
    return attacks.fgsm(model, x, y, eps)


def fgsm_library_alias(model, x, y, eps):
    from course_utils.attacks import pgd as my_pgd
    return my_pgd(model, x, y, eps, eps, 1, random_start=False)


def zero_the_weights(model):
    """Tampers with the check's fixture: with every weight 0 the loss has no gradient, and a reference
    computed on the model after the call would be x itself (issue 33, row 1)."""
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()


def fgsm_tamper(model, x, y, eps):
    zero_the_weights(model)
    return x.clone()


def pgd_tamper(model, x, y, eps, alpha, steps, random_start=True):
    zero_the_weights(model)
    return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1) if random_start else x.clone()


def targeted_tamper(model, x, target, eps, alpha, steps):
    zero_the_weights(model)
    return x.clone()


def masked_tamper(model, x, target, mask, alpha, steps):
    zero_the_weights(model)
    return x.clone()


def fgsm_tamper_buffers(model, x, y, eps):
    """Tampers with BatchNorm's running statistics instead of the weights."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(1e6)
    return fgsm_attack(model, x, y, eps)


FGSM_WRONG = {
    "wrong gradient sign": fgsm_variant(sign=-1.0),
    "no clamp": fgsm_variant(clamp=False),
    "gradient instead of its sign": fgsm_gradient_not_sign,
    "input changed in place": fgsm_variant(inplace=True),
    "model left in train mode": fgsm_variant(train=True),
    "model.train() then restored": fgsm_in_train_mode_restored,
    "param grads touched by backward": fgsm_variant(backward=True),
    "param grads zeroed": fgsm_zero_grad_after,
    "sets train mode at the end": fgsm_eval_then_train,
    "not detached": fgsm_variant(detach=False),
    "eps hard-coded": fgsm_hardcoded_eps,
    "calls course_utils.attacks.fgsm": fgsm_library,
    "calls course_utils.attacks.pgd by an alias": fgsm_library_alias,
    "tamper: zeroes the model's weights": fgsm_tamper,
    "tamper: rewrites BatchNorm's statistics": fgsm_tamper_buffers,
}


def pgd_library(model, x, y, eps, alpha, steps, random_start=True):
    return attacks.pgd(model, x, y, eps, alpha, steps, random_start=random_start)


def pgd_via_transform(model, x, y, eps, alpha, steps, random_start=True):
    return attacks.AdversarialTransform(model, eps, method="pgd", alpha=alpha, steps=steps)(x, y)[0]


def pgd_projects_at_end(model, x, y, eps, alpha, steps, random_start=True):
    x_adv = make_pgd(project="none")(model, x, y, eps, alpha, steps, random_start)
    return torch.clamp(x_adv, x - eps, x + eps).clamp(0, 1)


def pgd_single_step(model, x, y, eps, alpha, steps, random_start=True):
    return make_pgd()(model, x, y, eps, alpha, 1, random_start)


def pgd_default_off(model, x, y, eps, alpha, steps, random_start=False):
    return pgd_attack(model, x, y, eps, alpha, steps, random_start)


PGD_WRONG = {
    "wrong gradient sign": make_pgd(sign=-1.0),
    "no projection": make_pgd(project="none"),
    "projection around the previous iterate": make_pgd(project="previous"),
    "projection only after the last step": pgd_projects_at_end,
    "no clamp": make_pgd(clamp=False),
    "input changed in place": make_pgd(inplace=True),
    "model left in train mode": make_pgd(train=True),
    "param grads touched": make_pgd(backward=True),
    "random start ignored": make_pgd(random_start_used=False),
    "random start with torch.rand (not centred)": make_pgd(start="rand"),
    "random start Gaussian": make_pgd(start="randn"),
    "gradient always taken at x": make_pgd(step_from_x=True),
    "one step only": pgd_single_step,
    "random_start defaults to False": pgd_default_off,
    "calls course_utils.attacks.pgd": pgd_library,
    "calls AdversarialTransform": pgd_via_transform,
    "tamper: zeroes the model's weights": pgd_tamper,
}


def targeted_variant(**kw):
    pgd = make_pgd(random_start_used=False, **kw)
    return lambda model, x, target, eps, alpha, steps: pgd(model, x, target, eps, alpha, steps)


def targeted_random_start(model, x, target, eps, alpha, steps):
    return make_pgd(sign=-1.0)(model, x, target, eps, alpha, steps, True)


def targeted_library(model, x, target, eps, alpha, steps):
    return attacks.pgd(model, x, target, eps, alpha, steps, random_start=False, targeted=True)


def stops_early(attack_step):
    """An iterative attack that stops as soon as every image is classified as its target."""
    def attack(model, x, target, *args):
        *rest, alpha, steps = args
        x_adv = x.clone().detach()
        for _ in range(steps):
            x_adv = attack_step(model, x, x_adv, target, *rest, alpha)
            with torch.no_grad():
                if (model(x_adv).argmax(1) == target).all():
                    break
        return x_adv
    return attack


def _targeted_step(model, x, x_adv, target, eps, alpha):
    x_adv = x_adv - alpha * _grad(model, x_adv, target).sign()
    return torch.clamp(x_adv, x - eps, x + eps).clamp(0, 1).detach()


def _masked_step(model, x, x_adv, target, mask, alpha):
    return (x_adv - alpha * mask * _grad(model, x_adv, target).sign()).clamp(0, 1).detach()


TARGETED_WRONG = {
    "ascends the target's loss": targeted_variant(sign=1.0),
    "no projection": targeted_variant(sign=-1.0, project="none"),
    "projection around the previous iterate": targeted_variant(sign=-1.0, project="previous"),
    "no clamp": targeted_variant(sign=-1.0, clamp=False),
    "input changed in place": targeted_variant(sign=-1.0, inplace=True),
    "model left in train mode": targeted_variant(sign=-1.0, train=True),
    "param grads touched": targeted_variant(sign=-1.0, backward=True),
    "random start": targeted_random_start,
    "calls course_utils.attacks.pgd(targeted=True)": targeted_library,
    "stops once every image is its target": stops_early(_targeted_step),
    "tamper: zeroes the model's weights": targeted_tamper,
}


def masked_variant(*, sign=-1.0, mask_at="each", clamp_at="each", eps=None, random_start=False, train=False,
                   backward=False, inplace=False, detach=True, use_sign=True, index_first_mask=False):
    """The solution's masked attack with one mistake switched on."""
    def attack(model, x, target, mask, alpha, steps):
        if train:
            model.train()
        orig = x.detach().clone()
        region = mask[:1, 0, None] if index_first_mask else (1 - mask if mask_at == "inverted" else mask)
        x_adv = orig.clone()
        if random_start:
            x_adv = (x_adv + region * torch.empty_like(x).uniform_(-alpha, alpha)).clamp(0, 1)
        for _ in range(steps):
            if backward:
                point = x_adv.detach().clone().requires_grad_(True)
                F.cross_entropy(model(point), target).backward()
                grad = point.grad
            else:
                grad = _grad(model, x_adv, target)
            step = sign * alpha * (grad.sign() if use_sign else grad)
            x_adv = x_adv + (step if mask_at in ("end", "none") else region * step)
            if eps is not None:
                x_adv = torch.clamp(x_adv, orig - eps, orig + eps)
            if clamp_at == "each":
                x_adv = x_adv.clamp(0, 1)
        if mask_at == "end":
            x_adv = orig + region * (x_adv - orig)
        if clamp_at == "end":
            x_adv = x_adv.clamp(0, 1)
        if inplace:
            x.copy_(x_adv.detach())
        return x_adv.detach() if detach else x_adv.requires_grad_(True)
    return attack


def masked_library(model, x, target, mask, alpha, steps):
    return attacks.masked_attack(model, x, target, mask, alpha, steps)


MASKED_WRONG = {
    "ascends the target's loss": masked_variant(sign=1.0),
    "mask applied only at the end": masked_variant(mask_at="end"),
    "mask inverted": masked_variant(mask_at="inverted"),
    "no mask": masked_variant(mask_at="none"),
    "no clamp": masked_variant(clamp_at="none"),
    "clamp only at the end": masked_variant(clamp_at="end"),
    "bounded by an eps-ball": masked_variant(eps=0.1),
    "random start inside the mask": masked_variant(random_start=True),
    "gradient instead of its sign": masked_variant(use_sign=False),
    "only the first image's mask": masked_variant(index_first_mask=True),
    "input changed in place": masked_variant(inplace=True),
    "model left in train mode": masked_variant(train=True),
    "param grads touched": masked_variant(backward=True),
    "not detached": masked_variant(detach=False),
    "calls course_utils.attacks.masked_attack": masked_library,
    "stops once every image is its target": stops_early(_masked_step),
    "tamper: zeroes the model's weights": masked_tamper,
}


def test_solutions_pass():
    check_fgsm_attack(fgsm_attack)
    check_pgd_attack(pgd_attack)
    check_targeted_pgd_attack(targeted_pgd_attack)
    check_masked_attack(masked_attack)


def test_the_variants_without_a_change_pass():
    """The mistake factory itself is right when nothing is changed (so each failure below is the mistake's)."""
    check_fgsm_attack(fgsm_variant())
    check_pgd_attack(make_pgd())
    check_targeted_pgd_attack(targeted_variant(sign=-1.0))
    check_masked_attack(masked_variant())


@pytest.mark.parametrize("mistake", MASKED_WRONG)
def test_masked_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_masked_attack(MASKED_WRONG[mistake])


@pytest.mark.parametrize("mistake, message", [
    ("ascends the target's loss", "DESCENDS"),
    ("mask applied only at the end", "only at the end"),
    ("mask inverted", "outside the mask"),
    ("no mask", "outside the mask"),
    ("no clamp", "[0, 1]"),
    ("clamp only at the end", "clamps to [0, 1] only once"),
    ("bounded by an eps-ball", "not bounded by an eps-ball"),
    ("random start inside the mask", "no random start"),
    ("only the first image's mask", "outside the mask"),
    ("calls course_utils.attacks.masked_attack", "course_utils.attacks.masked_attack"),
    ("stops once every image is its target", "stopped early"),
    ("tamper: zeroes the model's weights", "changed the parameters of model"),
])
def test_masked_failures_name_the_mistake(mistake, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_masked_attack(MASKED_WRONG[mistake])


@pytest.mark.parametrize("mistake", FGSM_WRONG)
def test_fgsm_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_fgsm_attack(FGSM_WRONG[mistake])


@pytest.mark.parametrize("mistake", PGD_WRONG)
def test_pgd_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_pgd_attack(PGD_WRONG[mistake])


@pytest.mark.parametrize("mistake", TARGETED_WRONG)
def test_targeted_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_targeted_pgd_attack(TARGETED_WRONG[mistake])


@pytest.mark.parametrize("mistake, message", [
    ("wrong gradient sign", "AGAINST the gradient"),
    ("no clamp", "[0, 1]"),
    ("model left in train mode", "train mode"),
    ("param grads touched by backward", "autograd.grad"),
    ("input changed in place", "in place"),
    ("calls course_utils.attacks.fgsm", "course_utils.attacks.fgsm"),
    ("model.train() then restored", "BatchNorm's running statistics"),
    ("tamper: zeroes the model's weights", "changed the parameters of model"),
    ("tamper: rewrites BatchNorm's statistics", "changed the buffers of model"),
])
def test_fgsm_failures_name_the_mistake(mistake, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_fgsm_attack(FGSM_WRONG[mistake])


@pytest.mark.parametrize("mistake, message", [
    ("no projection", "ORIGINAL"),
    ("projection around the previous iterate", "ORIGINAL"),
    ("projection only after the last step", "after EVERY step"),
    ("random start ignored", "random start is missing"),
    ("random start with torch.rand (not centred)", "uniform"),
    ("wrong gradient sign", "against the gradient"),
    ("tamper: zeroes the model's weights", "changed the parameters of model"),
])
def test_pgd_failures_name_the_mistake(mistake, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_pgd_attack(PGD_WRONG[mistake])


def test_targeted_wrong_sign_is_named():
    with pytest.raises(AssertionError, match="DESCENDS"):
        check_targeted_pgd_attack(TARGETED_WRONG["ascends the target's loss"])
    with pytest.raises(AssertionError, match="stopped early"):
        check_targeted_pgd_attack(TARGETED_WRONG["stops once every image is its target"])
    with pytest.raises(AssertionError, match="changed the parameters of model"):
        check_targeted_pgd_attack(TARGETED_WRONG["tamper: zeroes the model's weights"])


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_pgd_attack(pgd_attack)
    assert torch.equal(torch.rand(3), expected)


# --- exercise 5: a linear model's exact worst case ---------------------------------------------

def linear_worst_case_margin(weight, bias, x, y, eps):
    flat = x.flatten(1)
    z = flat @ weight.T + bias
    v = weight[y][:, None, :] - weight[None, :, :]
    margins = z.gather(1, y[:, None]) - z - eps * v.abs().sum(-1)
    margins = margins.masked_fill(F.one_hot(y, len(weight)).bool(), float("inf"))
    return margins.min(1).values


def _margins(norm=lambda v: v.abs().sum(-1), *, sign=-1.0, bias=True, own=False, largest=False, eps_scale=1.0):
    def margin(weight, bias_, x, y, eps):
        flat = x.flatten(1)
        z = flat @ weight.T + (bias_ if bias else 0)
        v = weight[y][:, None, :] - weight[None, :, :]
        m = z.gather(1, y[:, None]) - z + sign * eps * eps_scale * norm(v)
        if not own:
            m = m.masked_fill(F.one_hot(y, len(weight)).bool(), -float("inf") if largest else float("inf"))
        return m.max(1).values if largest else m.min(1).values
    return margin


def worst_case_norm_of_wy(weight, bias, x, y, eps):
    flat = x.flatten(1)
    z = flat @ weight.T + bias
    m = z.gather(1, y[:, None]) - z - eps * weight[y].abs().sum(-1, keepdim=True)
    return m.masked_fill(F.one_hot(y, len(weight)).bool(), float("inf")).min(1).values


def worst_case_in_place(weight, bias, x, y, eps):
    x.clamp_(0, 1).mul_(1.0)  # harmless-looking, but changes nothing: then a real change
    x.add_(eps)
    return linear_worst_case_margin(weight, bias, x - eps, y, eps)


def worst_case_library(weight, bias, x, y, eps):
    from course_utils.linearity import linear_worst_case_accuracy
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    linear_worst_case_accuracy(layer, x, y, eps, box=False)
    return linear_worst_case_margin(weight, bias, x, y, eps)


WORST_CASE_WRONG = {
    "the L2 norm": _margins(lambda v: v.norm(dim=-1)),
    "the perturbation helps": _margins(sign=1.0),
    "bias left out": _margins(bias=False),
    "the true class counted as a rival": _margins(own=True),
    "the largest margin, not the smallest": _margins(largest=True),
    "eps ignored": _margins(eps_scale=0.0),
    "the mean over pixels, not the sum": _margins(lambda v: v.abs().mean(-1)),
    "the norm of w_y alone": worst_case_norm_of_wy,
    "input changed in place": worst_case_in_place,
    "the library": worst_case_library,
}


def test_linear_worst_case_solution_passes():
    check_linear_worst_case_margin(linear_worst_case_margin)


@pytest.mark.parametrize("mistake", WORST_CASE_WRONG)
def test_linear_worst_case_mistakes_fail_and_are_named(mistake):
    from course_utils.checks import Mistake

    with pytest.raises(AssertionError) as caught:
        check_linear_worst_case_margin(WORST_CASE_WRONG[mistake])
    if isinstance(caught.value, Mistake):
        assert caught.value.name == mistake, (caught.value.name, str(caught.value))
    else:
        assert mistake in ("input changed in place", "the library"), str(caught.value)
