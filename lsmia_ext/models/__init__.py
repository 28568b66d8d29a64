"""Classifiers: a registry of plain constructors, all following the Classifier contract (base.py).

    model = build_model("small_cnn", num_classes=5, in_channels=1, image_size=28)
    logits, feats = model(x), model.features(x)          # x: [0, 1] images (B, C, H, W)
    target = load_classifier("runs/target")             # RUN_DIR/model.pt, eval mode
"""
from .base import Classifier
from .registry import (MODEL_FILE, MODELS, arch_of, available_models, build_model, classifier_state, load_classifier,
                       register_model)

__all__ = ["Classifier", "MODEL_FILE", "MODELS", "arch_of", "available_models", "build_model", "classifier_state",
           "load_classifier", "register_model"]
