def nt_xent_loss(z1, z2, temperature):
    """NT-Xent of SimCLR: z1[i], z2[i] (N, D) embed two views of image i; the mean over the 2N anchors."""
    import torch
    import torch.nn.functional as F

    n = z1.shape[0]
    # 1. stack the 2N embeddings and normalize every row to length 1
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    # cosine similarities divided by the temperature
    logits = (z @ z.T) / temperature
    # 3. leave out every anchor's similarity to itself
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    # 2. the positive of anchor a is a + N for a < N and a - N for a >= N
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])
    # 4. mean over all 2N anchors
    return F.cross_entropy(logits, targets)
