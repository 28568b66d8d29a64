"""The label smoothing study end to end (`lsmia experiment`): prior, evaluation model, one target per
entry of `targets` and seed, PPA against each, metrics, results.json and report.md/report.html.

    from lsmia_ext.experiment import load_experiment_config, run_experiment
    cfg = load_experiment_config("experiment-fmnist", seeds=3)
    results = run_experiment(cfg, "runs/study")   # reuses every stage whose config hash matches

A study longer than one session runs in seed shards (seeds=[0, 1] here, [2, 3] elsewhere) and is
assembled from their results.json files without running a stage (merge.py):

    merge_shards(load_experiment_config("experiment-fmnist-defenses"), ["a/results.json", "b/results.json"], "runs/all")
"""
from .config import DEFAULT_CONFIG, PRESETS, ExperimentConfig, StageRef, TargetEntry, load_experiment_config
from .merge import merge_shards
from .pipeline import RESULTS_FILE, run_experiment
from .report import summarise

__all__ = ["DEFAULT_CONFIG", "PRESETS", "RESULTS_FILE", "ExperimentConfig", "StageRef", "TargetEntry",
           "load_experiment_config", "merge_shards", "run_experiment", "summarise"]
