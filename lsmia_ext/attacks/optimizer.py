"""The optimiser of every attack: Adam applied row by row to a (B, ...) batch of latents or images.

lsmia_ext.optim.LatentAdam is the fused version (one kernel for all rows, rows can be frozen);
until it is importable the attacks fall back to torch.optim.Adam, which has the same per-row math
because Adam is element-wise.
"""
from __future__ import annotations

import torch


def latent_optimizer(param: torch.Tensor, lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    try:
        from ..optim import LatentAdam
    except ImportError:
        return torch.optim.Adam([param], lr=lr, betas=betas)
    return LatentAdam([param], lr=lr, betas=betas)
