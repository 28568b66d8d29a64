"""The label smoothing study end to end (`lsmia experiment`): prior, evaluation model, one target per
entry of `targets` and seed, PPA against each, metrics, results.json and report.md/report.html.

    from lsmia_ext.experiment import load_experiment_config, run_experiment
    cfg = load_experiment_config("experiment-fmnist", seeds=3)
    results = run_experiment(cfg, "runs/study")   # reuses every stage whose config hash matches
"""
from .config import DEFAULT_CONFIG, PRESETS, ExperimentConfig, StageRef, TargetEntry, load_experiment_config
from .pipeline import RESULTS_FILE, run_experiment
from .report import summarise

__all__ = ["DEFAULT_CONFIG", "PRESETS", "RESULTS_FILE", "ExperimentConfig", "StageRef", "TargetEntry",
           "load_experiment_config", "run_experiment", "summarise"]
