"""Evaluation metrics of model inversion attacks (PAPER.md section 5) and `lsmia evaluate`.

Pure functions on tensors; images are [0, 1] (B, C, H, W) at any resolution (resized to the scoring
model's input). FID, KID and PRDC use the evaluation model's penultimate features, not Inception-v3 (no
pretrained weights can be downloaded here), so their values compare within one study only.
"""
from .accuracy import accuracy_from_logits, attack_accuracy, target_utility, topk_accuracy, topk_hits
from .calibration import expected_calibration_error
from .distance import feature_distance, nearest_class_distances
from .evaluate import (FEATURE_EXTRACTOR, EvaluateConfig, KesConfig, PrivateReference, build_reference,
                       evaluate_attack, load_attack_results, score_attack, score_judges)
from .features import extract_features, fit_to_model, predict_logits
from .frechet import frechet_distance
from .judges import class_bootstrap_ci, judge_scores, nearest_class_scores, per_class_accuracy
from .kid import kernel_inception_distance
from .knowledge import knowledge_extraction
from .precision_recall import prdc, prdc_per_class

__all__ = [
    "FEATURE_EXTRACTOR", "EvaluateConfig", "KesConfig", "PrivateReference", "accuracy_from_logits", "attack_accuracy",
    "build_reference", "class_bootstrap_ci", "judge_scores", "nearest_class_scores", "per_class_accuracy", "topk_hits",
    "evaluate_attack", "expected_calibration_error", "extract_features", "feature_distance", "fit_to_model",
    "frechet_distance", "kernel_inception_distance", "knowledge_extraction", "load_attack_results",
    "nearest_class_distances", "predict_logits", "prdc", "prdc_per_class",
    "score_attack", "score_judges", "target_utility", "topk_accuracy",
]
