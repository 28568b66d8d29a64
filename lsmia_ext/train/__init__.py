"""Classifier training with positive, zero or negative label smoothing (`lsmia train`).

    from lsmia_ext.config import load_config
    from lsmia_ext.train import TrainConfig, train_classifier
    cfg = load_config(TrainConfig, "train-fmnist-target", ["loss.alpha=-0.05"])
    metrics = train_classifier(cfg, "runs/target-neg")     # resumable; returns the final metrics
"""
from .alpha_schedule import AlphaSchedule
from .config import LossConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig
from .evaluate import evaluate_classifier
from .loop import train_classifier

__all__ = ["AlphaSchedule", "LossConfig", "ModelConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "evaluate_classifier",
           "train_classifier"]
