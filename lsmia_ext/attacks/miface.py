"""MI-Face (Fredrikson et al. 2015): gradient descent on the pixels themselves, no generator.

The baseline that shows what a generative prior adds: without one, the optimum of the identity loss
is usually an adversarial pattern, only held back by total-variation and L2 penalties.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .config import ATTACKS, Attack, AttackConfig
from .descent import descend
from .results import batch_result
from .views import target_geometry


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels per image (B,): penalises high-frequency noise."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(dim=1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(dim=1)
    return dx + dy


def attack_batch(cfg: AttackConfig, target: nn.Module, classes: torch.Tensor, rng: torch.Generator,
                 device: torch.device, **_) -> dict:
    channels, size = target_geometry(target)
    settings = cfg.miface
    labels = classes.repeat_interleave(settings.samples_per_class)
    shape = (labels.numel(), channels, size, size)
    if settings.init == "grey":
        start = torch.full(shape, 0.5)
    else:
        start = torch.rand(shape, generator=rng)

    def penalty(images):
        return settings.tv_weight * total_variation(images) + settings.l2_weight * images.square().flatten(1).mean(1)

    t0 = time.perf_counter()
    images = descend(cfg, target, start.to(device), labels, lambda x: x, rng, penalty=penalty,
                     project=lambda x: x.clamp_(0.0, 1.0))
    timings = {"optimisation_s": time.perf_counter() - t0, "image_steps": labels.numel() * cfg.optim.steps}
    return batch_result(cfg, target, images, labels, None, None, timings)


# No model augmentation: LOMMA augments generative attacks (GMI, KEDMI); MI-Face has no generator to draw
# surrogate training images from, and its pixel-space optimum is an adversarial pattern of the models it
# descends on, which an ensemble changes into another adversarial pattern rather than a likelier image.
ATTACKS.register("miface", Attack(attack_batch, needs_prior=False,
                                  no_augmentation="it descends on raw pixels without a generator prior; "
                                                  "LOMMA augments generative attacks only"))
