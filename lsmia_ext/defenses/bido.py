"""BiDO (Peng et al. 2022): bilateral dependency optimisation with HSIC.

loss += lambda_x * sum_l HSIC(X, H_l) - lambda_y * sum_l HSIC(H_l, Y): hidden representations H_l should
depend little on the input X (less to invert) and much on the label Y (keeps utility). X is the flattened
[0, 1] input, Y the one-hot label, all kernels Gaussian (bandwidth: fixed sigma or the median heuristic).
The architecture is unchanged, so the deterministic forward at attack time is the plain one.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import Defense
from .hsic import gaussian_kernel, hsic

POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)


def hidden_modules(model: nn.Module) -> list[nn.Module]:
    """The trunk's pooling stages (outputs of the conv stages) when the trunk is a plain Sequential, else
    the torchvision ResNet stages layer1..layer4 when present; [] otherwise (features only)."""
    trunk = model.trunk
    if isinstance(trunk, nn.Sequential):
        return [m for m in trunk if isinstance(m, POOLS)]
    return [getattr(trunk, n) for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(trunk, n)]


class BiDO(Defense):
    kind = "bido"

    def __init__(self, lambda_x: float, lambda_y: float, sigma: Optional[float] = None, hidden_layers: bool = True):
        if lambda_x < 0 or lambda_y < 0:
            raise ValueError(f"BiDO needs lambda_x, lambda_y >= 0, got {lambda_x} and {lambda_y}")
        if sigma is not None and sigma <= 0:
            raise ValueError(f"BiDO sigma must be > 0 or None (median heuristic), got {sigma}")
        self.lambda_x, self.lambda_y, self.sigma, self.hidden_layers = lambda_x, lambda_y, sigma, hidden_layers
        self._acts: list[torch.Tensor] = []

    def attach(self, model: nn.Module) -> None:
        """Forward hooks collect H_l during the training forward; the trunk output (features) is the last."""
        mods = (hidden_modules(model) if self.hidden_layers else []) + [model.trunk]
        seen: set[int] = set()
        for m in mods:
            if id(m) not in seen:
                seen.add(id(m))
                m.register_forward_hook(self._record)

    def _record(self, module, inputs, output):
        if module.training:
            self._acts.append(output)

    def penalty(self, x: torch.Tensor, y: torch.Tensor, hidden: list[torch.Tensor], num_classes: int) -> torch.Tensor:
        """lambda_x * sum HSIC(X, H) - lambda_y * sum HSIC(H, Y) for one batch (exposed for tests)."""
        kx = gaussian_kernel(x, self.sigma)
        ky = gaussian_kernel(F.one_hot(y, num_classes).float(), self.sigma)
        total = x.new_zeros((), dtype=torch.float32)
        for h in hidden:
            kh = gaussian_kernel(h, self.sigma)
            total = total + self.lambda_x * hsic(kx, kh) - self.lambda_y * hsic(kh, ky)
        return total

    def extra_loss(self, model, x, y, logits):
        acts, self._acts = self._acts, []
        if not acts:
            raise RuntimeError("BiDO.extra_loss needs a training-mode forward pass of the attached model first")
        return self.penalty(x, y, acts, model.num_classes)
