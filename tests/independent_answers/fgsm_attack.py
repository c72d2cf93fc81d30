def fgsm_attack(model, x, y, eps):
    """FGSM: one step of size eps along the sign of the loss gradient, clamped to [0, 1]."""
    x_adv = x.clone().detach().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y)
    grad, = torch.autograd.grad(loss, x_adv)
    x_adv = x_adv.detach() + eps * grad.sign()
    return x_adv.clamp(0, 1).detach()
