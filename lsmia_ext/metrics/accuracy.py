"""Scores read off a classifier's predictions: attack accuracy (evaluation model on attack images) and
the target's own utility on held-out private data (accuracy, NLL, calibration)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .calibration import expected_calibration_error
from .features import check_images, check_labels, predict_logits


def _num_classes(model: nn.Module, logits: torch.Tensor) -> int:
    return int(getattr(model, "num_classes", logits.shape[1]))


def topk_hits(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(n,) bool: whether each row's label is among its k highest scores."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(dim=1)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the k largest logits."""
    if logits.shape[0] == 0:
        raise ValueError("cannot score zero images")
    return topk_hits(logits, labels, k).float().mean().item()


def attack_accuracy(eval_model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    topk: tuple[int, ...] = (1, 5), batch_size: int = 256,
                    class_category: list[int] | None = None) -> dict[str, float | None]:
    """Acc@k of the evaluation model on the attack images: the fraction it puts the attacked class in its
    top k. Returns {"acc1": ..., "acc5": ...}; an entry is None when the model has <= k classes, since
    top-k accuracy is then trivially 1 and would mislead. With `class_category` (the category of every
    class, for identity sub-classes) it adds "acc_category": the fraction whose top-1 class belongs to the
    attacked class's category (the attack found the right kind of image, if not the right identity).

    Images are [0, 1] at any resolution; they are resized to eval_model.image_size when they differ.
    """
    check_images(images, "attack images")
    logits = predict_logits(eval_model, images, batch_size)
    return accuracy_from_logits(logits, labels, topk, _num_classes(eval_model, logits), class_category)


def accuracy_from_logits(logits: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...] = (1, 5),
                         num_classes: int | None = None, class_category: list[int] | None = None) -> dict:
    """attack_accuracy's scores from logits (n, K) already computed; num_classes defaults to K."""
    ks = tuple(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"topk must be a non-empty tuple of positive integers, got {topk!r}")
    num_classes = num_classes or logits.shape[1]
    labels = check_labels(labels, logits.shape[0], num_classes, "attack labels")
    out = {f"acc{k}": (topk_accuracy(logits, labels, k) if k == 1 or num_classes > k else None) for k in ks}
    if class_category is not None:
        if len(class_category) != num_classes:
            raise ValueError(f"class_category lists {len(class_category)} classes, the model has {num_classes}")
        cat = torch.tensor(class_category)
        out["acc_category"] = (cat[logits.argmax(dim=1)] == cat[labels]).float().mean().item()
    return out


def target_utility(model: nn.Module, test_images: torch.Tensor, test_labels: torch.Tensor,
                   batch_size: int = 256, n_bins: int = 15) -> dict[str, float]:
    """The target's price for its defence: test accuracy, mean test negative log-likelihood and expected
    calibration error (label smoothing moves confidence, so calibration belongs in an LS study)."""
    check_images(test_images, "test images")
    logits = predict_logits(model, test_images, batch_size)
    labels = check_labels(test_labels, test_images.shape[0], _num_classes(model, logits), "test labels")
    probs = logits.softmax(dim=1)
    return {
        "test_acc": topk_accuracy(logits, labels, 1),
        "test_nll": F.cross_entropy(logits.double(), labels).item(),
        "ece": float(expected_calibration_error(probs, labels, n_bins=n_bins)),
    }
