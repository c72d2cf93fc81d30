def rotate_batch(x):
    """All four rotations of every image in x (N, C, H, W): (x_rot (4N, C, H, W), labels (4N,) in 0..3)."""
    import torch

    n = x.shape[0]
    # four blocks: [all images turned by 0 | by 90 | by 180 | by 270] (counter-clockwise)
    x_rot = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], dim=0)
    labels = torch.arange(4, dtype=torch.long, device=x.device).repeat_interleave(n)
    return x_rot, labels
