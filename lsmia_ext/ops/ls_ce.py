"""fused_ls_ce: label-smoothed cross-entropy for any alpha <= 1 (negative included).

The C++/CUDA op returns per-row losses and the per-row logsumexp (the only thing saved for
backward); the reduction is a cheap O(N) step here so that autograd and torch.compile see plain ops.
"""
from __future__ import annotations

import math

import torch

from .. import _C_loader  # noqa: F401  (registers torch.ops.lsmia)

REDUCTIONS = ("mean", "sum", "none")
LOGIT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("lsmia::ls_ce_forward")
def _ls_ce_forward_fake(logits, target, alpha, ignore_index):
    n = logits.shape[0]
    acc = _acc_dtype(logits.dtype)
    return logits.new_empty((n,), dtype=acc), logits.new_empty((n,), dtype=acc)


@torch.library.register_fake("lsmia::ls_ce_backward")
def _ls_ce_backward_fake(grad_loss, logits, target, lse, alpha, ignore_index):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    logits, target, alpha, ignore_index = inputs
    ctx.save_for_backward(logits, target, output[1])
    ctx.alpha, ctx.ignore_index = alpha, ignore_index


def _backward(ctx, grad_loss, grad_lse):
    logits, target, lse = ctx.saved_tensors
    if grad_loss is None:
        return None, None, None, None
    grad = torch.ops.lsmia.ls_ce_backward(grad_loss.contiguous(), logits, target, lse, ctx.alpha, ctx.ignore_index)
    return grad, None, None, None


torch.library.register_autograd("lsmia::ls_ce_forward", _backward, setup_context=_setup_context)


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a real number <= 1, got {type(alpha).__name__}")
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha > 1.0:
        raise ValueError(f"alpha must be finite and <= 1 (negative values allowed), got {alpha}")
    return alpha


def _check(logits, target, reduction):
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("fused_ls_ce: logits and target must be tensors")
    if logits.dim() != 2:
        raise ValueError(f"fused_ls_ce: logits must be 2-D (N, K), got shape {tuple(logits.shape)}")
    if target.dim() != 1:
        raise ValueError(f"fused_ls_ce: target must be 1-D (N,), got shape {tuple(target.shape)}")
    if logits.shape[0] != target.shape[0]:
        raise ValueError(f"fused_ls_ce: logits has {logits.shape[0]} rows but target has {target.shape[0]} labels")
    if logits.dtype not in LOGIT_DTYPES:
        raise TypeError(f"fused_ls_ce: logits must be float32, float64, float16 or bfloat16, got {logits.dtype}")
    if target.dtype != torch.int64:
        raise TypeError(f"fused_ls_ce: target must be int64 class indices, got {target.dtype}")
    if logits.device != target.device:
        raise ValueError(f"fused_ls_ce: logits are on {logits.device} but target is on {target.device}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"fused_ls_ce: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def fused_ls_ce(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.0, *,
                reduction: str = "mean", ignore_index: int = -100) -> torch.Tensor:
    """Label-smoothed cross-entropy with smoothing factor `alpha` (any finite alpha <= 1).

    Per row: logsumexp(z) - (1 - alpha) * z[y] - (alpha / K) * sum(z); rows with
    target == ignore_index give 0 and do not count in the mean. Equals
    F.cross_entropy(logits, target, label_smoothing=alpha) for 0 <= alpha <= 1; for alpha < 0
    (which torch silently treats as 0) it follows the formula. The result has the logits' dtype.
    """
    _check(logits, target, reduction)
    alpha = check_alpha(alpha)
    loss, _ = torch.ops.lsmia.ls_ce_forward(logits, target, alpha, int(ignore_index))
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss.sum() / (target != ignore_index).sum()
    return out.to(logits.dtype)
