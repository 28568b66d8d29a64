"""Defenses against model inversion trained through the same trainer as label smoothing: MID, BiDO.

    cfg = DefenseConfig(kind="mid", beta=0.01)
    defense = build_defense(cfg)
    model = defense.wrap(build_model(...)); defense.attach(model)
    loss = ls_loss(logits, y) + defense.extra_loss(model, x, y, logits)
"""
from __future__ import annotations

from .base import DEFENSES, Defense
from .bido import BiDO
from .config import DefenseConfig
from .hsic import centre, gaussian_kernel, linear_kernel, nhsic, normaliser
from .mid import MID, VariationalBottleneck, gaussian_kl, std_of


def build_defense(cfg: DefenseConfig | dict | None) -> Defense:
    """The Defense for a config (a DefenseConfig, its dict form as stored in checkpoints, or None)."""
    if cfg is None:
        return Defense()
    if isinstance(cfg, dict):
        # checkpoints written before BiDO followed its authors stored sigma: null (median heuristic); the
        # architecture a loaded model needs does not depend on it
        cfg = DefenseConfig.model_validate({k: v for k, v in cfg.items() if not (k == "sigma" and v is None)})
    return DEFENSES.get(cfg.kind).from_config(cfg)


__all__ = ["BiDO", "DEFENSES", "Defense", "DefenseConfig", "MID", "VariationalBottleneck", "build_defense", "centre",
           "gaussian_kernel", "gaussian_kl", "linear_kernel", "nhsic", "normaliser", "std_of"]
