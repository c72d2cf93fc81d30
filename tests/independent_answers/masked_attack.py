def masked_attack(model, x, target, mask, alpha, steps):
    """Targeted attack confined to a mask: from x, `steps` steps of alpha * sign(grad) that descend the
    target's loss on the pixels where mask is 1 (no eps-ball), each clamped to [0, 1]."""
    x_adv = x.clone().detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), target)
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = (x_adv - alpha * mask * grad.sign()).clamp(0, 1).detach()
    return x_adv.detach()
