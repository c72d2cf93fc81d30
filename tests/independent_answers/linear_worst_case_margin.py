import torch


def linear_worst_case_margin(weight, bias, x, y, eps):
    """For z = weight @ flatten(x) + bias: each image's smallest margin z_y - z_j over the classes
    j != y after the worst L-inf perturbation of size eps (pixels not kept in [0, 1])."""
    with torch.no_grad():
        weight = weight.detach()
        bias = bias.detach().to(device=weight.device, dtype=weight.dtype)
        x_flat = x.detach().reshape(x.shape[0], -1).to(device=weight.device, dtype=weight.dtype)
        y = y.detach().to(device=weight.device).long()
        num_classes = weight.shape[0]

        z = x_flat @ weight.T + bias                          # (N, K) clean logits
        clean_margin = z.gather(1, y[:, None]) - z            # (N, K): z_y - z_j

        # ||w_a - w_b||_1 for every pair of classes (K, K), one row at a time to keep memory small
        pair_l1 = torch.stack([(weight[a] - weight).abs().sum(1) for a in range(num_classes)])
        worst = clean_margin - float(eps) * pair_l1[y]        # (N, K): margin after the worst perturbation

        # the true class itself is not a competitor
        is_true = torch.nn.functional.one_hot(y, num_classes).bool()
        worst = worst.masked_fill(is_true, float("inf"))
        return worst.min(dim=1).values
