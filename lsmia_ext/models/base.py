"""The Classifier contract every model follows: [0, 1] input normalised inside, .features(x), .head."""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """trunk(normalised x) -> (B, feature_dim) penultimate features; head: Linear(feature_dim, num_classes).

    The input normalisation (x - 0.5) / 0.5 is the paper's Normalize(0.5, 0.5); doing it inside the model
    means attacks and metrics can hand over [0, 1] images without knowing the training recipe.
    """

    def __init__(self, trunk: nn.Module, feature_dim: int, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim, self.num_classes = feature_dim, num_classes
        self.in_channels, self.image_size = in_channels, image_size

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects images (B, {self.in_channels}, H, W) in [0, 1], "
                             f"got shape {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.trunk((x - 0.5) / 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, in_channels={self.in_channels}, "
                f"image_size={self.image_size}, feature_dim={self.feature_dim}")
