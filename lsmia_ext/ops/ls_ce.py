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

Every backward is free of host reads and in-place writes when it runs batched (vmap, autograd.grad's
is_grads_batched, jacobian(vectorize=True)) or traced (compiled autograd); ls_ce_backward has a vmap
rule. Under torch.func transforms and forward-mode AD, fused_ls_ce runs the plain-PyTorch formula
(reference.ls_ce_reference), which has every rule those need.
"""
from __future__ import annotations

import math

import torch
import torch.autograd.forward_ad as fwAD

from . import _C_loader  # noqa: F401  (registers torch.ops.lsmia)
from .reference import ls_ce_reference, mean_scale

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
            target.new_empty((), dtype=acc), target.new_empty((), dtype=acc))


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
        # Bad labels as the first-order path treats them (see _valid_rows): the kernel gave their rows 0.
        valid = _valid_rows(target, ignore_index, logits.shape[1])
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


@torch.library.register_vmap("lsmia::ls_ce_backward")
def _ls_ce_backward_vmap(info, in_dims, grad_loss, logits, target, weight, lse, alpha, ignore_index):
    """Batched backward (autograd.grad(is_grads_batched=True), jacobian(vectorize=True)): one op call per
    batch entry (the result is batch x N x K anyway)."""
    tensors = (grad_loss, logits, target, weight, lse)

    def entry(i):
        return [t if d is None else t.select(d, i) for t, d in zip(tensors, in_dims[:5])]

    grads = [torch.ops.lsmia.ls_ce_backward(*entry(i), alpha, ignore_index) for i in range(info.batch_size)]
    return torch.stack(grads), 0


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
    n, k, m = logits.shape[0], logits.shape[1], math.prod(logits.shape[2:])  # m explicit: N = 0 is allowed
    return logits.reshape(n, k, m), target.reshape(n, m)


def _valid_rows(target, ignore_index, k):
    """Rows with a label in [0, K) that is not ignore_index. A bad label is refused by the op, or skipped
    (a zero row) on a GPU built without device asserts; the Python around the op (the mean's denominator,
    the double backward) must skip it the same way and never index the class weights with it."""
    return (target != ignore_index) & (target >= 0) & (target < k)


def _denominator(target, weight, ignore_index, dtype, k):
    """What reduction='mean' divides by: the rows with a valid label (_valid_rows), or the sum of their
    class weights. A bad label is never counted and never indexes the weights (no wrap-around)."""
    valid = _valid_rows(target, ignore_index, k)
    if weight is None:
        return valid.sum().to(dtype)
    return torch.where(valid, weight.to(dtype)[torch.where(valid, target, 0)], 0).sum()


def _reduce(loss, target, weight, ignore_index, reduction, k):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() * mean_scale(_denominator(target, weight, ignore_index, loss.dtype, k))


def _batched(t) -> bool:
    """t is batched: torch.func.vmap, or autograd.grad(is_grads_batched=True) (torch's legacy vmap)."""
    return torch._C._are_functorch_transforms_active() or torch._C._functorch.is_legacy_batchedtensor(t)


def _scale_grad(grad, grad_out, target, ignore_index, reduction):
    """The gradient of the loss rows' sum (or mean) times the upstream gradient: per row for 'none',
    where an ignored row takes 0 whatever grad_out holds there (a select, so NaN or inf upstream of an
    ignored row cannot leak into its zero gradient). In eager mode `grad` (the op's own buffer) is
    scaled in place, and not at all when a CPU grad_out is exactly 1; under vmap (batched gradients,
    torch.func) and torch.compile (compiled autograd) out of place, without data-dependent branches."""
    if reduction != "none":
        if torch.compiler.is_compiling() or _batched(grad_out):
            return grad * grad_out.to(grad.dtype)
        if grad.device.type == "cpu" and grad_out.item() == 1:  # CPU: a cheap host read (one op, not eq + bool)
            return grad
        return grad.mul_(grad_out.to(grad.dtype))
    scale = torch.where(target != ignore_index, grad_out, 0).unsqueeze(1)
    if torch.compiler.is_compiling() or _batched(grad_out):
        return grad * scale.to(grad.dtype)
    return grad.mul_(scale.to(grad.dtype))


class _LsCeInPlace(torch.autograd.Function):
    """Forward that leaves the gradient in the logits' storage (see fused_ls_ce's `inplace`).

    The write goes through a detached alias and bumps the logits' version counter (shared with their
    views and base): autograd still refuses a graph whose other nodes saved the logits, but the logits
    are not marked dirty, so views of them (`.view`, `.flatten(1)`, `.t()`, slices) work like any tensor."""

    @staticmethod
    def forward(ctx, logits, target, weight, alpha, ignore_index, reduction):
        acc = _acc_dtype(logits.dtype)
        if reduction == "mean":
            scale = mean_scale(_denominator(target, weight, ignore_index, acc, logits.shape[1]))
        else:
            scale = torch.ones((), dtype=acc, device=logits.device)
        loss = torch.ops.lsmia.ls_ce_forward_grad_(logits.detach(), target, weight, scale, alpha, ignore_index)
        torch.autograd.graph.increment_version(logits)  # the op's write: what autograd checks saved tensors by
        ctx.save_for_backward(logits, target)  # after the write: a later write to the logits is caught
        ctx.ignore_index, ctx.reduction, ctx.used = ignore_index, reduction, False
        return loss if reduction == "none" else (loss.sum() if reduction == "sum" else loss.sum() * scale)

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():
            raise RuntimeError("fused_ls_ce(inplace=True) cannot be differentiated twice (create_graph=True): its "
                               "forward overwrote the logits with their gradient, and second derivatives need the "
                               "logits; use inplace=False")
        if ctx.used:
            raise RuntimeError("fused_ls_ce(inplace=True): one backward per forward (the gradient in the logits' "
                               "storage was handed over by the first); use inplace=False to backward twice")
        ctx.used = True
        logits, target = ctx.saved_tensors
        grad = _scale_grad(logits.detach(), grad_out, target, ctx.ignore_index, ctx.reduction)
        return grad, None, None, None, None, None


class _LsCeTrain(torch.autograd.Function):
    """Training path on the CPU: the forward also computes the gradient (one read of the logits, one
    exp per logit), so the backward is a scale at most. The gradient is held by ctx (not saved for
    backward) and handed over by the first backward; a second backward of a retained graph recomputes
    it with the same kernel (bit for bit), create_graph=True (double backward) with ls_ce_backward,
    which has its own autograd."""

    @staticmethod
    def forward(ctx, x, target, weight, alpha, ignore_index, reduction):
        # `total`: the rows' sum or mean, reduced by the op (loss.sum() * mean_scale(denom) up to the sum's order)
        loss, grad, denom, total = torch.ops.lsmia.ls_ce_forward_with_grad(x, target, weight, alpha, ignore_index,
                                                                            reduction == "mean")
        ctx.save_for_backward(x, target, weight)
        ctx.grad, ctx.denom = grad, denom
        ctx.alpha, ctx.ignore_index, ctx.reduction = alpha, ignore_index, reduction
        return loss if reduction == "none" else total

    @staticmethod
    def backward(ctx, grad_out):
        grad, ctx.grad = ctx.grad, None
        x, target, weight = ctx.saved_tensors  # also autograd's check that x was not modified in place since
        if grad is not None and not torch.is_grad_enabled():  # the usual case: hand the gradient over
            return _scale_grad(grad, grad_out, target, ctx.ignore_index, ctx.reduction), None, None, None, None, None
        if torch.is_grad_enabled():  # create_graph: the differentiable backward op
            g = grad_out * mean_scale(ctx.denom) if ctx.reduction == "mean" else grad_out
            with torch.no_grad():
                _, lse = torch.ops.lsmia.ls_ce_forward(x, target, weight, ctx.alpha, ctx.ignore_index)
            return (torch.ops.lsmia.ls_ce_backward(g.expand(target.shape), x, target, weight, lse, ctx.alpha,
                                                   ctx.ignore_index), None, None, None, None, None)
        # a retained graph's second backward: the same kernel again, the same bits
        _, grad, _, _ = torch.ops.lsmia.ls_ce_forward_with_grad(x, target, weight, ctx.alpha, ctx.ignore_index,
                                                                 ctx.reduction == "mean")
        return _scale_grad(grad, grad_out, target, ctx.ignore_index, ctx.reduction), None, None, None, None, None


def _check_alpha(alpha):
    """The op's own check, for the plain-PyTorch path that does not call the op."""
    if not (math.isfinite(alpha) and alpha <= 1):
        raise ValueError(f"fused_ls_ce: alpha must be finite and <= 1, got {alpha}")


def _needs_reference(logits) -> bool:
    """A torch.func transform (grad, vjp, jvp, jacrev, hessian, vmap) or forward-mode AD is active:
    the kernels have no vmap or forward-mode rules, the plain-PyTorch formula has them all."""
    if torch._C._are_functorch_transforms_active():
        return True
    return fwAD._current_level >= 0 and fwAD.unpack_dual(logits).tangent is not None


def _autocast(logits, weight):
    """Under autocast, like F.cross_entropy (an autocast-to-float32 op): float16 / bfloat16 logits and
    weight are computed in float32 and the loss is float32 (float64 stays float64)."""
    if not torch.is_autocast_enabled(logits.device.type):
        return logits, weight
    low = (torch.float16, torch.bfloat16)
    return (logits.float() if logits.dtype in low else logits,
            weight.float() if weight is not None and weight.dtype in low else weight)


def fused_ls_ce(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.0, *,
                weight: torch.Tensor | None = None, reduction: str = "mean", ignore_index: int = -100,
                inplace: bool = False) -> torch.Tensor:
    """Label-smoothed cross-entropy with smoothing factor `alpha` (any finite alpha <= 1).

    Per row z with label y and class weights w (1 without `weight`):
    (1 - alpha) w_y (lse - z_y) + (alpha / K) sum_k w_k (lse - z_k), which without weights is
    lse - (1 - alpha) z_y - (alpha / K) sum(z). Rows with target == ignore_index give 0; 'mean'
    divides by the number of other rows (by the sum of their w_y with weights), as torch does, and is
    NaN when that is 0. Equals F.cross_entropy(logits, target, weight=weight, label_smoothing=alpha)
    for 0 <= alpha <= 1, NaN and inf included; for alpha < 0 (which torch silently treats as 0) it
    follows the formula. logits: (K,) with a 0-d target, (N, K) with (N,), or (N, K, d1, ...) with
    (N, d1, ...). The result has the logits' dtype; under autocast, like F.cross_entropy, float16 and
    bfloat16 logits are computed in float32 and the result is float32. Twice differentiable in the
    logits; like torch, not differentiable in `weight` (a weight that requires grad is refused).

    Memory: on the CPU, when the logits require grad (eager training), the forward computes the
    N x K gradient together with the loss and holds it until the backward, even if no backward
    follows (evaluate under torch.no_grad() to skip it); elsewhere the backward computes it.

    torch.func (grad, vjp, jvp, jacrev, hessian, vmap, e.g. per-sample gradients for DP-SGD) and
    forward-mode AD run the same formula written with plain PyTorch ops (ls_ce_reference): correct,
    with N x K temporaries, and without the op's label range check (an out-of-range label raises
    torch's indexing error instead).

    inplace=True (2-D logits produced by an op, e.g. a final Linear, or any view of such logits): the
    forward also computes the gradient and writes it over the logits, so no N x K gradient tensor is
    allocated (the memory of the default path at large K; on the CPU also faster than the default path
    in bench/results_ls_ce_inplace.md). Only valid when nothing else needs the logits' values afterwards: the write bumps
    the logits' version, so autograd raises if the op that produced them saved them for its own
    backward, and reading them afterwards gives the gradient, not the logits. One backward per
    forward (no retain_graph reuse), no double backward (create_graph=True raises).
    """
    _check(logits, target, weight, reduction)  # alpha: checked by the op (finite, <= 1)
    ignore_index = int(ignore_index)
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("fused_ls_ce is not differentiable with respect to `weight`, like F.cross_entropy; "
                           "pass weight.detach() (a weight that requires grad cannot be trained through it)")
    logits, weight = _autocast(logits, weight)
    if _needs_reference(logits):
        _check_alpha(alpha)
        return ls_ce_reference(logits, target, alpha, weight=weight, reduction=reduction, ignore_index=ignore_index)
    if inplace and logits.requires_grad and torch.is_grad_enabled():
        if logits.dim() != 2:
            raise ValueError(f"fused_ls_ce: inplace=True needs 2-D (N, K) logits, got shape {tuple(logits.shape)}")
        if (logits if logits._base is None else logits._base).is_leaf:
            raise ValueError("fused_ls_ce: inplace=True overwrites the logits with their gradient, which autograd "
                             "forbids for a leaf tensor that requires grad (or a view of one); pass logits "
                             "computed by an op (e.g. model(x)) or use inplace=False")
        return _LsCeInPlace.apply(logits, target, weight, alpha, ignore_index, reduction).to(logits.dtype)
    x, t = _as_rows(logits, target)
    if (logits.requires_grad and torch.is_grad_enabled() and logits.device.type == "cpu"
            and not torch.compiler.is_compiling()):
        out = _LsCeTrain.apply(x, t, weight, alpha, ignore_index, reduction)
        if reduction == "none":
            out = out.reshape(target.shape)
        return out if out.dtype == logits.dtype else out.to(logits.dtype)
    loss, _ = torch.ops.lsmia.ls_ce_forward(x, t, weight, alpha, ignore_index)
    if reduction == "none":
        loss = loss.reshape(target.shape)
    return _reduce(loss, t, weight, ignore_index, reduction, x.shape[1]).to(logits.dtype)
