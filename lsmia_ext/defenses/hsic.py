"""HSIC with Gaussian kernels (Gretton et al. 2005), the dependence measure BiDO penalises."""
from __future__ import annotations

from typing import Optional

import torch


def median_bandwidth(x: torch.Tensor) -> torch.Tensor:
    """Median heuristic: the median of the distinct pairwise Euclidean distances of the rows of x (B, D);
    detached, so the bandwidth is a per-batch constant and not something the model can game."""
    d = torch.cdist(x.detach(), x.detach())
    off = d[~torch.eye(len(x), dtype=torch.bool, device=x.device)]
    med = off.median() if off.numel() else d.new_ones(())
    return med if med > 0 else d.new_ones(())  # all rows equal: any bandwidth gives the same constant kernel


def gaussian_kernel(x: torch.Tensor, sigma: Optional[float] = None) -> torch.Tensor:
    """K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)) for x (B, ...) flattened per row; sigma None: median heuristic."""
    x = x.reshape(len(x), -1).float()
    s = median_bandwidth(x) if sigma is None else torch.tensor(float(sigma), device=x.device)
    if s <= 0:
        raise ValueError(f"kernel bandwidth sigma must be > 0, got {float(s)}")
    sq_norm = x.pow(2).sum(1)
    # expanded form instead of cdist: its gradient is finite on the zero diagonal
    sq = (sq_norm[:, None] + sq_norm[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    return torch.exp(-sq / (2 * s * s))


def hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased estimator tr(K H L H) / (m - 1)^2 with the centring matrix H = I - 11^T / m."""
    if k.dim() != 2 or k.shape != l.shape or k.shape[0] != k.shape[1]:
        raise ValueError(f"HSIC needs two (m, m) kernel matrices, got {tuple(k.shape)} and {tuple(l.shape)}")
    m = k.shape[0]
    if m < 2:
        raise ValueError(f"HSIC needs at least 2 samples, got {m}")
    h = torch.eye(m, device=k.device, dtype=k.dtype) - 1.0 / m
    return torch.trace(k @ h @ l @ h) / (m - 1) ** 2
