"""The gradient stage shared by PPA, GMI and MI-Face: Adam on a (B, ...) tensor of latents (or
pixels), each row pulled toward its own label through a random crop of the rendered image. The
optimiser is lsmia_ext.LatentAdam: torch.optim.Adam's math per row, one fused kernel call per step."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..ops import LatentAdam
from .config import AttackConfig
from .identity import ensemble_loss, ensemble_members, identity_loss
from .views import draw_views, random_view, target_geometry

Render = Callable[[torch.Tensor], torch.Tensor]


def descend(cfg: AttackConfig, target: nn.Module, latents: torch.Tensor, labels: torch.Tensor,
            render: Render, rng: torch.Generator, penalty: Render | None = None,
            project: Callable[[torch.Tensor], None] | None = None, surrogates: Sequence[nn.Module] = ()) -> torch.Tensor:
    """cfg.optim.steps steps on `latents`; returns the optimised latents (detached).

    render(latents) -> images in [0, 1]; penalty(images) -> (B,) is added to the identity loss;
    project(latents) runs in place after every step (MI-Face keeps pixels in [0, 1]); with surrogates the
    identity loss of a row is the mean of the target's and every surrogate's (model augmentation).
    """
    channels, size = target_geometry(target)
    loss_fn = identity_loss(cfg.optim.loss)
    members = ensemble_members(cfg, target, surrogates)
    x = latents.detach().clone().requires_grad_(True)
    opt = LatentAdam([x], lr=cfg.optim.lr, betas=cfg.optim.betas)
    chunk = cfg.optim.micro_batch or x.shape[0]
    for _ in range(cfg.optim.steps):
        opt.zero_grad(set_to_none=True)
        u = draw_views(x.shape[0], rng)
        # Rows are independent, so forward/backward in chunks (bounded memory) and one step for all.
        for start in range(0, x.shape[0], chunk):
            sl = slice(start, start + chunk)
            images = render(x[sl])
            view = random_view(images, channels, size, cfg.optim.crop_scale, cfg.optim.crop_ratio, 0.0, u[sl])
            loss = ensemble_loss(loss_fn, members, view, labels[sl])
            if penalty is not None:
                loss = loss + penalty(images)
            # Summed, so each row's gradient is that of its own loss alone. Adam is invariant to the
            # loss scale (up to eps), so this equals PPA's batch mean without tying a candidate's
            # path to how many classes share its batch.
            loss.sum().backward()
        opt.step()
        if project is not None:
            with torch.no_grad():
                project(x)
    return x.detach()
