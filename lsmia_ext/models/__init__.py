"""Classifiers: a registry of plain constructors, all following the Classifier contract (base.py).

    model = build_model("small_cnn", num_classes=5, in_channels=1, image_size=28)
    logits, feats = model(x), model.features(x)          # x: [0, 1] images (B, C, H, W)
    target = load_classifier("runs/target")             # RUN_DIR/model.pt (or a YAML model spec), eval mode
"""
from .base import Classifier
from .foreign import ForeignClassifier
from .loading import load_classifier, load_model, model_spec, sniff
from .registry import MODEL_FILE, MODELS, arch_of, available_models, build_model, classifier_state, register_model
from .spec import MODEL_KINDS, ModelSpec

__all__ = ["Classifier", "ForeignClassifier", "MODEL_FILE", "MODELS", "MODEL_KINDS", "ModelSpec", "arch_of",
           "available_models", "build_model", "classifier_state", "load_classifier", "load_model", "model_spec",
           "register_model", "sniff"]
