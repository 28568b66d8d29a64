"""GMI (Zhang et al. 2020): latent search from random starts with the identity loss plus the GAN
discriminator as a realism prior (non-saturating: softplus(-D(G(w)))). No candidate selection. With model
augmentation the identity loss is averaged over the target and its surrogates (LOMMA's GMI variant)."""
from __future__ import annotations

import time
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .config import ATTACKS, Attack, AttackConfig
from .descent import descend
from .results import batch_result, render_all


def attack_batch(cfg: AttackConfig, target: nn.Module, generator: nn.Module, classes: torch.Tensor,
                 rng: torch.Generator, discriminator: nn.Module | None = None, surrogates=(), **_) -> dict:
    if discriminator is None:
        raise ValueError("GMI needs the prior's discriminator (RUN_DIR/discriminator.pt of the prior); "
                         "pass discriminator= or use --prior with a prior run directory")
    device = generator.w_avg.device
    settings = cfg.gmi
    labels = classes.repeat_interleave(settings.samples_per_class)
    z = torch.randn(labels.numel(), generator.z_dim, generator=rng).to(device)

    def from_z(latent):
        return generator.synthesis(generator.mapping(latent, truncation_psi=settings.truncation_psi), clamp=False)

    if settings.latent == "w":
        with torch.no_grad():
            start = generator.mapping(z, truncation_psi=settings.truncation_psi)[:, 0]
        render = partial(generator.synthesis, clamp=False)
    else:
        start, render = z, from_z

    def realism(images):
        return settings.disc_weight * F.softplus(-discriminator(images).reshape(-1))

    t0 = time.perf_counter()
    latents = descend(cfg, target, start, labels, render, rng, penalty=realism, surrogates=surrogates)
    t1 = time.perf_counter()
    images = render_all(render, latents, cfg.score_batch_size)
    timings = {"optimisation_s": t1 - t0, "image_steps": labels.numel() * cfg.optim.steps}
    return batch_result(cfg, target, images, labels, latents, None, timings)


ATTACKS.register("gmi", Attack(attack_batch, needs_prior=True))
