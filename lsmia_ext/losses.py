"""LabelSmoothingCrossEntropy (module over fused_ls_ce) and AlphaSchedule (warm-up for negative alpha)."""
from __future__ import annotations

import torch
from torch import nn

from .ops.ls_ce import REDUCTIONS, check_alpha, fused_ls_ce


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against y_LS = (1 - alpha) * onehot(y) + alpha / K, for any alpha <= 1.

    `alpha` may be changed between steps (e.g. by an AlphaSchedule); a < 0 is negative label smoothing.
    `weight` (K,) class weights as in nn.CrossEntropyLoss (a buffer, moves with .to()).
    """

    def __init__(self, alpha: float = 0.0, reduction: str = "mean", ignore_index: int = -100,
                 weight: torch.Tensor | None = None):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.alpha = check_alpha(alpha)
        self.reduction = reduction
        self.ignore_index = int(ignore_index)
        self.register_buffer("weight", weight)

    def __setattr__(self, name, value):
        if name == "alpha":
            value = check_alpha(value)
        super().__setattr__(name, value)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fused_ls_ce(logits, target, self.alpha, weight=self.weight, reduction=self.reduction,
                           ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, reduction={self.reduction!r}, ignore_index={self.ignore_index}"


class AlphaSchedule:
    """alpha_t per epoch, as in the authors' code: **only negative alpha is warmed up**. For alpha < 0: 0 for
    `warmup` epochs, then a linear ramp over `ramp` epochs that ends exactly at `alpha`, then `alpha`. For
    alpha >= 0 (hard labels, usual label smoothing): `alpha` from the first epoch; warmup and ramp are
    ignored (`warms_up` says which applies). Epochs count from 0.

    Example: AlphaSchedule(-0.05, warmup=2, ramp=4) gives 0, 0, -0.0125, -0.025, -0.0375, -0.05, -0.05, ...
    (the ramp's last epoch reaches alpha; no jump as in the authors' code, see PAPER.md section 3), while
    AlphaSchedule(0.1, warmup=2, ramp=4) gives 0.1 at every epoch.
    """

    def __init__(self, alpha: float, warmup: int = 0, ramp: int = 0):
        self.alpha = check_alpha(alpha)
        for name, v in (("warmup", warmup), ("ramp", ramp)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"AlphaSchedule: {name} must be an integer number of epochs >= 0, got {v!r}")
        self.warmup, self.ramp = warmup, ramp

    @property
    def warms_up(self) -> bool:
        return self.alpha < 0

    def __call__(self, epoch: int) -> float:
        if epoch < 0:
            raise ValueError(f"AlphaSchedule: epoch must be >= 0, got {epoch}")
        if not self.warms_up:
            return self.alpha
        if epoch < self.warmup:
            return 0.0
        step = epoch - self.warmup + 1
        if step >= self.ramp:
            return self.alpha
        return self.alpha * step / self.ramp

    def __repr__(self) -> str:
        return f"AlphaSchedule(alpha={self.alpha}, warmup={self.warmup}, ramp={self.ramp})"


def add_arguments(parser) -> None:
    parser.add_argument("--rows", type=int, default=8, help="rows of random logits")
    parser.add_argument("--classes", type=int, default=10, help="number of classes K")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    """Prints fused_ls_ce next to torch's cross_entropy: equal for alpha >= 0, torch ignores alpha < 0."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(args.seed)
    logits = torch.randn(args.rows, args.classes, generator=gen) * 3
    target = torch.randint(0, args.classes, (args.rows,), generator=gen)
    print(f"{'alpha':>7} {'fused_ls_ce':>12} {'torch CE(ls=alpha)':>19}")
    for alpha in (0.1, 0.0, -0.05, -0.3):
        ours = fused_ls_ce(logits, target, alpha).item()
        theirs = F.cross_entropy(logits, target, label_smoothing=alpha).item()
        print(f"{alpha:>7} {ours:>12.6f} {theirs:>19.6f}")
    print("torch treats a negative label_smoothing as 0; fused_ls_ce applies it.")
    return 0
