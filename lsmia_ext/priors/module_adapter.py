"""Adapter (2): any plain torch generator the user supplies, named by import path, with a state dict.

Two shapes of user network are accepted:
- w_dim null: `net(z) -> images`; there is no mapping network, so w = z (num_ws = 1) and w_avg = 0,
  the mean of the N(0, I) latent, so truncation shrinks z toward the origin.
- w_dim set: the network has `mapping(z) -> w (B, w_dim) or ws (B, num_ws, w_dim)` and
  `synthesis(ws (B, num_ws, w_dim)) -> images`; w_avg is the network's own `w_avg` buffer when it has
  one of shape (w_dim,), else the mean of w over `w_avg_samples` latents drawn with a fixed seed.
Images are mapped linearly from the declared value_range [lo, hi] to [0, 1] (clamped by
Generator.synthesis except on an attack's differentiated path).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from pydantic import Field, model_validator
from torch import nn

from ..config import Strict
from .interface import Generator, freeze


class ModuleSpec(Strict):
    kind: Literal["module"]
    import_path: str = Field(alias="import", description="'package.module:ClassOrFactory'")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    state_dict: Optional[Path] = None
    z_dim: int = Field(ge=1)
    w_dim: Optional[int] = Field(default=None, ge=1)
    num_ws: int = Field(default=1, ge=1)
    image_size: int = Field(ge=1)
    channels: int = Field(ge=1)
    value_range: tuple[float, float]
    w_avg_samples: int = Field(default=10000, ge=1)

    @model_validator(mode="after")
    def _check(self):
        if ":" not in self.import_path or not all(self.import_path.split(":", 1)):
            raise ValueError(f"import must look like 'package.module:ClassOrFactory'; got {self.import_path!r}")
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"value_range must be [lo, hi] with lo < hi; got {list(self.value_range)}")
        if self.w_dim is None and self.num_ws != 1:
            raise ValueError(f"num_ws must be 1 without a mapping network (w_dim null); got {self.num_ws}")
        return self


def _import(path: str):
    module_name, attr = path.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"generator import {path!r}: cannot import module {module_name!r} ({e}); "
                          "put it on PYTHONPATH") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"generator import {path!r}: module {module_name!r} has no attribute {attr!r}") from None


class ModuleGenerator(Generator):
    def __init__(self, spec: ModuleSpec, base_dir: Path | None = None):
        super().__init__()
        self.spec = spec
        net = _import(spec.import_path)(**spec.kwargs)
        if not isinstance(net, nn.Module):
            raise TypeError(f"{spec.import_path}(**kwargs) returned {type(net).__name__}, not a torch.nn.Module")
        if spec.w_dim is not None and not (callable(getattr(net, "mapping", None))
                                           and callable(getattr(net, "synthesis", None))):
            raise TypeError(f"{spec.import_path}: with w_dim set the network needs mapping(z) and synthesis(ws) "
                            "methods; set w_dim: null for a network called as net(z)")
        if spec.state_dict is not None:
            path = spec.state_dict if spec.state_dict.is_absolute() or base_dir is None else base_dir / spec.state_dict
            if not path.exists():
                raise FileNotFoundError(f"state_dict {path} does not exist")
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net = freeze(net)
        self.z_dim, self.image_size, self.channels = spec.z_dim, spec.image_size, spec.channels
        self.w_dim = spec.w_dim if spec.w_dim is not None else spec.z_dim
        self.num_ws = spec.num_ws
        self.register_buffer("w_avg", self._initial_w_avg())
        freeze(self)

    @torch.no_grad()
    def _initial_w_avg(self) -> torch.Tensor:
        if self.spec.w_dim is None:
            return torch.zeros(self.w_dim)
        own = getattr(self.net, "w_avg", None)
        if isinstance(own, torch.Tensor) and own.shape == (self.w_dim,):
            return own.detach().clone().float()
        z = torch.randn(self.spec.w_avg_samples, self.z_dim, generator=torch.Generator().manual_seed(0))
        ws = torch.cat([self._map(chunk) for chunk in z.split(1000)])
        return (ws.mean(dim=1) if ws.dim() == 3 else ws).mean(dim=0)

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        if self.spec.w_dim is None:
            return z
        w = self.net.mapping(z)
        ok = (w.dim() == 2 and w.shape[1] == self.w_dim) or (w.dim() == 3 and w.shape[1:] == (self.num_ws, self.w_dim))
        if not ok:
            raise ValueError(f"{self.spec.import_path}.mapping returned shape {tuple(w.shape)}; the spec declares "
                             f"w_dim={self.w_dim}, num_ws={self.num_ws}")
        return w

    def _synthesise(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.net(ws[:, 0]) if self.spec.w_dim is None else self.net.synthesis(ws)
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{self.spec.import_path} produced images of shape {tuple(x.shape)}; the spec declares "
                             f"(B, {', '.join(map(str, expected))})")
        lo, hi = self.spec.value_range
        return (x - lo) / (hi - lo)  # clamped by Generator.synthesis unless an attack asks for the raw output
