"""lsmia_ext: fused label-smoothing kernels and a toolkit to measure and defend against model inversion.

Public API (everything else is internal):
  fused_ls_ce, LabelSmoothingCrossEntropy, AlphaSchedule      -- the loss for any alpha <= 1
  fused_latent_adam_, LatentAdam                               -- batched latent optimiser step
  DataConfig, load_scenario, build_model, load_classifier      -- data and models
  TrainConfig, train_classifier                                -- targets / evaluation models
  PriorConfig, train_prior, load_generator                     -- generator priors
  AttackConfig, run_attack                                     -- PPA, GMI, MI-Face
  evaluate_attack                                              -- the metrics of one attack run
  load_experiment_config, run_experiment                       -- the whole study
  load_audit_config, run_audit                                 -- audit a model trained anywhere
The stage entry points (and AlphaSchedule, which lives with the trainer in lsmia_ext.train) are
imported on first use, so `import lsmia_ext` stays light; the kernels' Python side is lsmia_ext.ops.
"""
import importlib

from .ops import (LabelSmoothingCrossEntropy, LatentAdam, cpu_kernel_isa, cuda_kernels_built, fused_latent_adam_,
                  fused_ls_ce)

_LAZY = {
    "AlphaSchedule": "train",
    "DataConfig": "data", "load_scenario": "data",
    "build_model": "models", "load_classifier": "models",
    "TrainConfig": "train", "train_classifier": "train",
    "PriorConfig": "priors", "train_prior": "priors", "load_generator": "priors",
    "AttackConfig": "attacks", "run_attack": "attacks",
    "evaluate_attack": "metrics",
    "load_experiment_config": "experiment", "run_experiment": "experiment",
    "load_audit_config": "audit", "run_audit": "audit",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lsmia_ext' has no attribute {name!r}")


__all__ = [
    "LabelSmoothingCrossEntropy",
    "LatentAdam",
    "cpu_kernel_isa",
    "cuda_kernels_built",
    "fused_latent_adam_",
    "fused_ls_ce",
    *_LAZY,
]
__version__ = "0.1.0"
