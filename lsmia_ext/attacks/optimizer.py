"""The optimiser of every attack: lsmia_ext.LatentAdam, Adam applied row by row to a (B, ...) batch
of latents or images in one fused kernel call per step (torch.optim.Adam's math per row)."""
from __future__ import annotations

import torch

from ..optim import LatentAdam


def latent_optimizer(param: torch.Tensor, lr: float, betas: tuple[float, float]) -> LatentAdam:
    return LatentAdam([param], lr=lr, betas=betas)
