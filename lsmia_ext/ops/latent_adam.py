"""fused_latent_adam_: one Adam step for every row of a batch of latents, in one pass.

Each row r of a (B, ...) parameter is its own Adam problem with its own step count steps[r],
learning rate lr[r] and an on/off switch active[r], which torch's optimisers (one step count per
tensor) can only express with a Python loop over rows. The math per row is torch.optim.Adam's.
"""
from __future__ import annotations

import math

import torch

from . import _C_loader  # noqa: F401  (registers torch.ops.lsmia)

PARAM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@torch.library.register_fake("lsmia::latent_adam_")
def _latent_adam_fake(params, grads, exp_avg, exp_avg_sq, steps, lr, beta1, beta2, eps, weight_decay,
                      active, max_grad_norm):
    # Metadata checks hold under fake tensors too, so a compiled graph rejects what eager rejects.
    _check_tensors(params, grads, exp_avg, exp_avg_sq, steps, active)
    return None


def _check_real(name: str, value, low: float, high: float | None = None, *, open_high: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"fused_latent_adam_: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    ok = math.isfinite(value) and value >= low and (high is None or (value < high if open_high else value <= high))
    if not ok:
        allowed = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"fused_latent_adam_: {name} must be finite and {allowed}, got {value}")
    return value


def _check_tensors(params, grads, exp_avg, exp_avg_sq, steps, active) -> None:
    for name, t in (("params", params), ("grads", grads), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq),
                    ("steps", steps)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"fused_latent_adam_: {name} must be a tensor, got {type(t).__name__}")
    if params.dim() < 1:
        raise ValueError("fused_latent_adam_: params must have a batch dimension (B, ...), got a 0-d tensor")
    if params.dtype not in PARAM_DTYPES:
        raise TypeError(f"fused_latent_adam_: params must be float32, float16 or bfloat16, got {params.dtype}")
    for name, t in (("grads", grads), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if t.shape != params.shape:
            raise ValueError(f"fused_latent_adam_: {name} has shape {tuple(t.shape)} but params has shape "
                             f"{tuple(params.shape)}")
        if t.device != params.device:
            raise ValueError(f"fused_latent_adam_: {name} is on {t.device} but params is on {params.device}")
    if grads.dtype != params.dtype:
        raise TypeError(f"fused_latent_adam_: grads must have the params' dtype {params.dtype}, got {grads.dtype}")
    if exp_avg.dtype != torch.float32 or exp_avg_sq.dtype != torch.float32:
        raise TypeError(f"fused_latent_adam_: exp_avg and exp_avg_sq must be float32, got {exp_avg.dtype} "
                        f"and {exp_avg_sq.dtype}")
    if not (params.is_contiguous() and exp_avg.is_contiguous() and exp_avg_sq.is_contiguous()):
        raise ValueError("fused_latent_adam_: params, exp_avg and exp_avg_sq must be contiguous")
    b = params.shape[0]
    _check_row_tensor("steps", steps, torch.int64, "int64", b, params.device)
    if active is not None:
        if not isinstance(active, torch.Tensor):
            raise TypeError(f"fused_latent_adam_: active must be a bool tensor or None, got {type(active).__name__}")
        _check_row_tensor("active", active, torch.bool, "a bool mask", b, params.device)


def _check_row_tensor(name, t, dtype, dtype_words, b, device) -> None:
    """A tensor with one value per row (steps, active): dtype, shape (B,), the params' device."""
    if t.dtype != dtype:
        raise TypeError(f"fused_latent_adam_: {name} must be {dtype_words}, got {t.dtype}")
    if t.shape != (b,):
        raise ValueError(f"fused_latent_adam_: {name} must have shape ({b},), got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"fused_latent_adam_: {name} is on {t.device} but params is on {device}")


def as_row_lr(lr, batch: int, device: torch.device, *, check_values: bool = False) -> torch.Tensor:
    """lr as a (batch,) float32 tensor on `device`: a float for every row, a 0-d tensor, or one per row.

    Values of a tensor lr are checked here when it is on the CPU or check_values is set; a CUDA
    tensor is otherwise checked by the kernel (a device-side assert), so that a step never waits
    for the GPU (CUDA graphs, torch.compile(mode="reduce-overhead"))."""
    if not isinstance(lr, torch.Tensor):
        value = _check_real("lr", lr, 0.0)
        return torch.full((batch,), value, dtype=torch.float32, device=device)
    if not (lr.is_floating_point() or lr.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"fused_latent_adam_: lr must be a real tensor, got {lr.dtype}")
    if lr.dim() > 0 and lr.shape != (batch,):
        raise ValueError(f"fused_latent_adam_: lr must be a float or a ({batch},) tensor, got shape "
                         f"{tuple(lr.shape)}")
    rows = lr.to(device=device, dtype=torch.float32).expand(batch)
    if check_values or rows.device.type == "cpu":
        bad = ~(torch.isfinite(rows) & (rows >= 0))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"fused_latent_adam_: lr must be finite and >= 0 for every row, got lr[{i}] = "
                             f"{float(rows[i])}")
    return rows


def fused_latent_adam_(params: torch.Tensor, grads: torch.Tensor, exp_avg: torch.Tensor,
                       exp_avg_sq: torch.Tensor, steps: torch.Tensor, *, lr, beta1: float = 0.9,
                       beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                       active: torch.Tensor | None = None, max_grad_norm: float | None = None) -> None:
    """One torch.optim.Adam step per row of `params` (B, ...), in place.

    grads has the params' shape and dtype; exp_avg / exp_avg_sq are float32 of the same shape;
    steps (B,) int64 counts each row's steps. lr: a float or a (B,) tensor. Rows with
    active[r] False are left untouched (params, state and step). max_grad_norm: clip each row's
    gradient to this L2 norm first (clip_grad_norm_'s formula, per row). Every argument is
    checked before anything is written, so a bad call changes nothing.
    """
    # The tensors are checked here because the lr rows are built from params before the op runs; the
    # scalars (betas, eps, weight_decay, max_grad_norm) only by the op, whose messages name them.
    _check_tensors(params, grads, exp_avg, exp_avg_sq, steps, active)
    rows_lr = as_row_lr(lr, params.shape[0], params.device)
    torch.ops.lsmia.latent_adam_(params, grads, exp_avg, exp_avg_sq, steps, rows_lr, beta1, beta2, eps,
                                 weight_decay, active, max_grad_norm)
