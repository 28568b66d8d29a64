"""Model inversion attacks: PPA (the paper's instrument), GMI and MI-Face.

Python API: run_attack(cfg, target, generator, out_dir, classes=None, discriminator=None,
data_config=None, surrogates=()) -> summary dict; AttackConfig / load_attack_config; the identity losses;
the adaptive suite (suite.py: ADAPTIVE, suite_overrides) and model augmentation's surrogates (surrogates.py).
CLI: `lsmia attack --config NAME_OR_PATH --target ... --prior ... --out RUN_DIR`.
"""
from .config import ATTACKS, SELECTION_SCORES, AttackConfig, AugmentationConfig, load_attack_config
from .identity import IDENTITY_LOSSES, ce_loss, identity_loss, max_margin_loss, poincare_loss
from .runner import run_attack

__all__ = ["ATTACKS", "AttackConfig", "AugmentationConfig", "IDENTITY_LOSSES", "SELECTION_SCORES", "ce_loss",
           "identity_loss", "load_attack_config", "max_margin_loss", "poincare_loss", "run_attack"]
