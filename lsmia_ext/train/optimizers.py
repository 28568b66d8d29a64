"""Optimiser and per-epoch learning-rate schedule from a TrainConfig."""
from __future__ import annotations

import torch

from .config import OptimConfig, ScheduleConfig


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int):
    """A scheduler stepped once at the end of every epoch (the paper's recipe counts milestones in epochs)."""
    if cfg.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
