"""LatentAdam: torch.optim.Adam over a batch of latents, with per-row step counts, masks and lr.

A model inversion attack optimises B latents at once; rows finish at different times and may get
different learning rates. LatentAdam keeps one step count per row (state["step"] is a (B,) int64
tensor) and steps each (B, ...) parameter with one call of the fused op. With every row active
and one lr it follows torch.optim.Adam's trajectory.
"""
from __future__ import annotations

import torch

from .latent_adam import as_row_lr, fused_latent_adam_


class LatentAdam(torch.optim.Optimizer):
    """Adam (torch.optim.Adam's math, L2 weight decay) stepping every row of a (B, ...) parameter.

    Extra over torch.optim.Adam: `set_active(mask)` freezes rows (their params, moments and step
    count stay as they are), `set_lr(lr)` takes a float or a (B,) tensor of per-row learning rates,
    and `max_grad_norm` clips each row's gradient by its own L2 norm. float16 / bfloat16 latents keep
    float32 moments. Every parameter of a group must have the same batch size B.

    Any layout torch.optim.Adam takes works (transposed, channels-last, other strided views): a row is
    always index r of dim 0. The fused op needs contiguous rows, so a non-contiguous latent is stepped
    on a contiguous copy that is then written back (two extra copies per step; the latent keeps its
    strides; its moments are kept in contiguous row-major order).

    Like torch.optim.Adam, there is no float32 master copy of a float16 / bfloat16 latent: each step is
    rounded to the latent's dtype, so a step below half an ulp of the value is lost (bfloat16 keeps 8
    significant bits: half an ulp is |p| * 2^-9 to |p| * 2^-8; a step of lr 1e-3 moves a bfloat16 value
    of magnitude above about 0.5 not at all), and many small steps can leave a latent where it was.
    Keep latents in float32 where that matters.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 max_grad_norm: float | None = None):
        # Values (lr, betas, eps, weight_decay) are checked by fused_latent_adam_ at each step; only the
        # shape of betas is checked here, since step() unpacks it.
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"LatentAdam: betas must be a pair (beta1, beta2), got {betas!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        max_grad_norm=max_grad_norm, active=None)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 1:
                    raise ValueError("LatentAdam: every parameter needs a batch dimension (B, ...), got a 0-d tensor")
            self._batch_size(group)

    @staticmethod
    def _batch_size(group) -> int:
        sizes = {p.shape[0] for p in group["params"]}
        if len(sizes) != 1:
            raise ValueError(f"LatentAdam: all parameters of a group must share the batch size, got {sorted(sizes)}")
        return sizes.pop()

    def set_active(self, mask: torch.Tensor | None) -> None:
        """Rows with mask False are skipped by the following steps; None makes every row active."""
        for group in self.param_groups:
            if mask is None:
                group["active"] = None
                continue
            b = self._batch_size(group)
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                raise TypeError(f"LatentAdam.set_active: mask must be a bool tensor, got "
                                f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}")
            if mask.shape != (b,):
                raise ValueError(f"LatentAdam.set_active: mask must have shape ({b},), got {tuple(mask.shape)}")
            group["active"] = mask.to(group["params"][0].device).clone()

    def set_lr(self, lr) -> None:
        """A float for every row or a (B,) tensor of per-row learning rates (all finite, >= 0)."""
        for group in self.param_groups:
            p = group["params"][0]
            rows = as_row_lr(lr, p.shape[0], p.device, check_values=True)  # before anything is stored
            group["lr"] = rows if isinstance(lr, torch.Tensor) and lr.dim() > 0 else float(lr)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LatentAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(p.shape[0], dtype=torch.int64, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.contiguous_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32,
                                                           memory_format=torch.contiguous_format)
                work = p.contiguous()  # p itself when already contiguous
                fused_latent_adam_(work, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"], lr=group["lr"],
                                   beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                                   active=group["active"], max_grad_norm=group["max_grad_norm"])
                if work is not p:
                    p.copy_(work)
        return loss

    def load_state_dict(self, state_dict) -> None:
        # torch.optim.Optimizer casts floating state to the param dtype, which would round float32
        # moments of float16 latents and turn the int64 step counts into something the op rejects;
        # the state is therefore restored here with its own dtypes.
        saved = state_dict["state"]
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        params = [p for group in self.param_groups for p in group["params"]]
        for pid, st in saved.items():
            p = params[pid]
            self.state[p] = {
                "step": st["step"].to(device=p.device, dtype=torch.int64).clone(),
                "exp_avg": st["exp_avg"].to(device=p.device, dtype=torch.float32).contiguous().clone(),
                "exp_avg_sq": st["exp_avg_sq"].to(device=p.device, dtype=torch.float32).contiguous().clone(),
            }
        for group in self.param_groups:
            if isinstance(group["active"], torch.Tensor):
                group["active"] = group["active"].to(group["params"][0].device)
