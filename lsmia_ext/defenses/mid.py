"""MID (Wang et al. 2021): a variational information bottleneck between the features and the class head.

The trunk's features f go to (mu, log_var) of a d-dim Gaussian; training samples z = mu + sigma * eps and
pays beta * KL(N(mu, sigma^2) || N(0, I)), which bounds the information the logits carry about the input.
At eval (attack) time z = mu, so the target an attacker sees is deterministic.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Defense


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(log_var)) || N(0, I)) summed over dimensions, averaged over the batch."""
    if mu.shape != log_var.shape or mu.dim() != 2:
        raise ValueError(f"mu and log_var must both be (B, d), got {tuple(mu.shape)} and {tuple(log_var.shape)}")
    mu, log_var = mu.float(), log_var.float()
    return 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1.0).sum(1).mean()


class VariationalBottleneck(nn.Module):
    """f (B, F) -> z (B, d); keeps the last (mu, log_var) for the KL term of the same forward pass."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.encoder = nn.Linear(in_dim, 2 * dim)
        self.dim = dim
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        mu, log_var = self.encoder(f).chunk(2, dim=1)
        log_var = log_var.clamp(-20.0, 20.0)  # exp() stays finite in float32 and bf16
        if not self.training:
            self.last = None
            return mu
        self.last = (mu, log_var)
        return mu + (0.5 * log_var).exp() * torch.randn_like(mu)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class MID(Defense):
    kind = "mid"

    def __init__(self, beta: float, bottleneck_dim: int):
        if beta < 0 or bottleneck_dim < 1:
            raise ValueError(f"MID needs beta >= 0 and bottleneck_dim >= 1, got {beta} and {bottleneck_dim}")
        self.beta, self.dim = beta, bottleneck_dim

    def wrap(self, model: nn.Module) -> nn.Module:
        """trunk -> Sequential(trunk, bottleneck); head -> Linear(d, K); .features(x) is then z (mu at eval)."""
        model.trunk = nn.Sequential(model.trunk, VariationalBottleneck(model.feature_dim, self.dim))
        model.head = nn.Linear(self.dim, model.num_classes)
        model.feature_dim = self.dim
        return model

    def extra_loss(self, model, x, y, logits):
        last = model.trunk[-1].last
        if last is None:
            raise RuntimeError("MID.extra_loss needs a training-mode forward pass of the wrapped model first")
        return self.beta * gaussian_kl(*last)
