def adversarial_filter(predict, images, labels, batch_size=256):
    """Indices (ascending, torch.long) of the images whose argmax prediction under `predict`
    differs from their label, computed in batches of at most `batch_size`, without gradients."""
    kept = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = predict(images[start:start + batch_size])
            batch_labels = labels[start:start + batch_size].to(logits.device)
            wrong = logits.argmax(dim=1) != batch_labels
            kept.append(wrong.nonzero().flatten().cpu() + start)  # indices into `images`
    if not kept:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(kept).long()
