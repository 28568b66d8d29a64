"""delta_eval: how close attack images come to real private images of their class, in feature space."""
from __future__ import annotations

import torch
from torch import nn

from .features import check_images, check_labels, extract_features


def nearest_class_distances(attack_feats: torch.Tensor, attack_labels: torch.Tensor,
                            private_feats: torch.Tensor, private_labels: torch.Tensor) -> torch.Tensor:
    """Per attack sample: the squared L2 distance to the nearest private sample of the same label, (n,).

    Computed class by class in float64 (the squared distance is a difference of large squared norms,
    which loses digits in float32 when features are big).
    """
    for name, f in (("attack_feats", attack_feats), ("private_feats", private_feats)):
        if f.dim() != 2:
            raise ValueError(f"{name} must be (N, F), got {tuple(f.shape)}")
    if attack_feats.shape[1] != private_feats.shape[1]:
        raise ValueError(f"feature widths differ: attack {attack_feats.shape[1]} vs private {private_feats.shape[1]}")
    attack_labels = check_labels(attack_labels, attack_feats.shape[0], name="attack labels")
    private_labels = check_labels(private_labels, private_feats.shape[0], name="private labels")
    out = torch.empty(attack_feats.shape[0], dtype=torch.float64)
    for c in attack_labels.unique().tolist():
        rows = attack_labels == c
        ref = private_feats[private_labels == c].double()
        if ref.shape[0] == 0:
            raise ValueError(f"no private sample of attacked class {c}; private labels present: "
                             f"{sorted(private_labels.unique().tolist())}")
        out[rows] = torch.cdist(attack_feats[rows].double(), ref).min(dim=1).values.square()
    return out


def feature_distance(eval_model: nn.Module, attack_images: torch.Tensor, attack_labels: torch.Tensor,
                     private_images: torch.Tensor, private_labels: torch.Tensor, batch_size: int = 256) -> float:
    """delta_eval (PAPER.md section 5): mean over attack images of the squared L2 distance between its
    penultimate features (eval_model.features) and those of the nearest private training image of the
    attacked class. Lower means the attack recovered something closer to real training data."""
    check_images(attack_images, "attack images")
    check_images(private_images, "private images")
    if attack_images.shape[0] == 0:
        raise ValueError("cannot measure delta_eval on zero attack images")
    d = nearest_class_distances(extract_features(eval_model, attack_images, batch_size), attack_labels,
                                extract_features(eval_model, private_images, batch_size), private_labels)
    return d.mean().item()
