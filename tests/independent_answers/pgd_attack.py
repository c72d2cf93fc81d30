def pgd_attack(model, x, y, eps, alpha, steps, random_start=True):
    """L-inf PGD: `steps` signed gradient steps of size alpha, each projected onto the eps-ball
    around the original x and clamped to [0, 1]; from a uniform random start if `random_start`."""
    x_orig = x.clone().detach()
    x_adv = x.clone().detach()
    if random_start:
        x_adv = (x_adv + torch.empty_like(x_adv).uniform_(-eps, eps)).clamp(0, 1).detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x_orig - eps), x_orig + eps)
        x_adv = x_adv.clamp(0, 1).detach()
    return x_adv.detach()
