"""Frechet distance between two feature sets, each summarised by a Gaussian (the statistic behind FID).

Feature extractor: callers pass features of the *evaluation model* (its penultimate layer), not
Inception-v3 pool features: no pretrained Inception weights can be downloaded on these machines, and
the images are small grey digits/clothes, far from ImageNet. Numbers are therefore comparable within
one study (same evaluation model), not with FID values published elsewhere.
"""
from __future__ import annotations

import torch


def _mean_cov(feats: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
        raise ValueError(f"{name} must be a (N, F) tensor, got "
                         f"{tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__}")
    if feats.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples for a covariance, got {feats.shape[0]}")
    x = feats.double()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    mu = x.mean(dim=0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def _psd_sqrt(mat: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix; rounding-negative eigenvalues count as 0."""
    vals, vecs = torch.linalg.eigh((mat + mat.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def trace_sqrt_product(cov_a: torch.Tensor, cov_b: torch.Tensor) -> torch.Tensor:
    """tr((A B)^(1/2)) for PSD A, B, via the symmetric matrix A^(1/2) B A^(1/2), which has the same
    eigenvalues as A B. Unlike scipy.linalg.sqrtm of the non-symmetric A B, this never returns complex
    parts or NaN when the covariances are singular (fewer samples than feature dimensions)."""
    root_a = _psd_sqrt(cov_a)
    inner = root_a @ cov_b @ root_a
    return torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)) with unbiased covariances, in float64.

    Features (N, F) of each set; each set needs at least 2 samples. Tiny negative results from rounding
    are reported as 0."""
    mu_a, cov_a = _mean_cov(feats_a, "feats_a")
    mu_b, cov_b = _mean_cov(feats_b, "feats_b")
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature widths differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    d = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt_product(cov_a, cov_b)
    return max(d.item(), 0.0)
