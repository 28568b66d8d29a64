"""Model inversion attacks: PPA (the paper's instrument), GMI and MI-Face.

Python API: run_attack(cfg, target, generator, out_dir, classes=None, discriminator=None,
data_config=None) -> summary dict; AttackConfig / load_attack_config; the identity losses.
CLI: `lsmia attack --config NAME_OR_PATH --target ... --prior ... --out RUN_DIR`.
"""
from .config import ATTACKS, AttackConfig, load_attack_config
from .identity import IDENTITY_LOSSES, ce_loss, identity_loss, max_margin_loss, poincare_loss
from .runner import run_attack

__all__ = ["ATTACKS", "AttackConfig", "IDENTITY_LOSSES", "ce_loss", "identity_loss", "load_attack_config",
           "max_margin_loss", "poincare_loss", "run_attack"]
