"""Expected calibration error (Guo et al. 2017): how far a model's confidence is from its accuracy.

Label smoothing changes confidence directly (positive alpha caps it, negative alpha pushes it towards 1),
so the LS study reports ECE next to test accuracy.
"""
from __future__ import annotations

import torch


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """sum_b |B_b|/N * |accuracy(B_b) - mean confidence(B_b)| over n_bins equal-width confidence bins.

    probs: (N, K) class probabilities (rows sum to 1); labels: (N,) ints in [0, K). Confidence is the top
    probability; a bin holds confidences in (lo, hi] (the first bin also takes 0).
    """
    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, K), got shape {tuple(probs.shape)}")
    if labels.shape != (probs.shape[0],):
        raise ValueError(f"labels must be ({probs.shape[0]},) to match probs, got shape {tuple(labels.shape)}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    if probs.shape[0] == 0:
        raise ValueError("expected_calibration_error needs at least one sample, got N = 0")
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}), got range [{int(labels.min())}, "
                         f"{int(labels.max())}]")
    probs = probs.detach().double()
    if probs.min() < 0 or not torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-4):
        raise ValueError("probs rows must be probabilities (non-negative, summing to 1); pass softmax(logits)")
    conf, pred = probs.max(dim=1)
    correct = (pred == labels.to(pred.device)).double()
    # bin b covers (b/n, (b+1)/n]; ceil maps a confidence to its bin, 0 joins the first.
    bins = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1
    count = torch.zeros(n_bins, dtype=torch.float64, device=probs.device).index_add_(0, bins, torch.ones_like(conf))
    conf_sum = torch.zeros_like(count).index_add_(0, bins, conf)
    acc_sum = torch.zeros_like(count).index_add_(0, bins, correct)
    return float((conf_sum - acc_sum).abs().sum() / probs.shape[0])
