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
                 follows_mode: bool = True, source: str = "model", static_batch: int | None = None):
        super().__init__()
        self.net = net
        # a torch.export program exported without dynamic_shapes takes batches of exactly this size only
        self.static_batch = static_batch
        self.batch_note = (None if static_batch is None else
                           f"the program takes batches of exactly {static_batch} (exported without a dynamic batch "
                           f"dimension): fed in batches of {static_batch}, the last one padded by repeating its "
                           "last image and the padded outputs dropped")
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

    def _run(self, fn, x: torch.Tensor) -> torch.Tensor:
        """fn(x), or with a static batch size b: fn on chunks of b, the last padded, padding dropped."""
        b = self.static_batch
        if b is None or x.shape[0] == b:
            return self._first(fn(x))
        outs = []
        for chunk in x.split(b) if x.shape[0] else [x]:
            n = chunk.shape[0]
            pad = chunk[-1:] if n else chunk.new_zeros(1, *chunk.shape[1:])
            outs.append(self._first(fn(torch.cat([chunk, pad.expand(b - n, *chunk.shape[1:])])))[:n])
        return torch.cat(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.net, self._prepare(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_features:
            return self._run(self.net.features, self._prepare(x)).flatten(1)
        return self.forward(x)

    def extra_repr(self) -> str:
        return (f"source={self.source}, num_classes={self.num_classes}, in_channels={self.in_channels}, "
                f"image_size={self.image_size}, value_range={self.value_range}, features={self.feature_source}"
                + (f", static_batch={self.static_batch}" if self.static_batch is not None else ""))
