"""fused_ls_ce: label-smoothed cross-entropy for any alpha <= 1 (negative included).

A drop-in for F.cross_entropy(logits, target, weight=, ignore_index=, reduction=, label_smoothing=alpha)
with class-index targets: logits (K,), (N, K) or (N, K, d1, ...). The C++/CUDA op returns per-row
losses and the per-row logsumexp (the only thing saved for backward); the reduction is a cheap
O(N) step here so that autograd and torch.compile see plain ops. The backward op has its own
autograd formula (the softmax Jacobian), so second derivatives work (create_graph=True).

Training on the CPU (eager, logits requiring grad) takes a faster path, _LsCeTrain: one kernel pass
computes the loss rows and the gradient together (each logit read once, one exp per logit), and the
backward only hands that gradient over (scaled when the upstream gradient is not 1). The gradient
tensor is therefore allocated in the forward instead of the backward (same size, held in between).
"""
from __future__ import annotations

import torch

from . import _C_loader  # noqa: F401  (registers torch.ops.lsmia)

REDUCTIONS = ("mean", "sum", "none")
LOGIT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("lsmia::ls_ce_forward")
def _ls_ce_forward_fake(logits, target, weight, alpha, ignore_index):
    acc = _acc_dtype(logits.dtype)
    return target.new_empty(target.shape, dtype=acc), target.new_empty(target.shape, dtype=torch.float64)


@torch.library.register_fake("lsmia::ls_ce_backward")
def _ls_ce_backward_fake(grad_loss, logits, target, weight, lse, alpha, ignore_index):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


@torch.library.register_fake("lsmia::ls_ce_forward_with_grad")
def _ls_ce_forward_with_grad_fake(logits, target, weight, alpha, ignore_index, mean):
    acc = _acc_dtype(logits.dtype)
    return (target.new_empty(target.shape, dtype=acc), torch.empty_like(logits, memory_format=torch.contiguous_format),
            target.new_empty((), dtype=acc))


@torch.library.register_fake("lsmia::ls_ce_forward_grad_")
def _ls_ce_forward_grad_fake(logits, target, weight, grad_scale, alpha, ignore_index):
    return target.new_empty(target.shape, dtype=_acc_dtype(logits.dtype))


def _setup_context(ctx, inputs, output):
    logits, target, weight, alpha, ignore_index = inputs
    ctx.mark_non_differentiable(output[1])  # lse is saved for backward, not a result to train on
    ctx.save_for_backward(logits, target, weight, output[1])
    ctx.alpha, ctx.ignore_index = alpha, ignore_index


def _backward(ctx, grad_loss, grad_lse):
    logits, target, weight, lse = ctx.saved_tensors
    if grad_loss is None:
        return None, None, None, None, None
    grad = torch.ops.lsmia.ls_ce_backward(grad_loss, logits, target, weight, lse, ctx.alpha, ctx.ignore_index)
    return grad, None, None, None, None


torch.library.register_autograd("lsmia::ls_ce_forward", _backward, setup_context=_setup_context)


def _backward_setup_context(ctx, inputs, output):
    grad_loss, logits, target, weight, lse, alpha, ignore_index = inputs
    ctx.save_for_backward(grad_loss, logits, target, weight, lse)
    ctx.alpha, ctx.ignore_index = alpha, ignore_index


def _double_backward(ctx, v):
    """Gradient of grad_logits = g * (c * softmax(z) - ...) given its upstream gradient v.

    w.r.t. g (per row): sum_k v_k * grad_k / g; w.r.t. z: the softmax Jacobian,
    g c p * (v - sum_k v_k p_k), with c = (1 - alpha) w_y + (alpha / K) sum(w) (1 without weights).
    The lse input is treated as what it is, logsumexp(z), so it gets no gradient of its own.
    """
    grad_loss, logits, target, weight, lse = ctx.saved_tensors
    alpha, ignore_index = ctx.alpha, ctx.ignore_index
    acc = grad_loss.dtype
    vz = v.to(acc)
    d_grad_loss = d_logits = None
    if ctx.needs_input_grad[0]:
        unit = torch.ops.lsmia.ls_ce_backward(torch.ones_like(grad_loss), logits, target, weight, lse, alpha,
                                              ignore_index)
        d_grad_loss = (vz * unit.to(acc)).sum(1)
    if ctx.needs_input_grad[1]:
        valid = target != ignore_index
        if weight is None:
            c = torch.ones_like(grad_loss)
        else:
            w = weight.to(acc)
            c = (1 - alpha) * w[torch.where(valid, target, 0)] + (alpha / logits.shape[1]) * w.sum()
        p = torch.exp(logits.double() - lse.unsqueeze(1)).to(acc)
        d = (grad_loss * c).unsqueeze(1) * p * (vz - (vz * p).sum(1, keepdim=True))
        d_logits = torch.where(valid.unsqueeze(1), d, 0).to(logits.dtype)
    return d_grad_loss, d_logits, None, None, None, None, None


torch.library.register_autograd("lsmia::ls_ce_backward", _double_backward, setup_context=_backward_setup_context)


def _check(logits, target, weight, reduction):
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("fused_ls_ce: logits and target must be tensors")
    if logits.dim() == 0:
        raise ValueError("fused_ls_ce: logits must be (K,), (N, K) or (N, K, d1, ...), got a 0-d tensor")
    want = () if logits.dim() == 1 else (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != want:
        raise ValueError(f"fused_ls_ce: logits of shape {tuple(logits.shape)} (class dim 1, or 0 for (K,)) "
                         f"need target of shape {want}, got {tuple(target.shape)}")
    if logits.dtype not in LOGIT_DTYPES:
        raise TypeError(f"fused_ls_ce: logits must be float32, float64, float16 or bfloat16, got {logits.dtype}")
    if target.dtype != torch.int64:
        raise TypeError(f"fused_ls_ce: target must be int64 class indices, got {target.dtype}")
    if logits.device != target.device:
        raise ValueError(f"fused_ls_ce: logits are on {logits.device} but target is on {target.device}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"fused_ls_ce: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if weight is not None:
        k = logits.shape[0 if logits.dim() == 1 else 1]
        if not isinstance(weight, torch.Tensor) or weight.shape != (k,) or not weight.is_floating_point():
            raise ValueError(f"fused_ls_ce: weight must be a floating tensor of shape ({k},), got "
                             f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
        if weight.device != logits.device:
            raise ValueError(f"fused_ls_ce: weight is on {weight.device} but logits are on {logits.device}")


def _as_rows(logits, target):
    """(N, K) logits with (N,) target, or (N, K, M) with (N, M): views where the layout allows."""
    if logits.dim() == 1:
        return logits.unsqueeze(0), target.reshape(1)
    if logits.dim() == 2:
        return logits, target
    n, k = logits.shape[:2]
    return logits.reshape(n, k, -1), target.reshape(n, -1)


def _denominator(target, weight, ignore_index, dtype):
    """What reduction='mean' divides by: the non-ignored rows, or the sum of their class weights."""
    valid = target != ignore_index
    if weight is None:
        return valid.sum().to(dtype)
    return torch.where(valid, weight.to(dtype)[torch.where(valid, target, 0)], 0).sum()


def _reduce(loss, target, weight, ignore_index, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / _denominator(target, weight, ignore_index, loss.dtype)


class _LsCeInPlace(torch.autograd.Function):
    """Forward that leaves the gradient in the logits' storage (see fused_ls_ce's `inplace`)."""

    @staticmethod
    def forward(ctx, logits, target, weight, alpha, ignore_index, reduction):
        acc = _acc_dtype(logits.dtype)
        if reduction == "mean":
            denom = _denominator(target, weight, ignore_index, acc)
            scale = 1 / denom
        else:
            scale = torch.ones((), dtype=acc, device=logits.device)
        loss = torch.ops.lsmia.ls_ce_forward_grad_(logits, target, weight, scale, alpha, ignore_index)
        out = loss if reduction == "none" else (loss.sum() if reduction == "sum" else loss.sum() / denom)
        ctx.mark_dirty(logits)
        ctx.save_for_backward(logits)
        ctx.reduction = reduction
        return out, logits

    @staticmethod
    def backward(ctx, grad_out, grad_logits_out):
        (grad,) = ctx.saved_tensors  # d out / d logits, already scaled for the reduction
        scale = grad_out.unsqueeze(1) if ctx.reduction == "none" else grad_out
        if grad.device.type != "cpu" or not bool((scale == 1).all()):  # no host read on the GPU
            grad = grad.mul_(scale.to(grad.dtype))
        if grad_logits_out is not None:  # the overwritten logits were used afterwards
            grad = grad + grad_logits_out
        return grad, None, None, None, None, None


class _LsCeTrain(torch.autograd.Function):
    """Training path on the CPU: the forward also computes the gradient (one read of the logits, one
    exp per logit), so the backward is a scale at most. The gradient is held by ctx (not saved for
    backward) and handed over by the first backward; a second backward of a retained graph recomputes
    it with the same kernel (bit for bit), create_graph=True (double backward) with ls_ce_backward,
    which has its own autograd."""

    @staticmethod
    def forward(ctx, x, target, weight, alpha, ignore_index, reduction):
        loss, grad, denom = torch.ops.lsmia.ls_ce_forward_with_grad(x, target, weight, alpha, ignore_index,
                                                                     reduction == "mean")
        ctx.save_for_backward(x, target, weight)
        ctx.grad, ctx.denom = grad, denom
        ctx.alpha, ctx.ignore_index, ctx.reduction = alpha, ignore_index, reduction
        if reduction == "none":
            return loss
        return loss.sum() if reduction == "sum" else loss.sum() / denom

    @staticmethod
    def backward(ctx, grad_out):
        grad, ctx.grad = ctx.grad, None
        x, target, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the differentiable backward op
            g = grad_out / ctx.denom if ctx.reduction == "mean" else grad_out
            with torch.no_grad():
                _, lse = torch.ops.lsmia.ls_ce_forward(x, target, weight, ctx.alpha, ctx.ignore_index)
            return (torch.ops.lsmia.ls_ce_backward(g.expand(target.shape), x, target, weight, lse, ctx.alpha,
                                                   ctx.ignore_index), None, None, None, None, None)
        if grad is None:  # a retained graph's second backward: the same kernel again, the same bits
            _, grad, _ = torch.ops.lsmia.ls_ce_forward_with_grad(x, target, weight, ctx.alpha, ctx.ignore_index,
                                                                  ctx.reduction == "mean")
        if ctx.reduction == "none":
            grad.mul_(grad_out.unsqueeze(1))
        elif bool(grad_out != 1):  # CPU only: a cheap host read
            grad.mul_(grad_out)
        return grad, None, None, None, None, None


def fused_ls_ce(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.0, *,
                weight: torch.Tensor | None = None, reduction: str = "mean", ignore_index: int = -100,
                inplace: bool = False) -> torch.Tensor:
    """Label-smoothed cross-entropy with smoothing factor `alpha` (any finite alpha <= 1).

    Per row z with label y and class weights w (1 without `weight`):
    (1 - alpha) w_y (lse - z_y) + (alpha / K) sum_k w_k (lse - z_k), which without weights is
    lse - (1 - alpha) z_y - (alpha / K) sum(z). Rows with target == ignore_index give 0; 'mean'
    divides by the number of other rows (by the sum of their w_y with weights), as torch does.
    Equals F.cross_entropy(logits, target, weight=weight, label_smoothing=alpha) for
    0 <= alpha <= 1, NaN and inf included; for alpha < 0 (which torch silently treats as 0) it
    follows the formula. logits: (K,) with a 0-d target, (N, K) with (N,), or (N, K, d1, ...) with
    (N, d1, ...). The result has the logits' dtype. Twice differentiable in the logits.

    inplace=True (2-D logits produced by an op, e.g. a final Linear): the forward also computes the
    gradient and writes it over the logits, so no N x K gradient tensor is allocated (the memory of
    the default path at large K; on the CPU it is slower than the default path, though). Only valid
    when nothing else needs the logits' values afterwards: the logits are marked modified in place,
    so autograd raises if the op that produced them saved them for its own backward, and reading them
    afterwards gives the gradient, not the logits. One backward per forward (no retain_graph reuse).
    """
    _check(logits, target, weight, reduction)  # alpha: checked by the op (finite, <= 1)
    ignore_index = int(ignore_index)
    if inplace and logits.requires_grad and torch.is_grad_enabled():
        if logits.dim() != 2:
            raise ValueError(f"fused_ls_ce: inplace=True needs 2-D (N, K) logits, got shape {tuple(logits.shape)}")
        if logits.is_leaf:
            raise ValueError("fused_ls_ce: inplace=True overwrites the logits with their gradient, which autograd "
                             "forbids for a leaf tensor that requires grad; pass logits computed by an op (e.g. "
                             "model(x)) or use inplace=False")
        out, _ = _LsCeInPlace.apply(logits, target, weight, alpha, ignore_index, reduction)
        return out.to(logits.dtype)
    x, t = _as_rows(logits, target)
    if (logits.requires_grad and torch.is_grad_enabled() and logits.device.type == "cpu"
            and not torch.compiler.is_compiling()):
        out = _LsCeTrain.apply(x, t, weight, alpha, ignore_index, reduction)
        if reduction == "none":
            out = out.reshape(target.shape)
        return out.to(logits.dtype)
    loss, _ = torch.ops.lsmia.ls_ce_forward(x, t, weight, alpha, ignore_index)
    if reduction == "none":
        loss = loss.reshape(target.shape)
    return _reduce(loss, t, weight, ignore_index, reduction).to(logits.dtype)
