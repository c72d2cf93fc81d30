def batch_accuracy(logits, labels):
    """Fraction of rows of `logits` (N, C) whose argmax equals `labels` (N,), as a float."""
    predictions = logits.argmax(dim=1)
    labels = labels.to(predictions.device).reshape(-1)
    if predictions.numel() == 0:
        return 0.0
    return (predictions == labels).float().mean().item()
