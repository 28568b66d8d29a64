"""Defenses against model inversion trained through the same trainer as label smoothing: MID, BiDO, TL-DMI,
random erasing (MIDRE) and Trap-MID.

    cfg = DefenseConfig(kind="mid", beta=0.01)
    defense = build_defense(cfg)
    model = defense.wrap(build_model(...))
    defense.prepare(model, scenario, train_cfg, device)   # fresh runs only (TL-DMI pretrains here)
    defense.attach(model)
    x, y = defense.train_batch(model, x, y, gen)
    loss = defense.loss(ls_loss, logits, y) + defense.extra_loss(model, x, y, logits)
"""
from __future__ import annotations

from .base import DEFENSES, Defense, PrepareContext
from .bido import BiDO
from .config import DefenseConfig
from .hsic import centre, gaussian_kernel, linear_kernel, nhsic, normaliser
from .mid import MID, VariationalBottleneck, gaussian_kl, std_of
from .random_erasing import RandomErasing
from .tl_dmi import TLDMI, freeze, layers, pretraining_data
from .trap_mid import TrapMID, blend, trapdoor_labels


def build_defense(cfg: DefenseConfig | dict | None) -> Defense:
    """The Defense for a config (a DefenseConfig, its dict form as stored in checkpoints, or None)."""
    if cfg is None:
        return Defense()
    if isinstance(cfg, dict):
        # checkpoints written before BiDO followed its authors stored sigma: null (median heuristic); the
        # architecture a loaded model needs does not depend on it
        cfg = DefenseConfig.model_validate({k: v for k, v in cfg.items() if not (k == "sigma" and v is None)})
    return DEFENSES.get(cfg.kind).from_config(cfg)


__all__ = ["BiDO", "DEFENSES", "Defense", "DefenseConfig", "MID", "PrepareContext", "RandomErasing", "TLDMI", "TrapMID",
           "VariationalBottleneck", "blend", "build_defense", "centre", "freeze", "gaussian_kernel", "gaussian_kl",
           "layers", "linear_kernel", "nhsic", "normaliser", "pretraining_data", "std_of", "trapdoor_labels"]
