"""The one generator interface every attack uses.

A generator maps a latent z (B, z_dim) to intermediate latents ws (B, num_ws, w_dim) and synthesises
images from ws. Attacks search in w space (PPA, GMI), so both halves are exposed separately.
Images come out as float tensors of shape (B, channels, image_size, image_size) on the [0, 1] scale,
whatever range the wrapped network produces internally (the adapters map it linearly). `synthesis`
clamps to [0, 1] by default (display, scoring, evaluation); `synthesis(ws, clamp=False)` gives the
network's linear output unclamped: the path an attack differentiates, where a clamp or a sigmoid would
kill the gradient on saturated pixels (StyleGAN2's output layer is linear and PPA does not clip).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class Generator(nn.Module):
    """Base class: subclasses set the attributes in __init__ and implement `_map` and `_synthesise`.

    Attributes: z_dim, w_dim, num_ws, image_size, channels and the buffer w_avg (w_dim,), the mean
    of w over the latent distribution (used for truncation).
    """

    z_dim: int
    w_dim: int
    num_ws: int
    image_size: int
    channels: int
    w_avg: torch.Tensor

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) -> w (B, w_dim) or ws (B, num_ws, w_dim), untruncated."""
        raise NotImplementedError

    def _synthesise(self, ws: torch.Tensor) -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> images on the [0, 1] scale, unclamped (B, channels, image_size, image_size)."""
        raise NotImplementedError

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim), truncated as w_avg + psi * (w - w_avg)."""
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.z_dim:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"mapping expects z of shape (B, {self.z_dim}); got {got}")
        psi = _check_psi(truncation_psi)
        w = self._map(z)
        if w.dim() == 2:
            w = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # real copies: callers may edit ws in place
        return truncate(w, self.w_avg, psi)

    def synthesis(self, ws: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """ws (B, num_ws, w_dim), or one w (B, w_dim) broadcast to all layers -> images on the [0, 1] scale,
        clamped to [0, 1] unless clamp=False (see the module docstring)."""
        if isinstance(ws, torch.Tensor) and ws.dim() == 2 and ws.shape[1] == self.w_dim:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        if not isinstance(ws, torch.Tensor) or ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            got = tuple(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
            raise ValueError(f"synthesis expects ws of shape (B, {self.num_ws}, {self.w_dim}) "
                             f"or (B, {self.w_dim}); got {got}")
        images = self._synthesise(ws)
        return images.clamp(0.0, 1.0) if clamp else images

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi))

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, truncation_psi: float = 1.0, batch_size: int = 256) -> torch.Tensor:
        """n images from latents drawn with a fixed seed (the same seed gives the same images)."""
        if n < 1:
            raise ValueError(f"sample needs n >= 1 images; got {n}")
        device = self.w_avg.device
        z = torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        return torch.cat([self(z[i:i + batch_size], truncation_psi) for i in range(0, n, batch_size)])

    @property
    def value_range(self) -> tuple[float, float]:
        return (0.0, 1.0)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick: pull w toward the average w, trading diversity for typicality."""
    if psi == 1.0:
        return ws
    return torch.lerp(w_avg.to(ws.dtype), ws, psi)


def _check_psi(psi) -> float:
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not math.isfinite(psi):
        raise ValueError(f"truncation_psi must be a finite number (1.0 = no truncation); got {psi!r}")
    return float(psi)


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients: loaded priors are fixed; attacks differentiate inputs only."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
