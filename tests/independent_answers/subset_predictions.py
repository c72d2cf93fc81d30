def subset_predictions(logits_1k, indices_in_1k):
    """For each row of `logits_1k` (N, 1000), the ImageNet-1k index of the highest-scoring
    class among `indices_in_1k`, as a torch.long tensor (N,)."""
    indices = torch.as_tensor(list(indices_in_1k), dtype=torch.long, device=logits_1k.device)
    columns = logits_1k.index_select(1, indices).argmax(dim=1)  # positions within the subset
    return indices[columns].long()  # back to ImageNet-1k indices
