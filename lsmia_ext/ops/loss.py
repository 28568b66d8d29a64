"""LabelSmoothingCrossEntropy: the nn.Module over fused_ls_ce."""
from __future__ import annotations

import torch
from torch import nn

from .ls_ce import fused_ls_ce


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against y_LS = (1 - alpha) * onehot(y) + alpha / K, for any alpha <= 1.

    `alpha` may be changed between steps (e.g. by an AlphaSchedule); a < 0 is negative label smoothing.
    `weight` (K,) class weights as in nn.CrossEntropyLoss (a buffer, moves with .to()).
    Like nn.CrossEntropyLoss, the arguments are checked by the loss itself (fused_ls_ce and the op) on
    every call, so a bad alpha or reduction raises at the forward that would use it.
    """

    def __init__(self, alpha: float = 0.0, reduction: str = "mean", ignore_index: int = -100,
                 weight: torch.Tensor | None = None):
        super().__init__()
        self.alpha = alpha
        self.reduction = reduction
        self.ignore_index = int(ignore_index)
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fused_ls_ce(logits, target, self.alpha, weight=self.weight, reduction=self.reduction,
                           ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, reduction={self.reduction!r}, ignore_index={self.ignore_index}"
