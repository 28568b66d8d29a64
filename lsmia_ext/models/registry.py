"""Model registry (plain constructors, as in timm), build_model, classifier checkpoints."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Optional

from torch import nn

from ..errors import build_or_explain
from ..registry import Registry
from ..runio import load_checkpoint
from .base import Classifier
from .small import small_cnn, small_resnet
from .torchvision_nets import TORCHVISION_ARCHS, torchvision_classifier

MODEL_FILE = "model.pt"
# name -> constructor(num_classes, in_channels, image_size, pretrained=None) -> Classifier
MODELS: Registry[Callable[..., Classifier]] = Registry("model")


def register_model(name: str, constructor: Callable[..., Classifier]) -> None:
    """Adds `constructor(num_classes, in_channels, image_size, pretrained=None) -> Classifier`."""
    MODELS.register(name, constructor)


def available_models() -> list[str]:
    return sorted(MODELS.names())


def _small(fn: Callable[..., Classifier], name: str) -> Callable[..., Classifier]:
    def build(num_classes: int, in_channels: int, image_size: int, pretrained: Optional[Path] = None) -> Classifier:
        if pretrained is not None:
            raise ValueError(f"{name} has no pretrained weights format; set model.pretrained: null")
        return fn(num_classes, in_channels, image_size)

    build.__doc__ = (fn.func if isinstance(fn, partial) else fn).__doc__
    return build


register_model("small_cnn", _small(small_cnn, "small_cnn"))
# twice the width and no dropout: a target that can fit the fine-grained identity classes to ~100 %
# training accuracy, as the paper's targets do
register_model("small_cnn_wide", _small(partial(small_cnn, width=32, dropout=0.0), "small_cnn_wide"))
# narrower small_cnn's (width w instead of 16): the "weaker hard-label model" control of the study
for _w in (2, 3, 4, 6, 8):
    register_model(f"small_cnn_w{_w}", _small(partial(small_cnn, width=_w), f"small_cnn_w{_w}"))
register_model("small_resnet", _small(small_resnet, "small_resnet"))
for _arch in TORCHVISION_ARCHS:
    register_model(_arch, torchvision_classifier(_arch))


def build_model(name: str, num_classes: int, in_channels: int, image_size: int,
                pretrained: Optional[str | Path] = None) -> Classifier:
    """A fresh classifier from the registry; `pretrained` is a local state dict file (torchvision nets)."""
    constructor = MODELS.get(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    return constructor(num_classes, in_channels, image_size,
                       pretrained=Path(pretrained) if pretrained is not None else None)


def arch_of(model: nn.Module, name: str) -> dict:
    return {"name": name, "num_classes": model.num_classes, "in_channels": model.in_channels,
            "image_size": model.image_size}


def classifier_state(model: Classifier, name: str, **extra) -> dict:
    """The RUN_DIR/model.pt payload: {"model": state_dict, "arch": {...}, **extra}."""
    return {"model": model.state_dict(), "arch": arch_of(model, name), **extra}


def classifier_from_checkpoint(path: Path, map_location="cpu") -> Classifier:
    """The classifier of a RUN_DIR/model.pt checkpoint (load_classifier, models/loading.py, is the
    entry point that also takes run directories and YAML model specs): eval mode, parameters frozen."""
    ckpt = load_checkpoint(path, map_location=map_location)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "arch" not in ckpt:
        raise ValueError(f"{path} is not a classifier checkpoint (needs keys 'model' and 'arch')")
    def build():
        arch = ckpt["arch"]
        model = build_model(arch["name"], arch["num_classes"], arch["in_channels"], arch["image_size"])
        if ckpt.get("defense"):  # MID adds a bottleneck layer; its eval forward is deterministic
            from ..defenses import build_defense

            model = build_defense(ckpt["defense"]).wrap(model)
        model.load_state_dict(ckpt["model"])
        return model

    model = build_or_explain(path, "classifier", build)
    model.to(map_location).eval().requires_grad_(False)
    return model
