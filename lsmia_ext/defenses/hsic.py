"""Normalised HSIC as BiDO's code computes it (the HSIC-bottleneck work's `hsic_normalized_cca`).

For m samples x_i (rows flattened to d features):
  K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2 d))     Gaussian kernel, width sigma scaled by the dimension
  Kc   = K H,  H = I - 11^T / m                     centred (on the right only, as in the authors' code)
  R    = Kc (Kc + eps m I)^-1                       eps = 1e-5
  nHSIC(x, y) = trace(Rx Ry)
R's eigenvalues are lambda / (lambda + eps m) in [0, 1): nHSIC(x, x) counts the kernel's directions with
eigenvalue well above eps m, and nHSIC(x, y) counts how many of them x and y share, so it is near 0 for
independent variables and near nHSIC(x, x) for identical ones. With sigma = 5 the kernel is much wider than
standardised data, which keeps that count small (a full-rank kernel on both sides would give m - 1 whatever
the dependence). The label side of BiDO uses a linear kernel by default (see bido.py).
"""
from __future__ import annotations

import torch

SIGMA = 5.0
EPSILON = 1e-5


def _rows(x: torch.Tensor) -> torch.Tensor:
    if x.dim() < 2 or len(x) < 2:
        raise ValueError(f"HSIC needs a batch of at least 2 samples (B, ...), got shape {tuple(x.shape)}")
    # float64: the solve against Kc + eps m I has condition numbers up to ~m / (eps m) = 1e5
    return x.reshape(len(x), -1).double()


def gaussian_kernel(x: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2 d)) for x (m, ...) flattened to d features per row."""
    if not sigma > 0:
        raise ValueError(f"kernel width sigma must be > 0, got {sigma}")
    x = _rows(x)
    sq_norm = x.pow(2).sum(1)
    # expanded form instead of cdist: its gradient is finite on the zero diagonal
    sq = (sq_norm[:, None] + sq_norm[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    return torch.exp(-sq / (2.0 * sigma * sigma * x.shape[1]))


def linear_kernel(x: torch.Tensor) -> torch.Tensor:
    """K = X X^T for x (m, ...) flattened per row (BiDO's default kernel for the one-hot labels)."""
    x = _rows(x)
    return x @ x.T


def centre(k: torch.Tensor) -> torch.Tensor:
    """K H with H = I - 11^T / m: each row minus its mean (the authors centre on one side only)."""
    if k.dim() != 2 or k.shape[0] != k.shape[1] or k.shape[0] < 2:
        raise ValueError(f"expected an (m, m) kernel matrix with m >= 2, got shape {tuple(k.shape)}")
    return k - k.mean(dim=1, keepdim=True)


def normaliser(kc: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """R = Kc (Kc + eps m I)^-1 for a centred kernel matrix Kc (m, m)."""
    m = kc.shape[0]
    eye = torch.eye(m, dtype=kc.dtype, device=kc.device)
    # R = Kc A^-1  <=>  A^T R^T = Kc^T: a solve is more accurate than forming the inverse
    return torch.linalg.solve((kc + eps * m * eye).T, kc.T).T


def nhsic(kx: torch.Tensor, ky: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """trace(Rx Ry) of two (uncentred) kernel matrices of the same m samples."""
    if kx.shape != ky.shape:
        raise ValueError(f"nHSIC needs two kernel matrices of the same samples, got {tuple(kx.shape)} and "
                         f"{tuple(ky.shape)}")
    rx, ry = normaliser(centre(kx), eps), normaliser(centre(ky), eps)
    return (rx * ry.T).sum()  # = trace(Rx Ry) without the matrix product
