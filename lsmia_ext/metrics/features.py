"""Running a classifier over many [0, 1] images: penultimate features and logits, batched, no grad.

Attack images come at the generator's resolution (or the target's, for MI-Face), which need not be
the evaluation model's; `fit_to_model` resizes them (bilinear with antialiasing, so that downscaling
does not alias) and converts the channel count, so every metric can take images from any stage.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn


def check_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Raises unless `images` is a float tensor (B, C, H, W); returns it."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be floating point in [0, 1], got {images.dtype}")
    return images


def check_labels(labels: torch.Tensor, n: int, num_classes: int | None = None, name: str = "labels") -> torch.Tensor:
    """Raises unless `labels` is an integer tensor (n,) with values in [0, num_classes); returns int64."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be a 1-D integer tensor of class ids, got {shape}")
    if labels.numel() != n:
        raise ValueError(f"{name} has {labels.numel()} entries but there are {n} images")
    if num_classes is not None and n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


def fit_to_model(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images as `model` expects them: its channel count and its square input size.

    Grey images are repeated to 3 channels and RGB images averaged to 1; any other mismatch is an error.
    """
    channels = getattr(model, "in_channels", images.shape[1])
    size = getattr(model, "image_size", None)
    c = images.shape[1]
    if c != channels:
        if c == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1)
        elif c == 3 and channels == 1:
            images = images.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"images have {c} channels but the model takes {channels}; "
                             "only 1 <-> 3 channel conversion is supported")
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no grad for the block; the model's previous train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def _batched(model: nn.Module, images: torch.Tensor, batch_size: int,
             fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    check_images(images)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = model_device(model)
    outs = []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x = fit_to_model(model, images[start:start + batch_size].to(device, torch.float32))
            outs.append(fn(model, x).float().cpu())
    if not outs:  # zero images: ask the model for the width with one dummy row
        with eval_mode(model):
            dummy = torch.zeros(1, images.shape[1], images.shape[2], images.shape[3], device=device)
            width = fn(model, fit_to_model(model, dummy)).shape[1]
        return torch.zeros(0, width)
    return torch.cat(outs)


def extract_features(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Penultimate features `model.features(x)` of every image, (N, F) float32 on the CPU."""
    return _batched(model, images, batch_size, lambda m, x: m.features(x).flatten(1))


def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits `model(x)` of every image, (N, K) float32 on the CPU."""
    return _batched(model, images, batch_size, lambda m, x: m(x))
