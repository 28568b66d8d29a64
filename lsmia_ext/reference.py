"""Plain-PyTorch references of every fused op (what the kernels are tested against)."""
from __future__ import annotations

import torch


def ls_ce_reference(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.0, *,
                    reduction: str = "mean", ignore_index: int = -100,
                    compute_dtype: torch.dtype | None = None) -> torch.Tensor:
    """loss = lse - (1 - alpha) * z[y] - (alpha / K) * sum(z), written with plain ops (N x K temporaries)."""
    z = logits.to(compute_dtype or (torch.float64 if logits.dtype == torch.float64 else torch.float32))
    k = z.shape[1]
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    lse = torch.logsumexp(z, dim=1)
    z_y = z.gather(1, safe_target[:, None]).squeeze(1)
    loss = lse
    if alpha != 1:
        loss = loss - (1 - alpha) * z_y
    if alpha != 0:
        loss = loss - (alpha / k) * z.sum(1)
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss.sum() / valid.sum()
    return out.to(logits.dtype)
