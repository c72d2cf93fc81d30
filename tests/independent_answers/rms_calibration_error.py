def rms_calibration_error(confidence, correct, bin_size=100):
    """RMS calibration error with adaptive bins of `bin_size` predictions (the last bin takes
    the remainder), each bin weighted by its share of the predictions, as a float."""
    import math
    confidence = confidence.detach().reshape(-1).double().cpu()
    correct = correct.detach().reshape(-1).double().cpu()
    n = confidence.numel()
    if n == 0:
        return 0.0
    order = torch.sort(confidence, stable=True).indices  # least to most confident
    confidence, correct = confidence[order], correct[order]
    n_bins = max(1, n // bin_size)
    total = 0.0
    for b in range(n_bins):
        start = b * bin_size
        end = n if b == n_bins - 1 else (b + 1) * bin_size  # the last bin takes the remainder
        n_b = end - start
        conf_b = confidence[start:end].mean().item()
        acc_b = correct[start:end].mean().item()
        total += n_b / n * (conf_b - acc_b) ** 2
    return float(math.sqrt(total))
