"""AlphaSchedule: the per-epoch label smoothing factor (warm-up for negative alpha)."""
from __future__ import annotations


class AlphaSchedule:
    """alpha_t per epoch, as in the authors' code: **only negative alpha is warmed up**. For alpha < 0: 0 for
    `warmup` epochs, then a linear ramp over `ramp` epochs that ends exactly at `alpha`, then `alpha`. For
    alpha >= 0 (hard labels, usual label smoothing): `alpha` from the first epoch; warmup and ramp are
    ignored (`warms_up` says which applies). Epochs count from 0. alpha itself is checked where it is
    used, by fused_ls_ce (finite and <= 1).

    Example: AlphaSchedule(-0.05, warmup=2, ramp=4) gives 0, 0, -0.0125, -0.025, -0.0375, -0.05, -0.05, ...
    (the ramp's last epoch reaches alpha; no jump as in the authors' code, see PAPER.md section 3), while
    AlphaSchedule(0.1, warmup=2, ramp=4) gives 0.1 at every epoch.
    """

    def __init__(self, alpha: float, warmup: int = 0, ramp: int = 0):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TypeError(f"AlphaSchedule: alpha must be a real number, got {type(alpha).__name__}")
        self.alpha = float(alpha)
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
