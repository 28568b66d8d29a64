"""Defenses against model inversion trained through the same trainer as label smoothing: MID, BiDO.

    cfg = DefenseConfig(kind="mid", beta=0.01)
    defense = build_defense(cfg)
    model = defense.wrap(build_model(...)); defense.attach(model)
    loss = ls_loss(logits, y) + defense.extra_loss(model, x, y, logits)
"""
from __future__ import annotations

from .base import Defense
from .bido import BiDO
from .config import DefenseConfig
from .hsic import gaussian_kernel, hsic, median_bandwidth
from .mid import MID, VariationalBottleneck, gaussian_kl


def build_defense(cfg: DefenseConfig | dict | None) -> Defense:
    """The Defense for a config (a DefenseConfig, its dict form as stored in checkpoints, or None)."""
    if cfg is None:
        return Defense()
    if isinstance(cfg, dict):
        cfg = DefenseConfig.model_validate(cfg)
    if cfg.kind == "mid":
        return MID(cfg.beta, cfg.bottleneck_dim)
    if cfg.kind == "bido":
        return BiDO(cfg.lambda_x, cfg.lambda_y, cfg.sigma, cfg.hidden_layers)
    return Defense()


__all__ = ["BiDO", "Defense", "DefenseConfig", "MID", "VariationalBottleneck", "build_defense", "gaussian_kernel",
           "gaussian_kl", "hsic", "median_bandwidth"]
