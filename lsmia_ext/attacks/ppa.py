"""Plug & Play Attack (Struppek et al. 2022), its three stages batched over all attacked classes.

Stage 1 scores one pool of latents (shared by every class) with the target; stage 2 optimises one w
(broadcast to all layers) per kept candidate, every class of the batch in one tensor; stage 3 keeps the candidates whose
confidence survives random crops and flips best.

Adaptive options (AttackConfig.selection_score, .augmentation): both selections rank by the softmax
confidence or by the logit margin, of the target alone or averaged over the target and its surrogates; the
identity loss of stage 2 is averaged over the same members (descent.py). results.pt's confidences stay the
target's own softmax confidences whatever the selections ranked by.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Sequence

import torch
from torch import nn

from .config import ATTACKS, Attack, AttackConfig
from .descent import descend
from .identity import ensemble_members
from .results import batch_result, render_all
from .views import confidences, draw_views, ensemble_scores, random_view, scores, target_geometry


@torch.no_grad()
def candidate_pool(cfg: AttackConfig, generator: nn.Module, seed: int, device: torch.device) -> torch.Tensor:
    """The S candidate w (S, w_dim): z from a fixed seed, mapped with truncation psi."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(cfg.initial.candidates, generator.z_dim, generator=g).to(device)
    ws = [generator.mapping(chunk, truncation_psi=cfg.initial.truncation_psi)[:, 0]
          for chunk in z.split(cfg.score_batch_size)]
    return torch.cat(ws)


def default_selection(cfg: AttackConfig, surrogates: Sequence[nn.Module]) -> bool:
    """True when the selections rank by the target's own confidence (PPA as published)."""
    return cfg.selection_score == "confidence" and not surrogates


@torch.no_grad()
def score_pool(cfg: AttackConfig, target: nn.Module, generator: nn.Module, pool: torch.Tensor,
               surrogates: Sequence[nn.Module] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(target confidences (S, K), selection scores (S, K)) of the pool's images, synthesised chunk by chunk to
    bound memory; the scores are the confidences themselves unless the selection is adaptive."""
    default = default_selection(cfg, surrogates)
    conf, score = [], []
    for w in pool.split(cfg.score_batch_size):
        images = generator.synthesis(w)
        conf.append(confidences(target, images, cfg.hflip, cfg.score_batch_size))
        score.append(conf[-1] if default else
                     scores(ensemble_members(cfg, target, surrogates), images, cfg.hflip, cfg.score_batch_size,
                            cfg.selection_score))
    return torch.cat(conf), torch.cat(score)


def initial_selection(pool: torch.Tensor, pool_score: torch.Tensor, classes: torch.Tensor, keep: int,
                      pool_conf: torch.Tensor | None = None):
    """Top `keep` w per class by that class's score: (w (C*keep, w_dim) grouped by class, (C, keep) values of
    pool_conf (default: the scores) of the kept candidates, in the same order)."""
    top, idx = pool_score[:, classes].topk(keep, dim=0)  # (keep, C), best first
    if pool_conf is not None:
        top = pool_conf[:, classes].gather(0, idx)
    return pool[idx.T.reshape(-1)], top.T.contiguous()


@torch.no_grad()
def final_selection(cfg: AttackConfig, target: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    n_classes: int, rng: torch.Generator, surrogates: Sequence[nn.Module] = ()) -> torch.Tensor:
    """Indices (C*M,) of the M images per class with the highest mean score (cfg.selection_score, averaged over
    the target and its surrogates) over T random views.

    `images` are grouped by class (n_classes blocks of equal size); indices keep that grouping.
    """
    per_class = images.shape[0] // n_classes
    keep, transforms = cfg.final.keep, cfg.final.transforms
    if transforms == 0 or keep == per_class:
        return torch.arange(images.shape[0], device=images.device)
    channels, size = target_geometry(target)
    hflip_p = 0.5 if cfg.hflip else 0.0
    members = ensemble_members(cfg, target, surrogates)
    score = torch.zeros(images.shape[0], device=images.device)
    for _ in range(transforms):
        u = draw_views(images.shape[0], rng)
        for sl in _slices(images.shape[0], cfg.score_batch_size):
            view = random_view(images[sl], channels, size, cfg.final.crop_scale, cfg.final.crop_ratio, hflip_p, u[sl])
            s = ensemble_scores(members, view, cfg.selection_score)
            score[sl] += s.gather(1, labels[sl, None]).squeeze(1)
    best = (score / transforms).view(n_classes, per_class).topk(keep, dim=1).indices
    offsets = torch.arange(n_classes, device=images.device)[:, None] * per_class
    return (best + offsets).reshape(-1)


def _slices(n: int, step: int):
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def attack_batch(cfg: AttackConfig, target: nn.Module, generator: nn.Module, classes: torch.Tensor,
                 rng: torch.Generator, pool: torch.Tensor, pool_conf: torch.Tensor, pool_score: torch.Tensor,
                 surrogates: Sequence[nn.Module] = (), **_) -> dict:
    """PPA on one batch of classes; returns the batch's part of results.pt plus timings."""
    t0 = time.perf_counter()
    n_cls = classes.numel()
    w, init_conf = initial_selection(pool, pool_score, classes, cfg.initial.keep, pool_conf)
    labels = classes.repeat_interleave(cfg.initial.keep)
    # every kept candidate before optimisation, so "before" is scored on the initial selection itself,
    # independent of what the final selection later picks
    initial_images = render_all(generator.synthesis, w, cfg.score_batch_size)
    t1 = time.perf_counter()
    # the optimisation differentiates the generator's unclamped output (PPA: clip false); selection and
    # the delivered images use the clamped images that evaluation sees
    w = descend(cfg, target, w, labels, partial(generator.synthesis, clamp=False), rng, surrogates=surrogates)
    t2 = time.perf_counter()
    images = render_all(generator.synthesis, w, cfg.score_batch_size)
    keep = final_selection(cfg, target, images, labels, n_cls, rng, surrogates)
    t3 = time.perf_counter()
    timings = {"initial_selection_s": t1 - t0, "optimisation_s": t2 - t1, "final_selection_s": t3 - t2,
               "image_steps": labels.numel() * cfg.optim.steps}
    return batch_result(cfg, target, images[keep], labels[keep], w[keep], init_conf, timings,
                        (initial_images, labels))


ATTACKS.register("ppa", Attack(attack_batch, needs_prior=True))
