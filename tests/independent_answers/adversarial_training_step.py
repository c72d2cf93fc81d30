def adversarial_training_step(model, optimizer, x, y, eps, alpha):
    """One step of FGSM adversarial training with a random start (Wong et al. 2020); returns the loss."""
    import torch
    import torch.nn.functional as F

    # 1. random start in the eps-ball, clamped so that x + delta stays an image in [0, 1]
    delta = torch.empty_like(x).uniform_(-eps, eps)
    delta = (x + delta).clamp(0, 1) - x

    # 2. gradient of the mean cross-entropy at x + delta with respect to the input
    x_start = (x + delta).detach().requires_grad_(True)
    attack_loss = F.cross_entropy(model(x_start), y)
    grad = torch.autograd.grad(attack_loss, x_start)[0]

    # 3. one FGSM step of size alpha from the clamped start, projected onto the eps-ball
    delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
    x_adv = (x + delta).clamp(0, 1).detach()

    # 4. the update, in train mode
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    # 5. the training loss as a Python float
    return loss.item()
