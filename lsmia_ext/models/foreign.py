"""ForeignClassifier: any model file or user module behind the Classifier contract of lsmia_ext.models.

forward(x) takes [0, 1] images (B, C, H, W), maps them to the model's declared pixel range and
normalisation, and returns the logits. features(x) is the model's own `features` method when it has one
(penultimate features; a TorchScript module exports it with @torch.jit.export) and the logits otherwise:
the package's metrics read features of the *evaluation* model only, so a target without them loses
nothing in the audit.
"""
from __future__ import annotations

import torch
from torch import nn


class ForeignClassifier(nn.Module):
    def __init__(self, net: nn.Module, image_size: int, in_channels: int, num_classes: int,
                 value_range: tuple[float, float] = (0.0, 1.0), mean=(0.0,), std=(1.0,),
                 follows_mode: bool = True, source: str = "model"):
        super().__init__()
        self.net = net
        self.image_size, self.in_channels, self.num_classes = int(image_size), int(in_channels), int(num_classes)
        self.value_range, self.source = tuple(float(v) for v in value_range), source
        # a torch.export program cannot switch train/eval (its graph was captured in one mode)
        self.follows_mode = follows_mode
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(shape), persistent=False)
        self.has_features = callable(getattr(net, "features", None))
        self.feature_source = "the model's features()" if self.has_features else "logits (the model has no features())"

    def train(self, mode: bool = True):
        self.training = mode
        if self.follows_mode:
            self.net.train(mode)
        return self

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.source} expects images (B, {self.in_channels}, H, W) in [0, 1], "
                             f"got shape {tuple(x.shape)}")
        lo, hi = self.value_range
        return (lo + (hi - lo) * x - self.mean) / self.std

    @staticmethod
    def _first(out):
        return out[0] if isinstance(out, (tuple, list)) else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._first(self.net(self._prepare(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_features:
            return self._first(self.net.features(self._prepare(x))).flatten(1)
        return self.forward(x)

    def extra_repr(self) -> str:
        return (f"source={self.source}, num_classes={self.num_classes}, in_channels={self.in_channels}, "
                f"image_size={self.image_size}, value_range={self.value_range}, features={self.feature_source}")
