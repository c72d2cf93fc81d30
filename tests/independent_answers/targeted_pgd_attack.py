def targeted_pgd_attack(model, x, target, eps, alpha, steps):
    """Targeted L-inf PGD from x: descend the loss of the target classes, projecting onto the
    eps-ball around x and clamping to [0, 1] after every step."""
    x_orig = x.clone().detach()
    x_adv = x.clone().detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), target)
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() - alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x_orig - eps), x_orig + eps)
        x_adv = x_adv.clamp(0, 1).detach()
    return x_adv.detach()
