"""Plain-PyTorch references of every fused op (what the kernels are tested against)."""
from __future__ import annotations

import torch


def mean_scale(denominator: torch.Tensor) -> torch.Tensor:
    """1 / denominator of reduction='mean', NaN where it is 0 (all rows ignored or of weight 0): the mean
    and its gradient are then NaN, as in F.cross_entropy (not inf)."""
    return torch.where(denominator == 0, torch.nan, 1 / denominator)


def ls_ce_reference(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.0, *,
                    weight: torch.Tensor | None = None, reduction: str = "mean", ignore_index: int = -100,
                    compute_dtype: torch.dtype | None = None) -> torch.Tensor:
    """(1 - alpha) w_y (lse - z_y) + (alpha / K) sum_k w_k (lse - z_k) per row, written with plain ops
    (N x K temporaries) in torch's own form (log_softmax, then the two terms), so that NaN and inf
    come out as in F.cross_entropy(label_smoothing=alpha); alpha == 0 keeps only the first term.
    Logits (K,), (N, K) or (N, K, d1, ...) with class dim 1, targets to match."""
    z = logits.to(compute_dtype or (torch.float64 if logits.dtype == torch.float64 else torch.float32))
    t = target
    if z.dim() == 1:
        z, t = z.unsqueeze(0), target.reshape(1)
    k = z.shape[1]
    w = torch.ones(k, dtype=z.dtype, device=z.device) if weight is None else weight.to(z.dtype)
    valid = t != ignore_index
    safe = torch.where(valid, t, torch.zeros_like(t))
    logp = torch.log_softmax(z, dim=1)
    w_y = w[safe]
    loss = -logp.gather(1, safe.unsqueeze(1)).squeeze(1) * w_y
    if alpha != 0:
        w_b = w.view(1, k, *([1] * (z.dim() - 2)))
        loss = (1 - alpha) * loss + (alpha / k) * -(logp * w_b).sum(1)
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "none":
        out = loss.reshape(target.shape)
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss.sum() * mean_scale(torch.where(valid, w_y, torch.zeros_like(w_y)).sum())
    return out.to(logits.dtype)


def latent_adam_reference(params: torch.Tensor, grads: torch.Tensor, exp_avg: torch.Tensor,
                          exp_avg_sq: torch.Tensor, steps: torch.Tensor, *, lr, beta1: float = 0.9,
                          beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                          active: torch.Tensor | None = None, max_grad_norm: float | None = None):
    """fused_latent_adam_ with whole-batch tensor ops; returns new (params, exp_avg, exp_avg_sq, steps).

    Computes in float32 like torch.optim.Adam (bias corrections in float64, as torch does on Python
    floats), then rounds params back to their dtype; the lr rows are float32, as the op receives them.
    """
    b = params.shape[0]
    p = params.reshape(b, -1).float()
    g = grads.reshape(b, -1).float()
    m = exp_avg.reshape(b, -1).float()
    v = exp_avg_sq.reshape(b, -1).float()
    lr_rows = torch.as_tensor(lr, dtype=torch.float32).expand(b).to(torch.float64)
    if max_grad_norm is not None:
        norm = torch.linalg.vector_norm(g, dim=1, keepdim=True)
        g = g * (max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
    if weight_decay != 0:
        g = g.add(p, alpha=weight_decay)
    new_steps = steps + 1
    bias1 = 1 - beta1 ** new_steps.double()
    inv_bias2_sqrt = (1 / (1 - beta2 ** new_steps.double()).sqrt()).float()
    neg_step_size = (-(lr_rows / bias1)).float()
    m_new = m.lerp(g, 1 - beta1)
    v_new = v.mul(beta2).addcmul(g, g, value=1 - beta2)
    denom = (v_new.sqrt() * inv_bias2_sqrt[:, None]).add(eps)
    p_new = p + neg_step_size[:, None] * m_new / denom
    keep = torch.ones(b, dtype=torch.bool) if active is None else active.cpu()
    keep = keep.to(params.device)
    rows = keep[:, None]
    return (torch.where(rows, p_new, p).to(params.dtype).reshape(params.shape),
            torch.where(rows, m_new, m).reshape(exp_avg.shape),
            torch.where(rows, v_new, v).reshape(exp_avg_sq.shape),
            torch.where(keep, new_steps, steps))
