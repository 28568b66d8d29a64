"""torchvision ResNet-18/50/152, DenseNet-121 and Inception-v3 adapted to any class and channel count.

ImageNet weights cannot be downloaded here: `pretrained` is a local state dict file (torchvision's key
names, loaded with weights_only=True); without it the weights start random.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from .base import Classifier

# name -> (torchvision constructor name, attribute of the final classifier layer, minimum input side)
TORCHVISION_ARCHS = {
    "resnet18": ("resnet18", "fc", 32),
    "resnet50": ("resnet50", "fc", 32),
    "resnet152": ("resnet152", "fc", 32),
    "densenet121": ("densenet121", "classifier", 32),
    "inception_v3": ("inception_v3", "fc", 75),
}


def _read_state_dict(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} do not exist (give a local state dict file)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def _load_pretrained(net: nn.Module, path: Path, head_attr: str) -> None:
    """Loads every weight but the ImageNet head (whose class count differs); a missing key is an error."""
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(head_attr + ".")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"pretrained weights {path} do not fit {type(net).__name__}: {e}") from None
    missing = [k for k in missing if not k.startswith(head_attr + ".")]
    if missing or unexpected:
        raise ValueError(f"pretrained weights {path} do not fit {type(net).__name__}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


def _first_conv_path(net: nn.Module) -> str:
    return next(name for name, m in net.named_modules() if isinstance(m, nn.Conv2d))


def _adapt_input_channels(net: nn.Module, in_channels: int) -> None:
    """Swaps the first conv for one with `in_channels` inputs; RGB filters are summed for grey input
    (keeps pretrained responses to a grey image equal to those of the same image repeated to RGB)."""
    path = _first_conv_path(net)
    parent_path, _, attr = path.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    old: nn.Conv2d = getattr(parent, attr)
    if old.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    old.dilation, old.groups, old.bias is not None)
    with torch.no_grad():
        if in_channels == 1:
            new.weight.copy_(old.weight.sum(1, keepdim=True))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    setattr(parent, attr, new)


def torchvision_classifier(arch: str) -> Callable[..., Classifier]:
    import_name, head_attr, min_size = TORCHVISION_ARCHS[arch]

    def build(num_classes: int, in_channels: int, image_size: int, pretrained: Optional[Path] = None) -> Classifier:
        import torchvision.models as tvm

        if image_size < min_size:
            raise ValueError(f"{arch} needs image_size >= {min_size}, got {image_size}")
        kwargs = {"aux_logits": False, "init_weights": True} if arch == "inception_v3" else {}
        net = getattr(tvm, import_name)(weights=None, **kwargs)
        if pretrained is not None:
            _load_pretrained(net, pretrained, head_attr)
        _adapt_input_channels(net, in_channels)
        feature_dim = getattr(net, head_attr).in_features
        setattr(net, head_attr, nn.Identity())
        return Classifier(net, feature_dim, num_classes, in_channels, image_size)

    build.__doc__ = f"torchvision {arch}: first conv fitted to in_channels, .{head_attr} moved to Classifier.head"
    return build
