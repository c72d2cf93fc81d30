"""Notebook 03's hidden check accepts the solution and rejects the usual mistakes of an
adversarial training step (FGSM with a random start, Wong et al. 2020)."""
import re

import pytest
import torch
import torch.nn.functional as F

from course_utils import attacks
from course_utils.checks.defences import check_adversarial_training_step
from course_utils.train import fit


def adversarial_training_step(model, optimizer, x, y, eps, alpha):
    """The notebook's solution."""
    delta = torch.empty_like(x).uniform_(-eps, eps)
    x_start = (x + delta).clamp(0, 1).requires_grad_(True)
    loss = F.cross_entropy(model(x_start), y)
    (grad,) = torch.autograd.grad(loss, x_start)
    delta = (x_start.detach() - x + alpha * grad.sign()).clamp(-eps, eps)
    x_adv = (x + delta).clamp(0, 1).detach()
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def wong_reference(model, optimizer, x, y, eps, alpha):
    """Wong et al.'s own code shape: backward() for the attack, zero_grad before the update."""
    model.train()
    delta = torch.zeros_like(x).uniform_(-eps, eps)
    delta.data = torch.max(torch.min(delta, 1 - x), 0 - x)
    delta.requires_grad = True
    loss = F.cross_entropy(model(x + delta), y)
    loss.backward()
    grad = delta.grad.detach()
    delta.data = torch.clamp(delta + alpha * torch.sign(grad), -eps, eps)
    delta.data = torch.max(torch.min(delta, 1 - x), 0 - x)
    delta = delta.detach()
    loss = F.cross_entropy(model(x + delta), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss)


def make_step(*, random_start=True, step="alpha", sign=1.0, project=True, clamp=True, train_on="adv",
              train_mode=True, zero_grad="before_update", attack_backward=False, returns="float",
              start="uniform", inplace=False, grad_at="start", step_from="clamped_start"):
    """The solution with one mistake switched on."""
    def step_fn(model, optimizer, x, y, eps, alpha):
        if zero_grad == "first":
            optimizer.zero_grad()
        if start == "uniform":
            delta = torch.empty_like(x).uniform_(-eps, eps) if random_start else torch.zeros_like(x)
        else:
            delta = torch.rand_like(x) * eps
        x_start = (x + delta).clamp(0, 1).requires_grad_(True)
        if attack_backward:
            model.train()
            F.cross_entropy(model(x_start), y).backward()
            grad = x_start.grad
        else:
            point = x_start if grad_at == "start" else x.clone().requires_grad_(True)
            grad = torch.autograd.grad(F.cross_entropy(model(point), y), point)[0]
        size = alpha if step == "alpha" else eps
        base = x_start.detach() - x if step_from == "clamped_start" else delta  # "draw": the unclamped draw
        delta = base + sign * size * grad.sign()
        if project:
            delta = delta.clamp(-eps, eps)
        x_adv = (x + delta)
        if clamp:
            x_adv = x_adv.clamp(0, 1)
        x_adv = x_adv.detach()
        if inplace:
            x.copy_(x_adv)
            x_adv = x
        model.train(train_mode)
        inputs = {"adv": x_adv, "clean": x}[train_on]
        loss = F.cross_entropy(model(inputs), y)
        if zero_grad == "before_update":
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"float": loss.item(), "tensor": loss, "clean_loss": float(F.cross_entropy(model(x), y))}[returns]
    return step_fn


def update(model, optimizer, x_adv, y):
    """The training half of a step, for the variants that get x_adv from the library."""
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def library_step(model, optimizer, x, y, eps, alpha):
    x_adv, _ = attacks.AdversarialTransform(model, eps, method="fgsm_rs", alpha=alpha)(x, y)
    return update(model, optimizer, x_adv, y)


def library_pgd_step(model, optimizer, x, y, eps, alpha):
    return update(model, optimizer, attacks.pgd(model, x, y, eps, alpha, 1), y)


def fit_step(model, optimizer, x, y, eps, alpha):
    history = fit(model, [(x, y)], epochs=1, optimizer=optimizer, schedule=None, progress=False, device="cpu",
                  batch_transform=lambda a, b: (a, b))
    return history.train_loss[-1]


def two_optimizer_steps(model, optimizer, x, y, eps, alpha):
    make_step()(model, optimizer, x, y, eps, alpha)
    return make_step()(model, optimizer, x, y, eps, alpha)


def lowers_the_learning_rate(model, optimizer, x, y, eps, alpha):
    """Tampers with the fixture: sets the optimizer's learning rate to 0, so the step changes nothing."""
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    return adversarial_training_step(model, optimizer, x, y, eps, alpha)


def steps_twice_and_hides_it(model, optimizer, x, y, eps, alpha):
    """Takes two optimizer steps and deletes the second from the optimizer's record."""
    loss = adversarial_training_step(model, optimizer, x, y, eps, alpha)
    optimizer.step()
    optimizer.steps.pop()
    return loss


def records_but_never_steps(model, optimizer, x, y, eps, alpha):
    """Makes the forward passes and the record of a step, but leaves the weights where they were."""
    before = [p.detach().clone() for p in model.parameters()]
    loss = adversarial_training_step(model, optimizer, x, y, eps, alpha)
    with torch.no_grad():
        for p, b in zip(model.parameters(), before):
            p.copy_(b)
    return loss


WRONG = {
    "no random start": make_step(random_start=False),
    "random start with torch.rand (not centred)": make_step(start="rand"),
    "step of eps instead of alpha": make_step(step="eps"),
    "wrong gradient sign": make_step(sign=-1.0),
    "not projecting onto the eps-ball": make_step(project=False),
    "not clamping to [0, 1]": make_step(clamp=False),
    "optimizer step on clean images": make_step(train_on="clean"),
    "update in eval mode": make_step(train_mode=False),
    "gradients never zeroed": make_step(zero_grad="never"),
    "zeroed before the attack's backward only": make_step(zero_grad="first", attack_backward=True),
    "attack backward, never zeroed": make_step(zero_grad="never", attack_backward=True),
    "gradient at clean x": make_step(grad_at="x"),
    # the literal reading of the exercise text before it said that delta is clamped first
    "steps from the unclamped uniform draw": make_step(step_from="draw"),
    "returns a tensor": make_step(returns="tensor"),
    "returns the clean loss after the step": make_step(returns="clean_loss"),
    "changes x in place": make_step(inplace=True),
    "calls AdversarialTransform": library_step,
    "calls course_utils.attacks.pgd": library_pgd_step,
    "calls course_utils.train.fit": fit_step,
    "two optimizer steps": two_optimizer_steps,
    "tamper: learning rate set to 0": lowers_the_learning_rate,
    "tamper: a second step hidden from the record": steps_twice_and_hides_it,
    "tamper: the record of a step, the weights unchanged": records_but_never_steps,
}


def test_solution_passes():
    check_adversarial_training_step(adversarial_training_step)


def test_wong_et_al_reference_code_passes():
    check_adversarial_training_step(wong_reference)


def test_the_step_factory_without_a_mistake_passes():
    check_adversarial_training_step(make_step())


@pytest.mark.parametrize("mistake", WRONG)
def test_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_adversarial_training_step(WRONG[mistake])


@pytest.mark.parametrize("mistake, message", [
    ("no random start", "no random start"),
    ("step of eps instead of alpha", "the step size is alpha"),
    ("wrong gradient sign", "against the gradient"),
    ("not projecting onto the eps-ball", "more than eps"),
    ("not clamping to [0, 1]", "clamp x_adv to [0, 1]"),
    ("optimizer step on clean images", "clean images"),
    ("update in eval mode", "model.train()"),
    ("gradients never zeroed", "left over"),
    ("zeroed before the attack's backward only", "attack's backward"),
    ("calls AdversarialTransform", "AdversarialTransform"),
    ("steps from the unclamped uniform draw", "Step from the clamped start of step 1"),
    ("changes x in place", "changed its input x in place"),
    ("tamper: learning rate set to 0", "changed the settings of optimizer"),
    ("tamper: a second step hidden from the record", "not one optimizer step"),
    ("tamper: the record of a step, the weights unchanged", "not one optimizer step"),
])
def test_failures_name_the_mistake(mistake, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_adversarial_training_step(WRONG[mistake])
